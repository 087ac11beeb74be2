"""The PHI policy: an allow-list per resource type and consumer, applied by one function."""

import copy
import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import fields

from app.canonical.schemas import AdministrationSchema, ContainerOriginSchema, ContainerSchema
from app.phi.policy import (
    PHI_FIELD_PATHS,
    POLICIES,
    Drop,
    Generalize,
    Keep,
    PolicyMissing,
    Pseudonymize,
    RecordShapeError,
    Redact,
    compile_policy,
    minimize,
    minimize_many,
    require_policy,
)
from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key
from tests.fixtures.factories import (
    canonical_administration,
    canonical_container,
    canonical_container_origin,
)

MASTER_KEY = "test-master-key-not-a-real-secret-0123456789"
NORTH = Pseudonymizer(tenant_pseudonym_key(MASTER_KEY, "north-general"))
RIVER = Pseudonymizer(tenant_pseudonym_key(MASTER_KEY, "river-valley"))


def for_inventory(record, *, pseudonymizer=NORTH, now=None):
    return minimize("administration", "inventory", record, pseudonymizer=pseudonymizer, now=now)


def schema_paths(schema, prefix=""):
    """Every leaf path of a canonical schema, in policy notation (``movements[].at``)."""
    paths = set()
    for name, field in schema.fields.items():
        if isinstance(field, fields.Nested):
            paths |= schema_paths(field.schema, f"{prefix}{name}.")
        elif isinstance(field, fields.List) and isinstance(field.inner, fields.Nested):
            paths |= schema_paths(field.inner.schema, f"{prefix}{name}[].")
        else:
            paths.add(prefix + name)
    return paths


def all_keys(value):
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in all_keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in all_keys(item)}
    return set()


# --- the administration view other products get ---------------------------------------------

def test_inventory_sees_the_dose_but_no_patient_name_mrn_birth_date_nurse_or_note():
    record = canonical_administration()

    assert for_inventory(record) == {
        "administration_id": "NGH-A000004711",
        "unit": "ICU-3",
        "medication": {"ndc11": "95218036482", "name": "Morphine sulfate", "strength": "2 mg/mL"},
        "dose": {"quantity": 2.0, "unit": "mg"},
        "route": "IV",
        "administered_at": "2026-11-18T08:15:00Z",
        "container_barcode": "300000012345",
        "nurse_ref": NORTH.pseudonym("RN20481", "staff"),
        "patient": {"ref": NORTH.pseudonym("MRN48213377", "patient"), "birth_year": "1957"},
    }


def test_operator_sees_administrations_as_inventory_does():
    record = canonical_administration()

    operator_view = minimize("administration", "operator", record, pseudonymizer=NORTH)

    assert operator_view == for_inventory(record)


def test_pseudonymized_identifiers_travel_under_new_names():
    minimized = for_inventory(canonical_administration())

    assert {"mrn", "nurse_id", "birth_date", "note"}.isdisjoint(all_keys(minimized))
    assert set(minimized["patient"]) == {"ref", "birth_year"}
    assert minimized["patient"]["ref"].startswith("pt_")
    assert minimized["nurse_ref"].startswith("st_")


def test_no_phi_value_survives_in_the_output():
    record = canonical_administration()

    text = json.dumps(for_inventory(record))

    for phi in ("MRN48213377", "Maribel", "Okonkwo", "1957-06-14", "RN20481", "pain 7/10"):
        assert phi not in text


def test_same_patient_gets_one_pseudonym_per_tenant_and_another_at_another_tenant():
    first = for_inventory(canonical_administration(administration_id="NGH-A000000001"))
    second = for_inventory(canonical_administration(administration_id="NGH-A000000002"))
    elsewhere = for_inventory(canonical_administration(), pseudonymizer=RIVER)

    assert first["patient"]["ref"] == second["patient"]["ref"]
    assert elsewhere["patient"]["ref"] != first["patient"]["ref"]
    assert elsewhere["nurse_ref"] != first["nurse_ref"]


# --- allow-list -----------------------------------------------------------------------------

