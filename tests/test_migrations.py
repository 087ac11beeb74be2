"""Migrations: up on an empty database, in step with the models, and down again."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from app.database import alembic_config, upgrade_schema
from app.models import Base
from tests.fixtures.services import fresh_database_url


def test_upgrade_creates_every_table_and_the_product_catalogue(database_url, tmp_path):
    url, drop = fresh_database_url(database_url, tmp_path)
    try:
        upgrade_schema(url)
        engine = create_engine(url)
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            products = set(connection.scalars(text("SELECT code FROM products")))
        engine.dispose()
    finally:
        drop()

    assert {"tenants", "products", "connections", "clients", "entitlements", "jobs",
            "job_results", "audit_events", "dead_letters", "alembic_version"} <= tables
    assert products == {"inventory", "administration", "pharmacy"}


def test_migrated_schema_matches_the_models(migrated_database):
    engine = create_engine(migrated_database)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()

    assert differences == []


def test_downgrade_to_base_removes_every_table(database_url, tmp_path):
    url, drop = fresh_database_url(database_url, tmp_path)
    try:
        upgrade_schema(url)
        command.downgrade(alembic_config(url), "base")
        engine = create_engine(url)
        remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
        engine.dispose()
    finally:
        drop()

    assert remaining == set()
