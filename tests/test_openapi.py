"""The served OpenAPI document tells the truth: it is valid OpenAPI 3, names every operation and
the scope it needs, describes errors as they are sent (problem+json), its examples find data in
the demo world, and a schemathesis run over every operation finds no server error and no answer
that differs from the document."""

import base64
import re
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.auth.service import KNOWN_SCOPES
from app.problems import PROBLEM_CONTENT_TYPE

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

README = Path(__file__).resolve().parents[1] / "README.md"
PUBLIC_OPERATIONS = {"oauth.issue_token", "health.healthz", "health.readyz"}
# The token endpoint's 400 and 401 are RFC 6749 error objects, not problems.
OAUTH_ERRORS = {("oauth.issue_token", "400"), ("oauth.issue_token", "401")}
# Generated requests per operation and generation mode (valid, then invalid input): enough to
# reach every parameter, few enough for the whole run to take well under a minute.
EXAMPLES_PER_MODE = 10
# Which demo client of a tenant holds a scope: each system's client reads the other system.
CLIENT_FOR_SCOPE = {"administrations:read": "inventory", "inventory:read": "emar"}


def _client(tenant: str, scope: str | None) -> str:
    return f"{tenant}-{CLIENT_FOR_SCOPE.get(scope, 'operator')}"


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


@pytest.fixture(scope="module")
def document(hub_app) -> dict:
    return hub_app.test_client().get("/openapi.json").json


def test_the_served_document_is_valid_openapi(document):
    validate(document)

    assert document["openapi"].startswith("3.")


def test_every_operation_has_a_unique_operation_id_and_every_v1_one_a_scope(document):
    ids = [operation["operationId"] for _path, _method, operation in _operations(document)]

    assert len(ids) == len(set(ids)) >= 17
    for path, method, operation in _operations(document):
        if operation["operationId"] in PUBLIC_OPERATIONS:
            assert "security" not in operation, (method, path)
            continue
        [requirement] = operation["security"]
        assert list(requirement) == ["oauth2"], (method, path)
        [scope] = requirement["oauth2"]
        assert scope in KNOWN_SCOPES, (method, path)


def test_the_operation_id_is_the_operation_the_audit_trail_names(document):
    operation = document["paths"]["/v1/administrations"]["get"]

    assert operation["operationId"] == "lookups.list_administrations"


def test_the_security_scheme_is_oauth2_client_credentials_with_every_scope(document):
    scheme = document["components"]["securitySchemes"]["oauth2"]

    assert scheme["type"] == "oauth2"
    flow = scheme["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/v1/oauth/token"
    assert set(flow["scopes"]) == KNOWN_SCOPES
    assert list(document["components"]["securitySchemes"]) == ["oauth2"]


def test_every_error_response_is_problem_json(document):
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "errors", "request_id"} <= set(
        problem["properties"])

    for path, method, operation in _operations(document):
        responses = operation["responses"]
        assert "default" not in responses, (method, path)
        for status, response in responses.items():
            if int(status) < 400 or (operation["operationId"], status) in OAUTH_ERRORS:
                continue
            assert list(response["content"]) == [PROBLEM_CONTENT_TYPE], (method, path, status)
            assert response["content"][PROBLEM_CONTENT_TYPE]["schema"] == {
                "$ref": "#/components/schemas/Problem"}


def test_each_operation_lists_the_errors_it_can_answer(document):
    for path, method, operation in _operations(document):
        statuses = set(operation["responses"])
        if "security" in operation:
            assert {"401", "403", "422", "429"} <= statuses, (method, path)
        if "requestBody" in operation:
            assert {"413", "422"} <= statuses, (method, path)
    paths = document["paths"]
    assert {"409", "400"} <= set(paths["/v1/jobs"]["post"]["responses"])
    assert "404" in paths["/v1/jobs/{job_id}"]["get"]["responses"]
    for path in ("/v1/administrations", "/v1/inventory", "/v1/containers/{container_id}/origin"):
        assert {"502", "503"} <= set(paths[path]["get"]["responses"])
    assert "503" in paths["/readyz"]["get"]["responses"]


