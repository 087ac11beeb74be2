"""Pseudonyms: stable per tenant, different across tenants, one-way."""

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key

MASTER_KEY = "test-master-key-not-a-real-secret-0123456789"

identifiers = st.text(min_size=1, max_size=40)
tenant_ids = st.text(min_size=1, max_size=36)
kinds = st.sampled_from(["patient", "staff"])


def pseudonymizer_for(tenant_id: str, master_key: str = MASTER_KEY) -> Pseudonymizer:
    return Pseudonymizer(tenant_pseudonym_key(master_key, tenant_id))


def test_tenant_key_is_the_hmac_of_the_tenant_under_the_master_key():
    expected = hmac.new(MASTER_KEY.encode(), b"pseudonym:north-general", hashlib.sha256).digest()

    assert tenant_pseudonym_key(MASTER_KEY, "north-general") == expected


def test_pseudonym_is_the_prefixed_truncated_base32_hmac_of_kind_and_value():
    key = tenant_pseudonym_key(MASTER_KEY, "north-general")
    digest = hmac.new(key, b"patient\x00MRN48213377", hashlib.sha256).digest()

    pseudonym = Pseudonymizer(key).pseudonym("MRN48213377", "patient")

    assert pseudonym == "pt_" + base64.b32encode(digest).decode().lower()[:26]


@given(identifiers, tenant_ids, kinds)
def test_same_identifier_at_same_tenant_always_gets_the_same_pseudonym(identifier, tenant_id, kind):
    first = pseudonymizer_for(tenant_id).pseudonym(identifier, kind)
    again = pseudonymizer_for(tenant_id).pseudonym(identifier, kind)

    assert first == again


@given(identifiers, tenant_ids, tenant_ids, kinds)
def test_another_tenant_gets_another_pseudonym_for_the_same_identifier(identifier, tenant, other, kind):
    if tenant == other:
        return

    assert (pseudonymizer_for(tenant).pseudonym(identifier, kind)
            != pseudonymizer_for(other).pseudonym(identifier, kind))


@given(identifiers, identifiers)
def test_different_identifiers_get_different_pseudonyms(identifier, other):
    pseudonymizer = pseudonymizer_for("north-general")
    if identifier == other:
        return

    assert pseudonymizer.pseudonym(identifier, "patient") != pseudonymizer.pseudonym(other, "patient")


@given(identifiers, kinds)
def test_pseudonym_is_a_prefix_and_26_lowercase_base32_characters(identifier, kind):
    pseudonym = pseudonymizer_for("north-general").pseudonym(identifier, kind)

    prefix = {"patient": "pt_", "staff": "st_"}[kind]
    assert re.fullmatch(re.escape(prefix) + r"[a-z2-7]{26}", pseudonym)


def test_an_mrn_and_a_nurse_id_that_are_the_same_string_get_unrelated_pseudonyms():
    pseudonymizer = pseudonymizer_for("north-general")

    patient = pseudonymizer.pseudonym("20481", "patient")
    staff = pseudonymizer.pseudonym("20481", "staff")

    assert patient[3:] != staff[3:]


def test_a_new_master_key_changes_the_pseudonyms():
    before = pseudonymizer_for("north-general").pseudonym("MRN48213377", "patient")
    after = pseudonymizer_for("north-general", master_key="another-master-key-0123456789").pseudonym(
        "MRN48213377", "patient")

    assert before != after


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown pseudonym kind"):
        pseudonymizer_for("north-general").pseudonym("MRN48213377", "visitor")


def test_empty_master_key_or_tenant_is_refused():
    with pytest.raises(ValueError):
        tenant_pseudonym_key("", "north-general")
    with pytest.raises(ValueError):
        tenant_pseudonym_key(MASTER_KEY, "")


def test_a_short_key_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymizer(b"short")


def test_the_key_never_shows_in_repr():
    key = tenant_pseudonym_key(MASTER_KEY, "north-general")

    shown = repr(Pseudonymizer(key))

    assert key.hex() not in shown and repr(key) not in shown
