"""The one-command local stack: ``make run`` → ``python -m devstack run``."""