def test_answers_document_the_headers_clients_rely_on(document):
    paths = document["paths"]
    for path in ("/v1/administrations", "/v1/inventory", "/v1/containers/{container_id}/origin"):
        responses = paths[path]["get"]["responses"]
        assert responses["200"]["headers"]["X-Cache"]["required"] is True
        assert "Retry-After" in responses["503"]["headers"]
    assert "Location" in paths["/v1/jobs"]["post"]["responses"]["202"]["headers"]
    for path, method, operation in _operations(document):
        if "429" in operation["responses"]:
            assert "Retry-After" in operation["responses"]["429"]["headers"], (method, path)


def test_lookups_declare_their_fhir_answers(document):
    for path in ("/v1/administrations", "/v1/inventory", "/v1/containers/{container_id}/origin"):
        content = document["paths"][path]["get"]["responses"]["200"]["content"]
        # Canonical JSON first: the docs UI asks for the first type by default.
        assert list(content) == ["application/json", "application/fhir+json"]
        assert content["application/fhir+json"]["schema"] == {
            "$ref": "#/components/schemas/FhirBundle"}


def test_the_docs_ui_authorize_request_obtains_a_token(api, document, demo_tenants):
    # What Swagger UI's clientCredentials flow sends: the client as HTTP Basic, the ticked
    # scopes (none) in the form.
    token_url = document["components"]["securitySchemes"]["oauth2"]["flows"][
        "clientCredentials"]["tokenUrl"]
    credential = demo_tenants["north-general-operator"]
    basic = base64.b64encode(
        f"{credential.client_id}:{credential.client_secret}".encode()).decode()

    response = api.post(token_url, data={"grant_type": "client_credentials", "scope": ""},
                        headers={"Authorization": f"Basic {basic}"})

    assert response.status_code == 200, response.json
    assert set(response.json["scope"].split()) == set(credential.scopes.split())
    docs = api.get("/docs").get_data(as_text=True)
    assert "initOAuth" not in docs  # nothing (no client, no scope) is prefilled


