"""Liveness and readiness of the hub process and the parts it depends on."""
