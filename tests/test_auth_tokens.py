"""Bearer token verification (app.auth.tokens): a token that is not exactly what the hub issues
(malformed JOSE header, bad base64, claims of the wrong type, a lifetime past the hub's cap) is
a 401 problem+json with a Bearer challenge, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.auth.tokens import InvalidToken, SigningKeys, verify_token
from tests.fixtures.problems import assert_invalid_token

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

EMAR = "north-general-emar"
KEYS = SigningKeys.parse("k1:" + "s" * 40)
ISSUER, AUDIENCE = "medication-hub", "medication-hub-api"


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value) -> str:
    return b64(json.dumps(value, separators=(",", ":")))


@pytest.fixture(scope="module")
def hub_key(hub_app) -> tuple[str, str]:
    """The session app's active signing key id and secret."""
    keys = hub_app.extensions["hub"].signing_keys
    return keys.active_kid, keys.keys[keys.active_kid]


@pytest.fixture(scope="module")
def emar_claims(hub_app, demo_tenants, hub_settings) -> dict:
    """The claims the hub puts in a token of the demo eMAR client."""
    from app.clients.service import get_client

    with hub_app.app_context():
        client = get_client(db_session=hub_app.extensions["hub"].database.session,
                            client_id=EMAR)
        tenant_id = str(client.tenant_id)
    now = int(time.time())
    return {"iss": hub_settings.hub_jwt_issuer, "aud": hub_settings.hub_jwt_audience,
            "sub": EMAR, "iat": now, "nbf": now, "exp": now + 300, "jti": uuid.uuid4().hex,
            "tenant_id": tenant_id, "tenant": "north-general", "client_id": EMAR,
            "product": "administration", "scope": "inventory:read"}


def signed(claims: dict, hub_key, **header) -> str:
    kid, secret = hub_key
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid, **header})


def signed_raw(header: dict, payload: str, secret: str) -> str:
    """A token over an arbitrary header and payload segment, with a correct HS256 signature."""
    signing_input = f"{segment(header)}.{payload}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def lookup(api, token: str):
    return api.get("/v1/inventory?unit=ICU-3", headers={"Authorization": f"Bearer {token}"})


def test_a_well_formed_token_built_here_is_accepted(api, emar_claims, hub_key):
    # The control for every refusal below: the same claims, signed the same way, work.
    response = lookup(api, signed(emar_claims, hub_key))

    assert response.status_code == 200, response.json


MALFORMED_HEADERS = {
    "kid is a list": {"alg": "HS256", "kid": ["k1"]},
    "kid is an object": {"alg": "HS256", "kid": {"id": "k1"}},
    "kid is a number": {"alg": "HS256", "kid": 1},
    "kid is null": {"alg": "HS256", "kid": None},
    "kid is missing": {"alg": "HS256"},
    "unknown crit": {"alg": "HS256", "kid": "{kid}", "crit": ["exp"]},
    "crit is not a list": {"alg": "HS256", "kid": "{kid}", "crit": "exp"},
    "crit is empty": {"alg": "HS256", "kid": "{kid}", "crit": []},
    "unencoded payload (b64 crit)": {"alg": "HS256", "kid": "{kid}", "crit": ["b64"],
                                     "b64": False},
    "alg none": {"alg": "none", "kid": "{kid}"},
    "alg is a list": {"alg": ["HS256"], "kid": "{kid}"},
    "alg missing": {"kid": "{kid}"},
    "key set url": {"alg": "HS256", "kid": "{kid}", "jku": "https://evil.example/jwks"},
}


@pytest.mark.parametrize("name", MALFORMED_HEADERS)
def test_token_with_a_malformed_jose_header_is_401_problem(api, emar_claims, hub_key, name):
    kid, secret = hub_key
    header = {key: (kid if value == "{kid}" else value)
              for key, value in MALFORMED_HEADERS[name].items()}
    # Correctly signed with the hub's key, so only the header can be what is refused.
    token = signed_raw(header, segment(emar_claims), secret)

    assert_invalid_token(lookup(api, token))


