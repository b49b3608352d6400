"""Signal helpers that plugins may use: mel filterbanks and frame/overlap-add adjoints."""
