"""The inventory snapshot: the hub's own copy of each tenant's System A catalogue, containers
and movements, so origin and inventory lookups can answer while System A is down."""