def _unparseable_tokens(kid: str, secret: str, claims: dict) -> dict[str, str]:
    good_header = segment({"alg": "HS256", "kid": kid})
    good_payload = segment(claims)
    # Deeper than Python's recursion limit, yet short enough to pass the edge's header limit
    # (a longer Authorization header is answered 431 before the token is read).
    nested = '{"alg":"HS256","kid":"' + kid + '","x":' + "[" * 1200 + "]" * 1200 + "}"
    return {
        "header is not base64": f"!!!.{good_payload}.c2ln",
        "payload is not base64": f"{good_header}.%%%.c2ln",
        "signature is not base64": f"{good_header}.{good_payload}.***",
        "header is a JSON list": f"{b64('[1, 2]')}.{good_payload}.c2ln",
        "header is a JSON string": f"{b64(json.dumps('HS256'))}.{good_payload}.c2ln",
        "header is JSON null": f"{b64('null')}.{good_payload}.c2ln",
        "header is not JSON": f"{b64('{alg: HS256')}.{good_payload}.c2ln",
        "header is not UTF-8": f"{b64(bytes([0xff, 0xfe, 0x7b]))}.{good_payload}.c2ln",
        "header nested 1200 levels deep": f"{b64(nested)}.{good_payload}.c2ln",
        "payload is a JSON list (signed)": signed_raw({"alg": "HS256", "kid": kid},
                                                      segment([claims]), secret),
        "payload is not JSON (signed)": signed_raw({"alg": "HS256", "kid": kid},
                                                   b64("not json"), secret),
        "two segments": f"{good_header}.{good_payload}",
        "four segments": f"{good_header}.{good_payload}.c2ln.c2ln",
        "empty segments": "..",
        "non-ASCII characters": f"{good_header}.{good_payload}.sïg",
    }


UNPARSEABLE = list(_unparseable_tokens("k", "s" * 40, {"sub": "x"}))


@pytest.mark.parametrize("name", UNPARSEABLE)
def test_unparseable_token_is_401_problem(api, emar_claims, hub_key, name):
    token = _unparseable_tokens(*hub_key, emar_claims)[name]

    assert_invalid_token(lookup(api, token))


@given(header=st.dictionaries(
           st.sampled_from(["alg", "kid", "typ", "crit", "b64", "jku", "x"]),
           st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                        | st.text(max_size=8) | st.sampled_from(["HS256", "k1", "b64"]),
                        lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                        max_leaves=8)),
       payload=st.binary(max_size=64) | st.just(segment({"sub": "x"}).encode()),
       signature=st.text(max_size=16))
@settings(max_examples=150, deadline=None)
def test_any_header_and_payload_either_verify_or_raise_invalid_token(header, payload,
                                                                    signature):
    token = f"{segment(header)}.{b64(payload)}.{signature}"

    with pytest.raises(InvalidToken):
        verify_token(token, keys=KEYS, issuer=ISSUER, audience=AUDIENCE)


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_any_string_is_a_token_or_raises_invalid_token(text):
    with pytest.raises(InvalidToken):
        verify_token(text, keys=KEYS, issuer=ISSUER, audience=AUDIENCE)


