"""FHIR output: valid R4B bundles built from minimized records, with pseudonyms and NDC codes only."""

import json
import re
from datetime import date

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.supplydelivery import SupplyDelivery
from hypothesis import given
from hypothesis import strategies as st

from app.lookups.fhir import (
    CONTAINER_STATUS_EXTENSION,
    DATA_ABSENT_REASON,
    FHIR_JSON,
    FROM_LOCATION_EXTENSION,
    LOCATION_EXTENSION,
    NDC_SYSTEM,
    UNIT_EXTENSION,
    administrations_bundle,
    container_origin_bundle,
    fhir_id,
    inventory_bundle,
)
from app.phi.policy import minimize, minimize_many
from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key
from tests.fixtures.factories import (
    canonical_administration,
    canonical_container,
    canonical_container_origin,
)

MASTER_KEY = "test-master-key-not-a-real-secret-0123456789"
NORTH = Pseudonymizer(tenant_pseudonym_key(MASTER_KEY, "north-general"))
SELF_URL = "https://hub.example/v1/administrations?unit=ICU-3"
NEXT_URL = "https://hub.example/v1/administrations?unit=ICU-3&cursor=abc"


def minimized_administration(**overrides):
    return minimize("administration", "inventory", canonical_administration(**overrides), pseudonymizer=NORTH)


def minimized_origin(**overrides):
    return minimize("container_origin", "administration", canonical_container_origin(**overrides),
                    pseudonymizer=NORTH)


def reparsed(document: dict) -> Bundle:
    """Parse the produced JSON text back with the R4B models: proof that it is valid FHIR."""
    return Bundle.model_validate_json(json.dumps(document))


def administration_page(records=None, next_url=NEXT_URL):
    records = [minimized_administration()] if records is None else records
    return administrations_bundle(records, tenant="north-general", self_url=SELF_URL, next_url=next_url)


def test_fhir_media_type():
    assert FHIR_JSON == "application/fhir+json"


# --- administrations ------------------------------------------------------------------------

def test_administrations_page_is_a_valid_searchset_without_a_total():
    document = administration_page([minimized_administration(administration_id=f"NGH-A{n:09d}")
                                    for n in range(3)])

    bundle = reparsed(document)

    assert bundle.type == "searchset"
    assert "total" not in document
    assert [(link.relation, link.url) for link in bundle.link] == [("self", SELF_URL), ("next", NEXT_URL)]
    assert [entry.resource.id for entry in bundle.entry] == ["NGH-A000000000", "NGH-A000000001",
                                                             "NGH-A000000002"]
    assert all(isinstance(entry.resource, MedicationAdministration) for entry in bundle.entry)
    assert {entry.search.mode for entry in bundle.entry} == {"match"}


def test_last_page_has_no_next_link_and_an_empty_page_no_entries():
    document = administration_page([], next_url=None)

    assert [link["relation"] for link in document["link"]] == ["self"]
    assert "entry" not in document
    reparsed(document)


def test_administration_carries_ndc_coding_dose_route_time_and_unit():
    resource = administration_page()["entry"][0]["resource"]

    assert resource["resourceType"] == "MedicationAdministration"
    assert resource["status"] == "completed"
    assert resource["medicationCodeableConcept"]["coding"] == [
        {"system": NDC_SYSTEM, "code": "95218036482", "display": "Morphine sulfate"}]
    assert resource["effectiveDateTime"] == "2026-11-18T08:15:00Z"
    assert resource["dosage"] == {"route": {"text": "IV"}, "dose": {"value": 2.0, "unit": "mg"}}
    assert resource["extension"] == [{"url": UNIT_EXTENSION, "valueString": "ICU-3"}]


def test_patient_and_nurse_appear_only_as_tenant_pseudonym_identifiers():
    resource = administration_page()["entry"][0]["resource"]

    assert resource["subject"] == {"identifier": {
        "system": "urn:medication-hub:north-general:patient",
        "value": NORTH.pseudonym("MRN48213377", "patient")}}
    assert resource["performer"] == [{"actor": {"identifier": {
        "system": "urn:medication-hub:north-general:staff",
        "value": NORTH.pseudonym("RN20481", "staff")}}}]


def test_scanned_container_is_the_device_by_barcode():
    resource = administration_page()["entry"][0]["resource"]
    unscanned_page = administration_page([minimized_administration(container_barcode=None)])
    unscanned = unscanned_page["entry"][0]["resource"]

    assert resource["device"] == [{"identifier": {
        "system": "urn:medication-hub:north-general:container", "value": "300000012345"}}]
    assert "device" not in unscanned


def test_bundle_holds_no_patient_name_mrn_birth_date_nurse_id_or_note():
    text = json.dumps(administration_page())

    for phi in ("MRN48213377", "Maribel", "Okonkwo", "1957", "RN20481", "pain 7/10", "birth"):
        assert phi not in text


def test_an_unminimized_record_is_refused():
    with pytest.raises(ValueError, match="minimized"):
        administration_page([canonical_administration()])


def test_an_administration_without_a_patient_pseudonym_says_the_patient_is_unknown():
    record = minimized_administration()
    record["patient"]["ref"] = None

    resource = administration_page([record])["entry"][0]["resource"]

    assert resource["subject"] == {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]}


