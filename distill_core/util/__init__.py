"""Small helpers below every layer: lazy exports, optional extras, a GC pause."""