CANONICAL_NAMES = {segment.removesuffix("[]")
                   for schema in (AdministrationSchema(), ContainerOriginSchema())
                   for path in schema_paths(schema) for segment in path.split(".")}
unlisted_names = st.text(min_size=1, max_size=20).filter(lambda name: name not in CANONICAL_NAMES)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)
extra_fields = st.dictionaries(unlisted_names, json_values, min_size=1, max_size=4)


@given(extra_fields, st.sampled_from([(), ("patient",), ("medication",), ("dose",)]))
def test_fields_the_policy_does_not_name_never_leave(extras, where):
    record = canonical_administration()
    expected = for_inventory(record)
    target = record
    for name in where:
        target = target[name]
    target.update(extras)

    assert for_inventory(record) == expected


@given(extra_fields)
def test_fields_a_connector_adds_to_movements_never_leave(extras):
    origin = canonical_container_origin()
    expected = minimize("container_origin", "administration", origin, pseudonymizer=NORTH)
    for movement in origin["movements"]:
        movement.update(extras)
    origin.update(extras)

    assert minimize("container_origin", "administration", origin, pseudonymizer=NORTH) == expected


def test_every_canonical_administration_field_has_a_decision():
    for (resource_type, _consumer), rules in POLICIES.items():
        if resource_type == "administration":
            assert set(rules) == schema_paths(AdministrationSchema())


def test_container_readers_keep_every_container_field():
    for (resource_type, _consumer), rules in POLICIES.items():
        schema = {"container": ContainerSchema(), "container_origin": ContainerOriginSchema()}.get(
            resource_type)
        if schema is not None:
            assert rules == {path: Keep() for path in schema_paths(schema)}


def test_no_policy_keeps_a_phi_field_as_it_is():
    for rules in POLICIES.values():
        for path in PHI_FIELD_PATHS & set(rules):
            assert not isinstance(rules[path], Keep)


# --- containers, nested and list paths ------------------------------------------------------

@pytest.mark.parametrize("consumer", ["administration", "inventory", "operator"])
def test_container_readers_get_the_container_whole(consumer):
    container = canonical_container()

    assert minimize("container", consumer, container, pseudonymizer=NORTH) == container


def test_container_origin_keeps_each_movement_in_order():
    origin = canonical_container_origin()

    minimized = minimize("container_origin", "inventory", origin, pseudonymizer=NORTH)

    assert minimized["location"] == {"facility": "NGH", "unit": "ICU-3", "cabinet": None}
    assert [movement["movement_id"] for movement in minimized["movements"]] == [
        "NGH-C00012345-R", "NGH-C00012345-S", "NGH-C00012345-D"]
    assert minimized["movements"] == origin["movements"]


def test_an_empty_movement_list_stays_empty_and_a_missing_one_is_none():
    empty = minimize("container_origin", "inventory", canonical_container_origin(movements=[]),
                     pseudonymizer=NORTH)
    missing = minimize("container_origin", "inventory", canonical_container(), pseudonymizer=NORTH)

    assert empty["movements"] == []
    assert missing["movements"] is None


def test_a_list_element_field_can_be_renamed_inside_its_element():
    plan = compile_policy({"movements[].movement_id": Keep(),
                           "movements[].at": Generalize("year", as_="movements[].year")})

    minimized = plan.apply(canonical_container_origin(), pseudonymizer=NORTH)

    assert minimized["movements"][0] == {"movement_id": "NGH-C00012345-R", "year": "2026"}


def test_a_rename_may_not_move_a_field_out_of_its_list():
    with pytest.raises(ValueError, match="list"):
        compile_policy({"movements[].at": Generalize("year", as_="years[].at")})


# --- each action ----------------------------------------------------------------------------

def test_redact_replaces_a_value_and_leaves_none_as_none():
    plan = compile_policy({"administration_id": Keep(), "note": Redact()})

    with_note = plan.apply(canonical_administration(), pseudonymizer=NORTH)
    without_note = plan.apply(canonical_administration(note=None), pseudonymizer=NORTH)

    assert with_note == {"administration_id": "NGH-A000004711", "note": "[redacted]"}
    assert without_note["note"] is None


