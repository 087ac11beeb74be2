"""Fixtures and shared test helpers live in tests/fixtures/, one module per part they start or
serve (jobs, problems, the PHI scan, factories of records and rows); the fixture modules are
registered here."""

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.demo", "tests.fixtures.tenants",
                  "tests.fixtures.flower", "tests.fixtures.syncs", "tests.fixtures.jobs",
                  "tests.fixtures.phi", "tests.fixtures.webhooks", "tests.fixtures.hl7",
                  "tests.fixtures.changes", "tests.fixtures.pharmacy",
                  "tests.fixtures.redis_outage"]
