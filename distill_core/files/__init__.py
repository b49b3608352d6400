"""Files on disk: atomic writes that honour the umask, and checkpoints loaded as data only."""