def test_drop_leaves_the_field_out():
    plan = compile_policy({"administration_id": Keep(), "note": Drop(), "patient.name": Drop()})

    assert plan.apply(canonical_administration(), pseudonymizer=NORTH) == {
        "administration_id": "NGH-A000004711"}


@pytest.mark.parametrize("expires_on", [date(2027, 9, 30), "2027-09-30",
                                        datetime(2027, 9, 30, 12, tzinfo=UTC)])
def test_generalize_to_year_takes_dates_as_objects_or_iso_text(expires_on):
    plan = compile_policy({"expires_on": Generalize("year", as_="expires_year")})

    assert plan.apply({"expires_on": expires_on}, pseudonymizer=NORTH) == {"expires_year": "2027"}


def test_pseudonymize_accepts_a_numeric_identifier_as_its_text():
    plan = compile_policy({"nurse_id": Pseudonymize("staff", as_="nurse_ref")})

    assert plan.apply({"nurse_id": 20481}, pseudonymizer=NORTH) == {
        "nurse_ref": NORTH.pseudonym("20481", "staff")}


def test_unknown_pseudonym_kind_or_generalization_is_refused_when_the_policy_is_written():
    with pytest.raises(ValueError):
        Pseudonymize("visitor")
    with pytest.raises(ValueError):
        Generalize("decade")


# --- the 90+ rule ---------------------------------------------------------------------------

@pytest.mark.parametrize(("administered_at", "birth_year"), [
    ("2026-11-17T23:59:59Z", "1936"),  # the day before the 90th birthday: 89
    ("2026-11-18T00:00:00Z", "90+"),   # the 90th birthday
    ("2031-01-01T00:00:00Z", "90+"),
])
def test_birth_year_turns_into_90_plus_on_the_90th_birthday_at_the_dose(administered_at, birth_year):
    record = canonical_administration(patient__birth_date=date(1936, 11, 18), administered_at=administered_at)

    assert for_inventory(record)["patient"]["birth_year"] == birth_year


def test_age_is_taken_at_the_dose_not_at_the_read():
    record = canonical_administration(patient__birth_date=date(1936, 11, 18),
                                      administered_at="2026-01-05T10:00:00Z")

    years_later = for_inventory(record, now=datetime(2040, 1, 1, tzinfo=UTC))

    assert years_later["patient"]["birth_year"] == "1936"


def test_without_a_dose_time_age_is_taken_at_now():
    record = canonical_administration(patient__birth_date=date(1936, 11, 18))
    record["administered_at"] = None

    assert for_inventory(record, now=datetime(2026, 11, 17, 23, 0, tzinfo=UTC))["patient"][
        "birth_year"] == "1936"
    assert for_inventory(record, now=datetime(2026, 11, 18, 0, 0, tzinfo=UTC))["patient"][
        "birth_year"] == "90+"


def test_without_a_dose_time_or_now_age_is_taken_today_utc():
    today = datetime.now(UTC).date()
    record = canonical_administration()
    del record["administered_at"]
    record["patient"]["birth_date"] = date(today.year - 90, 1, 1)
    younger = copy.deepcopy(record)
    younger["patient"]["birth_date"] = date(today.year - 89, 12, 31)

    assert for_inventory(record)["patient"]["birth_year"] == "90+"
    assert for_inventory(younger)["patient"]["birth_year"] == str(today.year - 89)


def test_birth_date_as_iso_text_is_generalized_like_a_date():
    record = canonical_administration()
    record["patient"]["birth_date"] = "1936-11-18"

    assert for_inventory(record)["patient"]["birth_year"] == "90+"


# --- None, absence, shape -------------------------------------------------------------------

def test_a_kept_field_that_is_none_comes_out_as_none():
    minimized = for_inventory(canonical_administration(container_barcode=None, medication__strength=None))

    assert minimized["container_barcode"] is None
    assert minimized["medication"]["strength"] is None


def test_a_field_missing_from_the_record_comes_out_as_none():
    record = canonical_administration()
    del record["container_barcode"]
    record["patient"] = None

    minimized = for_inventory(record)

    assert minimized["container_barcode"] is None
    assert minimized["patient"] == {"ref": None, "birth_year": None}


