"""Compatibility: real HL7 v2 messages other systems publish (tests/fixtures/hl7/samples, see its
README) go through the hub's receiving path without crashing, each answered with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.pharmacy.models import Hl7Message
from app.pharmacy.service import receive_message
from tests.fixtures.hl7 import ack_segments

SAMPLES = Path(__file__).parent / "fixtures" / "hl7" / "samples"

EXPECTED = {
    # Not a pharmacy message the hub takes: unsupported type (200) or trigger (201).
    "adt_a01_google_1.hl7": ("AR", "200"),
    "adt_a01_linuxforhealth_1_lf.hl7": ("AR", "200"),
    "oru_r01_hapi_1.hl7": ("AR", "200"),
    "oru_r01_pythonhl7_1.hl7": ("AR", "200"),
    "rde_o01_google_1_lf.hl7": ("AR", "201"),
    "rde_o01_google_2.hl7": ("AR", "201"),
    # Encoding characters other than ^~\& (the "no message type" sample uses $%~\&).
    "nomsgtype_pythonhl7_1.hl7": ("AR", "102"),
    "oru_r01_hapi_2_lf.hl7": ("AR", "102"),
    # Supported types in versions other than 2.5.x.
    "rde_o11_hapi_1.hl7": ("AR", "203"),
    "rde_o11_fhirconverter_1_lf.hl7": ("AR", "203"),
    "rds_o13_fhirconverter_1.hl7": ("AR", "203"),
    "rds_o13_fhirconverter_2_lf.hl7": ("AR", "203"),
    # 2.5 / 2.5.1, but without a processing id or a sending application / facility, which the
    # hub needs to find the sender's tenant.
    "ras_o17_hapi_1.hl7": ("AR", "101"),
    "rde_o11_linuxforhealth_1_lf.hl7": ("AR", "101"),
    "rde_o11_nhapi_1.hl7": ("AR", "101"),
}


def test_every_sample_has_an_expectation():
    assert sorted(path.name for path in SAMPLES.glob("*.hl7")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_is_answered_with_its_reason(hub_app, name):
    hub = hub_app.extensions["hub"]
    raw = (SAMPLES / name).read_bytes()
    with hub_app.app_context():
        ack = ack_segments(receive_message(db_session=hub.database.session,
                                           settings=hub.settings, raw=raw, transport="mllp"))

    ack_code, error_code = EXPECTED[name]
    assert ack["MSA"][1] == ack_code
    assert ack["ERR"][3].split("^")[0] == error_code
    assert ack["ERR"][8]  # the hub's reason, in words


def test_a_sample_of_a_supported_type_maps_once_its_sender_is_configured(hub_app):
    """The nHapi RDE^O11 (2.5.1) with a sending facility and a tenant configured for its
    sender: it is read and mapped as far as the sample goes, and refused only for what it lacks
    (its unit, PV1-3, names no hospital unit, so the record cannot be placed)."""
    from tests.fixtures.hl7 import onboard_pharmacy_tenant

    tenant = onboard_pharmacy_tenant(hub_app)
    text = (SAMPLES / "rde_o11_nhapi_1.hl7").read_text()
    text = text.replace("MSH|^~\\&|EXACTDATA||", f"MSH|^~\\&|{tenant.sender[0]}|"
                                                  f"{tenant.sender[1]}|", 1)
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        ack = ack_segments(receive_message(db_session=hub.database.session,
                                           settings=hub.settings, raw=text.encode(),
                                           transport="mllp"))
        receipt = hub.database.session.scalar(select(Hl7Message).where(
            Hl7Message.tenant_id == tenant.tenant_id))

    assert ack["MSA"][1:3] == ["AE", "EF010000000071000000_4"]
    assert ack["ERR"][2] == "PV1^1^3"
    assert (receipt.ack_code, receipt.error_code) == ("AE", ack["ERR"][3].split("^")[0])