@given(st.text(min_size=1, max_size=100))
def test_any_native_administration_id_gives_a_valid_bundle(administration_id):
    document = administration_page([minimized_administration(administration_id=administration_id)])

    assert reparsed(document).entry[0].resource.id == fhir_id(administration_id)


# --- FHIR ids -------------------------------------------------------------------------------

def test_a_valid_native_id_is_kept_as_the_fhir_id():
    assert fhir_id("NGH-A000004711") == "NGH-A000004711"


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_any_native_id_maps_to_a_fhir_id_and_different_ids_stay_different(native, other):
    assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", fhir_id(native))
    if native != other:
        assert fhir_id(native) != fhir_id(other)


def test_ids_that_differ_only_in_invalid_characters_stay_apart():
    assert fhir_id("NGH_A/1") != fhir_id("NGH A 1")
    assert fhir_id("NGH_A/1").startswith("NGH-A-1-")


# --- container origin -----------------------------------------------------------------------

def test_container_origin_is_a_valid_collection_of_the_medication_and_its_deliveries():
    document = container_origin_bundle(minimized_origin(), tenant="north-general")

    bundle = reparsed(document)

    assert bundle.type == "collection"
    assert [type(entry.resource) for entry in bundle.entry] == [Medication, SupplyDelivery,
                                                                SupplyDelivery, SupplyDelivery]
    assert len({entry.fullUrl for entry in bundle.entry}) == 4


def test_container_origin_medication_has_ndc_lot_expiry_and_barcode():
    medication = container_origin_bundle(minimized_origin(), tenant="north-general")["entry"][0]["resource"]

    assert medication["code"]["coding"] == [
        {"system": NDC_SYSTEM, "code": "95218036482", "display": "Morphine sulfate"}]
    assert medication["batch"] == {"lotNumber": "K48213", "expirationDate": "2027-09-30"}
    assert medication["identifier"] == [
        {"system": "urn:medication-hub:north-general:container", "value": "300000012345"}]


def test_each_movement_is_a_completed_delivery_of_that_medication():
    document = container_origin_bundle(minimized_origin(), tenant="north-general")
    medication_url = document["entry"][0]["fullUrl"]
    deliveries = [entry["resource"] for entry in document["entry"][1:]]

    assert medication_url.startswith("urn:uuid:")
    assert [delivery["id"] for delivery in deliveries] == [
        "NGH-C00012345-R", "NGH-C00012345-S", "NGH-C00012345-D"]
    assert {delivery["status"] for delivery in deliveries} == {"completed"}
    assert {delivery["suppliedItem"]["itemReference"]["reference"] for delivery in deliveries} == {
        medication_url}
    assert [delivery["type"]["text"] for delivery in deliveries] == ["received", "stocked", "dispensed"]
    assert [delivery["destination"]["display"] for delivery in deliveries] == [
        "PHARMACY", "ICU-3-CAB1", "ICU-3"]
    assert deliveries[1]["occurrenceDateTime"] == "2026-11-17T09:40:00Z"
    assert "extension" not in deliveries[0]
    assert deliveries[1]["extension"] == [{"url": FROM_LOCATION_EXTENSION, "valueString": "PHARMACY"}]


def test_the_same_origin_gives_the_same_document():
    first = container_origin_bundle(minimized_origin(), tenant="north-general")

    assert container_origin_bundle(minimized_origin(), tenant="north-general") == first
    assert container_origin_bundle(minimized_origin(), tenant="river-valley") != first


def test_a_container_with_no_movements_is_just_the_medication():
    document = container_origin_bundle(minimized_origin(movements=[]), tenant="north-general")

    assert [entry["resource"]["resourceType"] for entry in reparsed(document).model_dump()["entry"]] == [
        "Medication"]


# --- inventory ------------------------------------------------------------------------------

def test_inventory_page_is_a_searchset_of_medications_with_batch_and_location():
    containers = minimize_many("container", "administration", [
        canonical_container(),
        canonical_container(container_id="NGH-C00012346", barcode="300000012346",
                            location__unit=None, location__cabinet=None, status="received"),
    ], pseudonymizer=NORTH)

    document = inventory_bundle(containers, tenant="north-general", self_url=SELF_URL, next_url=None)

    bundle = reparsed(document)
    assert bundle.type == "searchset"
    assert "total" not in document
    first, second = (entry["resource"] for entry in document["entry"])
    assert first["resourceType"] == "Medication"
    assert first["batch"] == {"lotNumber": "K48213", "expirationDate": "2027-09-30"}
    assert first["extension"] == [
        {"url": LOCATION_EXTENSION, "extension": [{"url": "facility", "valueString": "NGH"},
                                                  {"url": "unit", "valueString": "ICU-3"}]},
        {"url": CONTAINER_STATUS_EXTENSION, "valueString": "dispensed"},
    ]
    assert second["extension"][0] == {"url": LOCATION_EXTENSION,
                                      "extension": [{"url": "facility", "valueString": "NGH"}]}


def test_expiry_as_a_date_object_is_written_as_a_fhir_date():
    container = minimize("container", "inventory", canonical_container(), pseudonymizer=NORTH)
    container["expires_on"] = date(2027, 9, 30)

    document = inventory_bundle([container], tenant="north-general", self_url=SELF_URL, next_url=None)

    assert reparsed(document).entry[0].resource.batch.expirationDate == date(2027, 9, 30)
