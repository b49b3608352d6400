"""Passes over a loader for any model (through an adapter): training and evaluation steps, sync-free."""
