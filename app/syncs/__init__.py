"""Scheduled syncs: per-tenant and hub-wide work that beat runs, one run at a time each."""
