"""Tenants (hospital customers), the products (system kinds) they own, and their connections."""
