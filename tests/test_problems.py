"""Every error is problem+json carrying the request id; request ids are accepted or made."""

import re

import pytest

from app import create_app
from app.problems import PROBLEM_TYPE_BASE, PROBLEM_TYPES, Problem, problem_response
from tests.fixtures.problems import assert_problem


def test_unknown_route_is_problem_json_with_request_id(api):
    response = api.get("/no-such-thing")

    assert_problem(response, 404)
    body = response.json
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert body["type"].endswith("/not-found")
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_wrong_method_is_problem_json(api):
    response = api.post("/healthz")

    assert_problem(response, 405)


def test_unexpected_error_is_a_500_problem_without_exception_text(hub_settings,
                                                                 migrated_database, caplog):
    secret_text = "MRN-CANARY-00012345 Jane Canary"
    app = create_app(hub_settings)

    @app.get("/_test/explode")
    def explode():
        raise RuntimeError(secret_text)

    response = app.test_client().get("/_test/explode")

    assert_problem(response, 500)
    assert secret_text not in response.get_data(as_text=True)
    logged = [record for record in caplog.records if record.name == "app.problems"]
    assert logged and "RuntimeError" in logged[0].getMessage()
    assert all(secret_text not in record.getMessage() + str(record.__dict__)
               for record in caplog.records)


def test_callers_request_id_is_echoed(api):
    response = api.get("/healthz", headers={"X-Request-ID": "ward-3.trace-42"})

    assert response.headers["X-Request-ID"] == "ward-3.trace-42"


@pytest.mark.parametrize("unsafe", ["has spaces", "x" * 65, "Jane Doe;forged=1", "",
                                    "MRN00012345"])
def test_malformed_request_id_is_replaced(api, unsafe):
    response = api.get("/healthz", headers={"X-Request-ID": unsafe})

    assert response.headers["X-Request-ID"] != unsafe
    assert len(response.headers["X-Request-ID"]) == 32


def test_unknown_v1_route_needs_a_token_first(api):
    # Routes under /v1 are not revealed to callers without a token.
    assert api.get("/v1/no-such-thing").status_code == 401


def _app_sources():
    from app.settings import PROJECT_ROOT

    return {path.relative_to(PROJECT_ROOT): path.read_text(encoding="utf-8")
            for path in (PROJECT_ROOT / "app").rglob("*.py")}


def test_problem_is_the_one_error_type_services_raise():
    subclasses = [f"{path}: {match.group(0)}" for path, source in _app_sources().items()
                  for match in re.finditer(r"class \w+\((?:\w+\.)?Problem\)", source)]

    assert subclasses == []


def test_every_problem_type_the_code_uses_is_registered():
    used = {match.group(1) for source in _app_sources().values()
            for match in re.finditer(r'problem_type="([^"]+)"', source)}

    assert used and used <= set(PROBLEM_TYPES), sorted(used - set(PROBLEM_TYPES))


def test_an_unregistered_problem_type_is_refused_where_it_is_raised(hub_app):
    with pytest.raises(ValueError, match="unregistered problem type"):
        Problem("Something went wrong.", problem_type="made-up-type")
    with hub_app.test_request_context(), pytest.raises(ValueError, match="unregistered"):
        problem_response(409, problem_type="made-up-type")


def test_a_registered_problem_type_brings_its_status_and_title(hub_app):
    problem = Problem("This tenant is not entitled to the inventory product.",
                      problem_type="not-entitled")

    with hub_app.test_request_context():
        response = problem.response()

    assert problem.status == 403 and response.status_code == 403
    assert response.json["type"] == PROBLEM_TYPE_BASE + "not-entitled"
    assert response.json["title"] == PROBLEM_TYPES["not-entitled"].title
    assert response.content_type == "application/problem+json"


def test_a_problem_without_a_type_takes_its_statuss_own(hub_app):
    with hub_app.test_request_context():
        response = Problem("No such job.", status=404).response()

    assert response.json["type"] == PROBLEM_TYPE_BASE + "not-found"
    assert response.json["title"] == "Not Found"
