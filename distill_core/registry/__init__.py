"""Where terms come from: the hook specs, entry-point discovery, the registry of terms and recipes, provenance."""
