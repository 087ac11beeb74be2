"""Synchronous lookups through the hub."""
