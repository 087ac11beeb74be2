"""The admin CLI: onboarding tenants, connections, clients and entitlements."""

import os
import re
import subprocess
import sys
import uuid

import pytest

from app.clients.service import get_client, secret_matches
from app.settings import PROJECT_ROOT
from tests.fixtures.cli import hub_cli


@pytest.fixture
def cli(hub_app):
    return hub_cli(hub_app)


@pytest.fixture
def slug():
    return f"cli-{uuid.uuid4().hex[:8]}"


def _client(hub_app, client_id):
    with hub_app.app_context():
        session = hub_app.extensions["hub"].database.session
        session.expire_all()
        return get_client(db_session=session, client_id=client_id)


def test_onboarding_a_tenant_end_to_end_and_getting_a_token(cli, slug, api):
    assert cli("tenants", "create", slug, "--name", "CLI General").exit_code == 0
    assert cli("entitlements", "grant", slug, "inventory").exit_code == 0
    assert cli("connections", "set", slug, "inventory", "--base-url", "http://127.0.0.1:9/x",
               "--credential-ref", "env:CLI_TEST_KEY", "--unit-code", "4 WEST=MEDSURG-4"
               ).exit_code == 0
    created = cli("clients", "create", slug, f"{slug}-emar", "--product", "administration",
                  "--scope", "inventory:read")
    secret = re.search(r"client_secret: (\S+)", created.output).group(1)

    token = api.post("/v1/oauth/token", data={"grant_type": "client_credentials",
                                              "client_id": f"{slug}-emar",
                                              "client_secret": secret})

    assert token.status_code == 200
    assert slug in cli("tenants", "list").output


def test_secret_is_shown_once_and_only_its_hash_is_kept(cli, slug, hub_app):
    cli("tenants", "create", slug, "--name", "Hash Hospital")
    output = cli("clients", "create", slug, f"{slug}-op", "--scope", "audit:read").output
    secret = re.search(r"client_secret: (\S+)", output).group(1)

    client = _client(hub_app, f"{slug}-op")

    assert secret not in client.secret_hash and secret_matches(client.secret_hash, secret)
    assert client.product_id is None


def test_rotating_a_secret_invalidates_the_old_one(cli, slug, hub_app):
    cli("tenants", "create", slug, "--name", "Rotation Hospital")
    first = re.search(r"client_secret: (\S+)",
                      cli("clients", "create", slug, f"{slug}-op", "--scope", "admin").output
                      ).group(1)

    second = re.search(r"client_secret: (\S+)",
                       cli("clients", "rotate-secret", f"{slug}-op").output).group(1)

    client = _client(hub_app, f"{slug}-op")
    assert secret_matches(client.secret_hash, second)
    assert not secret_matches(client.secret_hash, first)


