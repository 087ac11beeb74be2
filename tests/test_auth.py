"""Authentication: the client-credentials grant (RFC 6749) and bearer tokens on /v1."""

import time
from dataclasses import replace

import jwt
import pytest

from app import create_app
from app.auth.tokens import SigningKeys
from app.clients.service import get_client
from tests.fixtures.problems import assert_problem
from tests.fixtures.tenants import basic_auth, minted_token

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

EMAR = "north-general-emar"
INVENTORY_CLIENT = "north-general-inventory"


def _token_form(demo_tenants, as_client=EMAR, **overrides):
    form = {"grant_type": "client_credentials", "client_id": as_client,
            "client_secret": demo_tenants[as_client].client_secret}
    form.update(overrides)  # may replace client_id with an unknown one
    return {key: value for key, value in form.items() if value is not None}


def _mint(hub_app, *, ttl=300, audience=None, keys=None, scopes=("inventory:read",)):
    return minted_token(hub_app.extensions["hub"], ttl=ttl, audience=audience, keys=keys,
                        tenant_id=str(get_client_tenant(hub_app)), tenant="north-general",
                        client_id=EMAR, product="administration", scopes=list(scopes))


def get_client_tenant(hub_app):
    with hub_app.app_context():
        return get_client(db_session=hub_app.extensions["hub"].database.session,
                          client_id=EMAR).tenant_id


def test_client_credentials_issue_a_short_lived_signed_token(api, demo_tenants, hub_settings):
    response = api.post("/v1/oauth/token", data=_token_form(demo_tenants))

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["token_type"] == "Bearer" and body["expires_in"] <= 900
    assert body["scope"] == "dispenses:read inventory:read"
    header = jwt.get_unverified_header(body["access_token"])
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert header["alg"] == "HS256" and header["kid"]
    assert claims["aud"] == hub_settings.hub_jwt_audience
    assert claims["exp"] - claims["iat"] <= 900
    assert (claims["tenant"], claims["client_id"], claims["product"]) == (
        "north-general", EMAR, "administration")


def test_http_basic_client_authentication_works_too(api, demo_tenants):
    response = api.post("/v1/oauth/token", data={"grant_type": "client_credentials"},
                        headers=basic_auth(EMAR, demo_tenants[EMAR].client_secret))

    assert response.status_code == 200


@pytest.mark.parametrize("body", [
    {"client_id": INVENTORY_CLIENT},  # another client's id beside valid Basic credentials
    {"client_id": EMAR},
    {"client_secret": "anything"},
    {"client_id": ""},
], ids=["other client id", "same client id", "client secret", "empty client id"])
def test_client_credentials_in_both_basic_and_body_are_refused(api, demo_tenants, body):
    # RFC 6749 §2.3.1: one authentication method per request.
    response = api.post("/v1/oauth/token", data={"grant_type": "client_credentials", **body},
                        headers=basic_auth(EMAR, demo_tenants[EMAR].client_secret))

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "access_token" not in response.json


@pytest.mark.parametrize("overrides, status, error", [
    ({"grant_type": None}, 400, "invalid_request"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ({"client_secret": "wrong-secret"}, 401, "invalid_client"),
    ({"client_id": "no-such-client"}, 401, "invalid_client"),  # secret of another client
    ({"client_secret": None}, 401, "invalid_client"),
    ({"scope": "administrations:read"}, 400, "invalid_scope"),
    ({"scope": "inventory:read everything"}, 400, "invalid_scope"),
])
def test_token_errors_follow_rfc_6749(api, demo_tenants, overrides, status, error):
    response = api.post("/v1/oauth/token", data=_token_form(demo_tenants, **overrides))

    assert response.status_code == status
    assert response.json["error"] == error
    assert response.headers["Cache-Control"] == "no-store"
    assert "request_id" in response.json
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_client_secrets_are_stored_as_slow_hashes(hub_app, demo_tenants):
    with hub_app.app_context():
        client = get_client(db_session=hub_app.extensions["hub"].database.session, client_id=EMAR)

    assert client.secret_hash.startswith("$argon2id$")
    assert demo_tenants[EMAR].client_secret not in client.secret_hash


def test_requested_subset_of_scopes_is_what_the_token_carries(api, demo_tenants):
    response = api.post("/v1/oauth/token", data=_token_form(
        demo_tenants, as_client="north-general-operator", scope="audit:read"))

    assert response.json["scope"] == "audit:read"


def test_lookup_without_token_is_401_with_bearer_challenge(api):
    response = api.get("/v1/inventory")

    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer not.a.jwt", "Basic abc",
                                           "Token abc"])
