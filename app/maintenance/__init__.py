"""Housekeeping of the hub's own data: purges by retention."""
