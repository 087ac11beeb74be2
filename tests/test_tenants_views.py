"""``/v1/admin/connections``: which connector talks to each of the tenant's systems, what it
offers, and whether each system answers."""

import pytest

from tests.fixtures.problems import assert_problem, problem_fields

OPERATOR = "north-general-operator"
EMAR = "north-general-emar"
TENANT = "north-general"


def _by_product(response) -> dict:
    return {item["product"]: item for item in response.json["items"]}


def test_operator_sees_each_connection_with_its_connector(api, tokens):
    response = api.get("/v1/admin/connections", headers=tokens.headers(OPERATOR))

    assert response.status_code == 200, response.json
    connections = _by_product(response)
    assert connections["inventory"]["connector"] == "inventory-rest"
    assert connections["administration"]["connector"] == "emar-rest"
    assert connections["administration"]["transport"] == "http-pull"
    assert connections["administration"]["source"] == "hub"
    assert "iter_administrations" in connections["administration"]["capabilities"]
    assert connections["inventory"]["events"] == ["container.moved"]
    assert {item["health"] for item in connections.values()} == {None}


def test_health_check_runs_only_when_asked_and_names_a_failing_system(
        api, tokens, demo_inventory, demo_faults_cleared):
    demo_inventory.admin.set_faults(down=True, site=TENANT)
    calls_before = demo_inventory.admin.requests_count()["total"]
    unchecked = api.get("/v1/admin/connections", headers=tokens.headers(OPERATOR))
    calls_unchecked = demo_inventory.admin.requests_count()["total"]

    checked = api.get("/v1/admin/connections?check=true", headers=tokens.headers(OPERATOR))

    assert calls_unchecked == calls_before
    health = {product: item["health"] for product, item in _by_product(checked).items()}
    assert health["administration"] == {"ok": True, "error": None}
    assert health["inventory"]["ok"] is False
    assert health["inventory"]["error"] == "DownstreamUnavailable"
    assert unchecked.status_code == 200


def test_connections_need_the_admin_scope(api, tokens):
    assert_problem(api.get("/v1/admin/connections", headers=tokens.headers(EMAR)), 403,
                   "insufficient-scope")


@pytest.mark.parametrize("query, field", [("check=perhaps", "check"), ("verbose=1", "verbose")])
def test_bad_query_is_a_422_naming_the_field(api, tokens, query, field):
    response = api.get(f"/v1/admin/connections?{query}", headers=tokens.headers(OPERATOR))

    assert_problem(response, 422)
    assert field in problem_fields(response, "query")
