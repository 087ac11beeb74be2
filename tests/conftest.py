"""Fixtures live in tests/fixtures/, one module per part they start."""

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.demo", "tests.fixtures.tenants",
                  "tests.fixtures.flower", "tests.fixtures.syncs", "tests.fixtures.jobs",
                  "tests.fixtures.phi"]