def test_malformed_authorization_is_401(api, authorization):
    response = api.get("/v1/inventory", headers={"Authorization": authorization})

    assert response.status_code == 401


def test_expired_token_is_401(api, hub_app):
    token = _mint(hub_app, ttl=-60)

    response = api.get("/v1/inventory", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert "expired" in response.json["detail"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_tampered_token_is_401(api, hub_app):
    header, payload, signature = _mint(hub_app).split(".")
    claims = jwt.decode(f"{header}.{payload}.{signature}", options={"verify_signature": False})
    claims["tenant"] = "river-valley"
    forged_payload = jwt.encode(claims, "x" * 32, algorithm="HS256").split(".")[1]

    response = api.get("/v1/inventory",
                       headers={"Authorization": f"Bearer {header}.{forged_payload}.{signature}"})

    assert response.status_code == 401
    assert "signature" in response.json["detail"]


def test_token_for_another_audience_is_401(api, hub_app):
    response = api.get("/v1/inventory", headers={
        "Authorization": f"Bearer {_mint(hub_app, audience='some-other-api')}"})

    assert response.status_code == 401
    assert "not meant for this API" in response.json["detail"]


def test_token_signed_with_an_unknown_key_is_401(api, hub_app):
    stranger = SigningKeys.parse("stranger:" + "s" * 40)

    response = api.get("/v1/inventory",
                       headers={"Authorization": f"Bearer {_mint(hub_app, keys=stranger)}"})

    assert response.status_code == 401
    assert "unknown signing key" in response.json["detail"]


def test_wrong_scope_is_403_without_downstream_call(api, tokens, demo_administration):
    response = api.get("/v1/administrations", headers=tokens.headers(EMAR))

    assert response.status_code == 403
    assert response.json["type"].endswith("/insufficient-scope")
    assert demo_administration.admin.requests_count()["total"] == 0


def test_two_signing_keys_verify_during_rotation(hub_settings, migrated_database, demo_tenants):
    old_key, new_key = "old:" + "o" * 40, "new:" + "n" * 40
    before = create_app(replace(hub_settings, hub_jwt_signing_keys=old_key))
    during = create_app(replace(hub_settings, hub_jwt_signing_keys=f"{new_key},{old_key}"))
    after = create_app(replace(hub_settings, hub_jwt_signing_keys=new_key))
    token_from_old_key = before.test_client().post(
        "/v1/oauth/token", data=_token_form(demo_tenants)).json["access_token"]
    token_from_new_key = during.test_client().post(
        "/v1/oauth/token", data=_token_form(demo_tenants)).json["access_token"]

    def status(app, token):
        return app.test_client().get(
            "/v1/containers/NGH-C99999999/origin",
            headers={"Authorization": f"Bearer {token}"}).status_code

    assert jwt.get_unverified_header(token_from_new_key)["kid"] == "new"
    assert status(during, token_from_old_key) != 401
    assert status(during, token_from_new_key) != 401
    assert status(after, token_from_old_key) == 401
    assert status(after, token_from_new_key) != 401


def test_token_lifetime_above_fifteen_minutes_is_refused_by_settings():
    from app.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="HUB_TOKEN_TTL"):
        load_settings({"HUB_DATA_DIR": f"/tmp/hub-ttl-{time.time_ns()}", "HUB_TOKEN_TTL": "3600"})
