"""PHI minimization: the one place that decides what of a record leaves the hub, per consumer."""
