"""Liveness, readiness (and which part failed), and the served OpenAPI document and docs UI."""

from dataclasses import replace

from app import create_app
from tests.fixtures.problems import assert_problem
from tests.fixtures.services import start_embedded_redis


def test_healthz_answers_without_checking_dependencies(api):
    response = api.get("/healthz")

    assert response.status_code == 200
    assert response.json == {"status": "alive"}


def test_readyz_reports_every_part_reachable(api):
    response = api.get("/readyz")

    assert response.status_code == 200
    assert response.json["status"] == "ready"
    assert {name: check["ok"] for name, check in response.json["checks"].items()} == {
        "database": True, "redis": True, "broker": True}


def test_readyz_answers_503_naming_redis_when_redis_is_down(hub_settings, migrated_database,
                                                            tmp_path):
    doomed = start_embedded_redis(tmp_path / "doomed-redis")
    app = create_app(replace(hub_settings, redis_url=doomed.url))
    client = app.test_client()
    assert client.get("/readyz").status_code == 200

    doomed.stop()
    response = client.get("/readyz")

    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "5"
    body = response.json
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["error"] == "ConnectionError"
    assert body["checks"]["database"]["ok"] is True
    assert body["detail"] == "Unreachable: redis."
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_readyz_names_the_database_when_it_is_unreachable(hub_settings, tmp_path):
    missing_folder = tmp_path / "no-such-folder" / "hub.db"
    app = create_app(replace(hub_settings, database_url=f"sqlite:///{missing_folder}"))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json["checks"]["database"]["ok"] is False
    assert response.json["checks"]["redis"]["ok"] is True


def test_openapi_document_describes_the_health_endpoints(api):
    document = api.get("/openapi.json").json

    assert document["info"]["title"] == "Medication Hub API"
    assert {"/healthz", "/readyz"} <= set(document["paths"])
    assert "503" in document["paths"]["/readyz"]["get"]["responses"]


def test_docs_ui_is_served_with_its_assets_from_the_hub(api):
    page = api.get("/docs")
    asset = api.get("/docs/assets/swagger-ui-bundle.js")

    assert page.status_code == 200
    assert b"/docs/assets/swagger-ui-bundle.js" in page.data
    assert asset.status_code == 200 and len(asset.data) > 100_000


def test_openapi_documents_every_v1_endpoint_with_examples_and_errors(api):
    document = api.get("/openapi.json").json
    paths = document["paths"]

    expected = {"/v1/oauth/token": "post", "/v1/administrations": "get",
                "/v1/containers/{container_id}/origin": "get", "/v1/inventory": "get"}
    for path, method in expected.items():
        operation = paths[path][method]
        assert operation.get("summary") or operation.get("description"), path
        assert "200" in operation["responses"]
    for path in ("/v1/administrations", "/v1/inventory", "/v1/containers/{container_id}/origin"):
        operation = paths[path]["get"]
        assert {"401", "403", "503"} <= set(operation["responses"])
        assert operation["security"] == [{"oauth2": [
            "administrations:read" if path == "/v1/administrations" else "inventory:read"]}]
    parameters = {p["name"]: p for p in paths["/v1/administrations"]["get"]["parameters"]}
    assert parameters["medication"]["schema"].get("example")
    assert "oauth2" in document["components"]["securitySchemes"]
