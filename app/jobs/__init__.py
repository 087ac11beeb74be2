"""Asynchronous jobs: their state, their de-identified results, and dead letters."""