@given(claims=st.dictionaries(
           st.sampled_from(["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "tenant_id",
                            "tenant", "client_id", "product", "scope"]),
           st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=12) | st.lists(st.text(max_size=4), max_size=2)
           | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
@settings(max_examples=200, deadline=None)
def test_any_signed_claims_verify_or_raise_invalid_token(claims):
    token = signed_raw({"alg": "HS256", "kid": "k1", "typ": "JWT"}, segment(claims),
                       KEYS.keys["k1"])

    try:
        verified = verify_token(token, keys=KEYS, issuer=ISSUER, audience=AUDIENCE)
    except InvalidToken:
        return
    assert isinstance(verified.client_id, str)  # only possible for a fully typed token


def _with(claims: dict, **changes) -> dict:
    changed = {**claims, **changes}
    return {key: value for key, value in changed.items() if value is not _DROP}


_DROP = object()


CLAIM_DEFECTS = {
    "tenant_id not a UUID": {"tenant_id": "north-general"},
    "tenant_id a number": {"tenant_id": 7},
    "tenant_id a list": {"tenant_id": ["a"]},
    "tenant_id upper-case UUID": {"tenant_id": "{TENANT_UPPER}"},
    "scope a list": {"scope": ["inventory:read"]},
    "scope a number": {"scope": 1},
    "scope unknown": {"scope": "inventory:read everything"},
    "scope tab-separated": {"scope": "inventory:read\tjobs:read"},
    "scope missing": {"scope": _DROP},
    "client_id a number": {"client_id": 5, "sub": 5},
    "client_id not in the id grammar": {"client_id": "Jane Doe", "sub": "Jane Doe"},
    "client_id not ASCII": {"client_id": "north-general-emar\u0131",
                            "sub": "north-general-emar\u0131"},
    "sub differs from client_id": {"sub": "north-general-inventory"},
    "tenant a list": {"tenant": ["north-general"]},
    "tenant missing": {"tenant": _DROP},
    "product a number": {"product": 1},
    "product an object": {"product": {"code": "administration"}},
    "product missing": {"product": _DROP},
    # Well-typed but not what the client is: refused by the client-state check.
    "product unknown": {"product": "no-such-product"},
    "product of another client": {"product": "inventory"},
    "product null for a product client": {"product": None},
    "tenant_id of no tenant": {"tenant_id": "{OTHER_UUID}"},
    "exp a float": {"exp": "{NOW_PLUS_300_FLOAT}"},
    "exp a string": {"exp": "{NOW_PLUS_300_STRING}"},
    "iat a boolean": {"iat": True},
    "nbf a string": {"nbf": "now"},
    "nbf missing": {"nbf": _DROP},
    "jti a number": {"jti": 12},
    "lifetime of one hour": {"exp": "{NOW_PLUS_3600}"},
    "lifetime of fifteen minutes and one second": {"exp": "{NOW_PLUS_901}"},
    "exp before iat": {"iat": "{NOW_PLUS_600}", "nbf": "{NOW}", "exp": "{NOW_PLUS_300}"},
}


def _resolve(value, claims):
    now = claims["iat"]
    placeholders = {
        "{TENANT_UPPER}": claims["tenant_id"].upper(), "{NOW}": now,
        "{OTHER_UUID}": str(uuid.uuid4()),
        "{NOW_PLUS_300_FLOAT}": now + 300.5, "{NOW_PLUS_300_STRING}": str(now + 300),
        "{NOW_PLUS_3600}": now + 3600, "{NOW_PLUS_901}": now + 901,
        "{NOW_PLUS_600}": now + 600, "{NOW_PLUS_300}": now + 300,
    }
    return placeholders.get(value, value) if isinstance(value, str) else value


@pytest.mark.parametrize("defect", CLAIM_DEFECTS)
def test_validly_signed_token_with_a_mistyped_claim_is_401(api, emar_claims, hub_key, defect):
    now = int(time.time())
    claims = {**emar_claims, "iat": now, "nbf": now, "exp": now + 300}
    changes = {name: _resolve(value, claims) for name, value in CLAIM_DEFECTS[defect].items()}

    response = lookup(api, signed(_with(claims, **changes), hub_key))

    assert_invalid_token(response)


def test_a_fifteen_minute_lifetime_is_still_accepted(api, emar_claims, hub_key):
    now = int(time.time())

    response = lookup(api, signed({**emar_claims, "iat": now, "nbf": now, "exp": now + 900},
                                  hub_key))

    assert response.status_code == 200, response.json
