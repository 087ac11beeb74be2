"""Every error is problem+json carrying the request id; request ids are accepted or made."""

import pytest

from app import create_app


def test_unknown_route_is_problem_json_with_request_id(api):
    response = api.get("/no-such-thing")

    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    body = response.json
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert body["type"].endswith("/not-found")
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_wrong_method_is_problem_json(api):
    response = api.post("/healthz")

    assert response.status_code == 405
    assert response.content_type == "application/problem+json"


def test_unexpected_error_is_a_500_problem_without_exception_text(hub_settings,
                                                                 migrated_database, caplog):
    secret_text = "MRN-CANARY-00012345 Jane Canary"
    app = create_app(hub_settings)

    @app.get("/_test/explode")
    def explode():
        raise RuntimeError(secret_text)

    response = app.test_client().get("/_test/explode")

    assert response.status_code == 500
    assert response.content_type == "application/problem+json"
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