def test_revoked_entitlement_refuses_lookups(cli, slug, api, hub_app):
    from app.entitlements.service import forget_entitlements

    cli("tenants", "create", slug, "--name", "Revoked Hospital")
    cli("entitlements", "grant", slug, "inventory")
    secret = re.search(r"client_secret: (\S+)", cli(
        "clients", "create", slug, f"{slug}-emar", "--product", "administration",
        "--scope", "inventory:read").output).group(1)
    token = api.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": f"{slug}-emar",
        "client_secret": secret}).json["access_token"]

    assert cli("entitlements", "revoke", slug, "inventory").exit_code == 0
    forget_entitlements()
    response = api.get("/v1/inventory", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 403
    assert response.json["type"].endswith("/not-entitled")


@pytest.mark.parametrize("args, message", [
    (["clients", "create", "no-such-tenant", "x", "--scope", "admin"], "no tenant"),
    (["entitlements", "grant", "no-such-tenant", "inventory"], "no tenant"),
    (["clients", "rotate-secret", "no-such-client"], "no client"),
])
def test_cli_errors_name_what_is_missing(hub_app, args, message):
    result = hub_app.test_cli_runner().invoke(args=["hub", *args])

    assert result.exit_code != 0
    assert message in result.output


def test_cli_refuses_unknown_scopes_and_bad_references(cli, slug, hub_app):
    cli("tenants", "create", slug, "--name", "Strict Hospital")
    runner = hub_app.test_cli_runner()

    scope = runner.invoke(args=["hub", "clients", "create", slug, "x", "--scope", "superuser"])
    reference = runner.invoke(args=["hub", "connections", "set", slug, "inventory",
                                    "--base-url", "http://x", "--credential-ref", "plain-secret"])

    assert scope.exit_code != 0 and "unknown scopes" in scope.output
    assert reference.exit_code != 0 and "file: or env:" in reference.output


def test_connection_options_are_checked_by_the_connector_before_anything_is_stored(
        cli, slug, hub_app):
    cli("tenants", "create", slug, "--name", "Options Hospital")

    unknown_option = cli("connections", "set", slug, "inventory", "--base-url", "http://x",
                         "--credential-ref", "env:K", "--options", '{"unit_code": {}}')
    bad_unit = cli("connections", "set", slug, "inventory", "--base-url", "http://x",
                   "--credential-ref", "env:K", "--unit-code", "4 WEST=not a unit!")
    no_such_connector = cli("connections", "set", slug, "inventory", "--base-url", "http://x",
                            "--credential-ref", "env:K", "--connector", "acme-stock")
    wrong_product = cli("connections", "set", slug, "inventory", "--base-url", "http://x",
                        "--credential-ref", "env:K", "--connector", "emar-rest")
    no_url = cli("connections", "set", slug, "inventory", "--credential-ref", "env:K")

    assert unknown_option.exit_code != 0 and "unit_code" in unknown_option.output
    assert bad_unit.exit_code != 0 and "not canonical unit codes for: 4 WEST" in bad_unit.output
    assert no_such_connector.exit_code != 0 and "no connector acme-stock" in no_such_connector.output
    assert wrong_product.exit_code != 0 and "implements administration" in wrong_product.output
    assert no_url.exit_code != 0 and "needs a base URL" in no_url.output
    [line] = [line for line in cli("tenants", "list").output.splitlines() if slug in line]
    assert line.endswith("connections: -")


def test_operator_lists_connectors_and_checks_a_tenants_connections(
        cli, demo_tenants, demo_faults_cleared):
    listed = cli("connectors", "list")
    healthy = cli("connectors", "health", "north-general")

    assert listed.exit_code == 0
    assert "inventory-rest" in listed.output and "emar-rest" in listed.output
    assert "source=hub" in listed.output
    assert healthy.exit_code == 0, healthy.output
    assert re.search(r"administration\s+emar-rest\s+ok", healthy.output)
    assert re.search(r"inventory\s+inventory-rest\s+ok", healthy.output)


def test_connection_health_names_the_failing_system(cli, slug, hub_app):
    cli("tenants", "create", slug, "--name", "Unreachable Hospital")
    cli("connections", "set", slug, "inventory", "--base-url", "http://127.0.0.1:9/x",
        "--credential-ref", "env:HOME")

    result = cli("connectors", "health", slug)

    assert result.exit_code == 1
    assert re.search(r"inventory\s+inventory-rest\s+FAILING DownstreamUnavailable", result.output)


def test_demo_tenants_are_onboarded_by_the_local_stack_not_the_hub_cli(
        hub_app, hub_environment, demo_data_dir, demo_inventory, demo_administration):
    onboarded = subprocess.run(
        [sys.executable, "-m", "devstack", "onboard", "--manifest",
         str(demo_data_dir / "manifest.json"), "--inventory-url", demo_inventory.base_url,
         "--administration-url", demo_administration.base_url],
        cwd=PROJECT_ROOT, env={**os.environ, **hub_environment}, capture_output=True, text=True,
        timeout=120)

    assert onboarded.returncode == 0, onboarded.stderr[-3000:]
    assert "demo tenants" in onboarded.stdout
    assert _client(hub_app, "north-general-operator").is_active
    assert "seed-demo" not in hub_app.test_cli_runner().invoke(args=["hub", "--help"]).output
