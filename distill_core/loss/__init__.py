"""From a config to one weighted loss: load and validate, CombinedLoss, stateful updates, balancer, lock, schema."""