def test_an_object_where_a_value_belongs_is_refused_without_echoing_it():
    record = canonical_administration()
    record["medication"]["name"] = {"patient": "Maribel Okonkwo-Lindqvist"}

    with pytest.raises(RecordShapeError) as refused:
        for_inventory(record)

    assert "medication.name" in str(refused.value)
    assert "Maribel" not in str(refused.value)


def test_a_birth_date_that_is_not_a_date_is_refused_without_echoing_it():
    record = canonical_administration()
    record["patient"]["birth_date"] = "born in spring 1957"

    with pytest.raises(RecordShapeError) as refused:
        for_inventory(record)

    assert "1957" not in str(refused.value)


@given(extra_fields)
def test_the_input_record_is_never_changed(extras):
    record = canonical_administration()
    record["patient"].update(extras)
    before = copy.deepcopy(record)

    minimized = for_inventory(record)
    minimized["medication"]["name"] = "changed"
    minimized["patient"]["ref"] = "changed"

    assert record == before


def test_a_minimized_movement_is_a_new_object():
    origin = canonical_container_origin()

    minimized = minimize("container_origin", "inventory", origin, pseudonymizer=NORTH)
    minimized["movements"][0]["at"] = "changed"

    assert origin["movements"][0]["at"] == "2026-11-16T14:02:11Z"


# --- missing policies and policy checks -----------------------------------------------------

def test_administration_system_reading_its_own_administrations_has_no_policy():
    with pytest.raises(PolicyMissing) as missing:
        minimize("administration", "administration", canonical_administration(), pseudonymizer=NORTH)

    assert isinstance(missing.value, LookupError)
    assert (missing.value.resource_type, missing.value.consumer) == ("administration", "administration")


def test_unknown_resource_type_or_consumer_has_no_policy():
    with pytest.raises(PolicyMissing):
        minimize_many("patient", "inventory", [], pseudonymizer=NORTH)
    with pytest.raises(PolicyMissing):
        require_policy("container", "pharmacy")


def test_require_policy_passes_for_a_known_pair():
    require_policy("container_origin", "administration")


def test_minimize_many_keeps_order_and_matches_minimize():
    records = [canonical_administration(administration_id=f"NGH-A{n:09d}") for n in range(5)]
    now = datetime(2026, 11, 18, tzinfo=UTC)

    page = minimize_many("administration", "inventory", records, pseudonymizer=NORTH, now=now)

    assert page == [for_inventory(record, now=now) for record in records]


@pytest.mark.parametrize("rules", [
    {"patient.mrn": Keep()},
    {"patient": Keep()},
    {"note": Keep()},
    {"patient.mrn": Pseudonymize("patient")},
    {"patient.birth_date": Generalize("year")},
])
def test_a_policy_that_would_let_phi_out_under_its_own_name_is_refused(rules):
    with pytest.raises(ValueError):
        compile_policy(rules)


@pytest.mark.parametrize("rules", [
    {"nurse_id": Pseudonymize("staff", as_="ref"), "patient.mrn": Pseudonymize("patient", as_="ref")},
    {"unit": Keep(), "nurse_id": Pseudonymize("staff", as_="unit.ref")},
    {"movements": Keep(), "movements[].at": Keep()},
    {"movements[]": Keep()},
    {"patient..mrn": Pseudonymize("patient", as_="ref")},
])
def test_a_policy_with_clashing_or_malformed_paths_is_refused(rules):
    with pytest.raises(ValueError):
        compile_policy(rules)


def test_a_compiled_plan_lists_its_output_paths():
    plan = compile_policy(POLICIES[("administration", "inventory")])

    assert "patient.ref" in plan.output_paths
    assert PHI_FIELD_PATHS.isdisjoint(plan.output_paths)


def test_minimized_records_of_connector_output_are_json_ready_for_the_cache():
    for minimized in (for_inventory(canonical_administration()),
                      minimize("container_origin", "operator", canonical_container_origin(),
                               pseudonymizer=NORTH)):
        assert json.loads(json.dumps(minimized)) == minimized
