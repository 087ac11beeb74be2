"""The lookup cache in Redis: the one place its key format and freshness rules live."""
