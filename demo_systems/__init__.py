"""Simulated downstream hospital systems for the medication hub, with synthetic data only.

* System A, the inventory (:mod:`demo_systems.inventory`): containers, lots, cabinets and their
  movements; camelCase, NDC-10 with dashes, units like ``ICU-3``, local times with offsets;
  ``X-Api-Key`` auth; offset pagination.
* System B, the eMAR (:mod:`demo_systems.administration`): administrations with (synthetic)
  patient identifiers; snake_case, NDC-11 without dashes, wards like ``ICU3``, UTC times;
  ``Authorization: ApiKey`` auth; cursor pagination.

Both are seeded from one deterministic world (:mod:`demo_systems.world`) and share one front
desk (counting, faults, per-site keys), one ``/_admin`` API and one way to be served.

This package imports nothing from the hub (``app``, ``tasks``) and the hub imports nothing
from it: they meet only over HTTP and through the files a seed run writes.
"""
