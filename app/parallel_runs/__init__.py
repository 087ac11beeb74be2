"""Parallel runs (shadow mode): while a point-to-point link is migrated onto the hub, the hub
also asks the old ("legacy") endpoint, compares both answers off the request path, and reports
the differences without PHI."""