def test_the_token_endpoint_prefills_no_scope(document):
    form = document["paths"]["/v1/oauth/token"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"]["schema"]
    properties = (document["components"]["schemas"][form["$ref"].rsplit("/", 1)[1]]
                  ["properties"] if "$ref" in form else form["properties"])

    assert "example" not in properties["scope"]


def _example_query(operation: dict) -> dict:
    return {parameter["name"]: parameter["schema"].get("example", parameter.get("example"))
            for parameter in operation.get("parameters", [])
            if parameter["in"] == "query" and (parameter["schema"].get("example")
                                                or parameter.get("example"))}


@pytest.mark.parametrize("path", ["/v1/administrations", "/v1/inventory"])
def test_the_documented_examples_find_demo_data(api, tokens, document, path):
    operation = document["paths"][path]["get"]
    [scope] = operation["security"][0]["oauth2"]
    query = _example_query(operation)
    assert {"unit", "medication"} <= set(query)

    response = api.get(path, query_string=query,
                       headers=tokens.headers(_client("north-general", scope)))

    assert response.status_code == 200, response.json
    assert response.json["items"], query


def test_the_documented_container_example_exists(api, tokens, document):
    item = document["paths"]["/v1/containers/{container_id}/origin"]
    [parameter] = [p for p in item["parameters"] if p["name"] == "container_id"]

    response = api.get(f"/v1/containers/{parameter['example']}/origin",
                       headers=tokens.headers(_client("north-general", "inventory:read")))

    assert response.status_code == 200
    assert response.json["movements"]


def _submit_documented_job(api, tokens, document: dict, tenant: str):
    """Submit the job the document's examples describe, as ``tenant``'s operator."""
    request_body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    properties = document["components"]["schemas"][request_body["$ref"].rsplit("/", 1)[1]][
        "properties"]
    body = {name: field["example"] for name, field in properties.items()}
    [header] = [p for p in document["paths"]["/v1/jobs"]["post"]["parameters"]
                if p["name"] == "Idempotency-Key"]
    return api.post("/v1/jobs", json=body, headers=tokens.headers(
        f"{tenant}-operator", **{"Idempotency-Key": header["schema"]["example"]}))


def test_the_documented_job_example_is_accepted(api, tokens, document):
    response = _submit_documented_job(api, tokens, document, "lakeside-clinic")

    assert response.status_code in (200, 202), response.json


def test_the_readme_medication_example_returns_rows(api, tokens):
    [url] = re.findall(r'"http://127\.0\.0\.1:8000(/v1/administrations\?[^"]*medication=[^"]*)"',
                       README.read_text(encoding="utf-8"))

    response = api.get(url, headers=tokens.headers("north-general-inventory"))

    assert response.status_code == 200, response.json
    assert response.json["items"]


def _takes_query_or_json(operation: dict) -> bool:
    """Whether invalid input can be sent: a query parameter or a JSON body (an invalid path
    or form cannot be encoded, and hypothesis would search for one in vain)."""
    return (any(parameter["in"] == "query" for parameter in operation.get("parameters", []))
            or "application/json" in operation.get("requestBody", {}).get("content", {}))


def _fuzz_operation(operation, mode: GenerationMode, headers: dict, found: dict,
                    path_parameters: dict | None = None) -> None:
    """Send ``EXAMPLES_PER_MODE`` generated requests to one operation; record each kind of
    failure once (operation, status, what went wrong, the request)."""

    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, derandomize=True, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case):
        response = case.call(headers=headers)
        status = response.status_code
        documented = set(case.operation.definition.raw["responses"])
        request = f"{case.method} {case.formatted_path} query={case.query!r}"
        if case.media_type:
            request += f" body={str(case.body)[:200]!r}"
        if status >= 500 and not (status in (502, 503) and str(status) in documented):
            found.setdefault((operation.label, status, "server error"),
                             f"{request} -> {response.text[:200]}")
            return
        try:
            case.validate_response(response, checks=[
                status_code_conformance, content_type_conformance, response_schema_conformance,
                response_headers_conformance])
        except BaseExceptionGroup as failures:  # schemathesis' FailureGroup, one per check
            for failure in failures.exceptions:
                found.setdefault((operation.label, status, type(failure).__name__),
                                 f"{request} -> {str(failure)[:300]}")

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_every_operation_answers_as_documented(api, hub_app, tokens, document):
    # River Valley's clients: the fuzzed jobs and syncs land on a tenant other tests look at
    # less than North General. It has a job, so that job listings are checked with one in them.
    job = _submit_documented_job(api, tokens, document, "river-valley")
    assert job.status_code in (200, 202)
    # Reading operations also get an id that exists (the others get generated ones: changing
    # River Valley's syncs or cancelling its job would disturb other tests).
    [container] = api.get("/v1/inventory?page_size=1", headers=tokens.headers(
        _client("river-valley", "inventory:read"))).json["items"]
    existing = {"GET /v1/jobs/{job_id}": {"job_id": job.json["id"]},
                "GET /v1/containers/{container_id}/origin": {
                    "container_id": container["container_id"]}}
    schema = schemathesis.openapi.from_wsgi("/openapi.json", hub_app)
    found: dict = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        security = operation.definition.raw.get("security")
        headers = {}
        if security:
            [scope] = security[0]["oauth2"]
            headers = tokens.headers(_client("river-valley", scope))
        _fuzz_operation(operation, GenerationMode.POSITIVE, headers, found)
        if operation.label in existing:
            _fuzz_operation(operation, GenerationMode.POSITIVE, headers, found,
                            existing[operation.label])
        if _takes_query_or_json(operation.definition.raw):
            _fuzz_operation(operation, GenerationMode.NEGATIVE, headers, found)

    assert operations >= 17
    assert not found, "\n".join(f"{key}: {request}" for key, request in sorted(
        found.items(), key=str))
