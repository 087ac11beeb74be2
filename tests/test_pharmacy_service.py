"""Receiving System C's messages: tenancy, dedupe, mapping of each type, storage, PHI."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.entitlements.service import forget_entitlements, revoke_entitlement
from app.pharmacy.models import (
    Hl7Message,
    PharmacyAdministration,
    PharmacyDispense,
    PharmacyOrder,
)
from app.pharmacy.service import (
    check_sender_claims,
    dispensed_totals,
    iter_dispenses,
    receive_message,
)
from app.phi.pseudonyms import Pseudonymizer, tenant_pseudonym_key
from app.problems import Problem
from app.tenants.models import Tenant
from app.tenants.service import get_product
from tests.fixtures.hl7 import (
    NDC11,
    SEEDED_PHI,
    ack_segments,
    encoded,
    hl7_message,
    onboard_pharmacy_tenant,
)

WINDOW = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


@pytest.fixture
def hub(hub_app):
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        yield hub
        hub.database.session.rollback()


def receive(hub, message: str | bytes, **kwargs) -> dict[str, list[str]]:
    raw = message if isinstance(message, bytes) else encoded(message)
    ack = receive_message(db_session=hub.database.session, settings=hub.settings, raw=raw,
                          transport=kwargs.pop("transport", "mllp"), **kwargs)
    return ack_segments(ack)


def rows(hub, model, tenant_id):
    return list(hub.database.session.scalars(select(model).where(model.tenant_id == tenant_id)))


def pseudonym(hub, tenant_id, value, kind="patient") -> str:
    key = tenant_pseudonym_key(hub.settings.hub_pseudonym_key, str(tenant_id))
    return Pseudonymizer(key).pseudonym(value, kind)


def test_order_is_stored_field_by_field_and_acknowledged_aa(hub, pharmacy_tenant):
    ack = receive(hub, hl7_message("RDE^O11", sender=pharmacy_tenant.sender,
                                   control_id="C-ORDER-1"))

    assert ack["MSA"][1:3] == ["AA", "C-ORDER-1"]
    [order] = rows(hub, PharmacyOrder, pharmacy_tenant.tenant_id)
    assert (order.order_number, order.unit, order.ndc11, order.quantity, order.dose_unit,
            order.route) == ("RX0042", "ICU-3", NDC11, 2.0, "mg", "IV")
    assert order.medication_name == "Morphine sulfate 2 mg/mL"
    # 08:15 in New York on 18 November is 13:15 UTC.
    assert order.ordered_at.replace(tzinfo=UTC) == datetime(2026, 11, 18, 13, 15, tzinfo=UTC)
    assert order.patient_pseudonym == pseudonym(hub, pharmacy_tenant.tenant_id, "MRN7731904")


def test_dispense_is_stored_field_by_field(hub, pharmacy_tenant):
    receive(hub, hl7_message("RDS^O13", sender=pharmacy_tenant.sender, quantity="2.5",
                             at="202611180815-0500"))

    [dispense] = rows(hub, PharmacyDispense, pharmacy_tenant.tenant_id)
    assert (dispense.dispense_id, dispense.order_number, dispense.unit, dispense.ndc11,
            dispense.quantity, dispense.dose_unit, dispense.route, dispense.container_barcode) \
        == ("RX0042-1", "RX0042", "ICU-3", NDC11, 2.5, "mg", "IV", "CNT-000123")
    assert dispense.dispensed_at.replace(tzinfo=UTC) == datetime(2026, 11, 18, 13, 15,
                                                                 tzinfo=UTC)


def test_administration_is_stored_with_pseudonyms_only(hub, pharmacy_tenant):
    receive(hub, hl7_message("RAS^O17", sender=pharmacy_tenant.sender))

    [given] = rows(hub, PharmacyAdministration, pharmacy_tenant.tenant_id)
    assert (given.administration_id, given.order_number, given.unit, given.ndc11,
            given.quantity, given.dose_unit, given.route, given.container_barcode) \
        == ("RX0042-1", "RX0042", "ICU-3", NDC11, 2.0, "mg", "IV", "CNT-000123")
    assert given.nurse_pseudonym == pseudonym(hub, pharmacy_tenant.tenant_id, "RN55012", "staff")
    assert given.patient_pseudonym.startswith("pt_")


def test_the_same_control_id_is_acknowledged_twice_and_stored_once(hub, pharmacy_tenant):
    message = hl7_message("RDS^O13", sender=pharmacy_tenant.sender, control_id="C-DUP-1")

    first, second = receive(hub, message), receive(hub, message)

    assert first["MSA"][1:3] == second["MSA"][1:3] == ["AA", "C-DUP-1"]
    assert first["MSH"][10] != second["MSH"][10]
    assert len(rows(hub, PharmacyDispense, pharmacy_tenant.tenant_id)) == 1
    [receipt] = rows(hub, Hl7Message, pharmacy_tenant.tenant_id)
    assert (receipt.ack_code, receipt.repeats) == ("AA", 1)


def test_concurrent_duplicates_are_stored_once(hub_app, pharmacy_tenant):
    hub = hub_app.extensions["hub"]
    message = encoded(hl7_message("RDS^O13", sender=pharmacy_tenant.sender))
    answers: list[bytes] = []
    start = threading.Barrier(4)

    def send() -> None:
        session = hub.database.new_session()
        try:
            start.wait()
            answers.append(receive_message(db_session=session, settings=hub.settings,
                                           raw=message, transport="mllp"))
        finally:
            session.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [ack_segments(answer)["MSA"][1] for answer in answers] == ["AA"] * 4
    with hub_app.app_context():
        assert len(rows(hub, PharmacyDispense, pharmacy_tenant.tenant_id)) == 1


def test_unknown_sender_is_rejected_with_204(hub):
    ack = receive(hub, hl7_message(sender=("NOBODY", "NOWHERE"), control_id="C-UNKNOWN"))

    assert ack["MSA"][1:3] == ["AR", "C-UNKNOWN"]
    assert ack["ERR"][3].split("^")[0] == "204"


def test_unentitled_tenant_is_rejected_and_nothing_is_stored(hub_app, hub):
    tenant = onboard_pharmacy_tenant(hub_app, entitled=False)

    ack = receive(hub, hl7_message(sender=tenant.sender))

    assert ack["MSA"][1] == "AR" and ack["ERR"][3].startswith("204^")
    assert rows(hub, PharmacyOrder, tenant.tenant_id) == []


def test_a_revoked_entitlement_stops_the_next_message(hub, pharmacy_tenant):
    receive(hub, hl7_message(sender=pharmacy_tenant.sender))
    session = hub.database.session
    revoke_entitlement(db_session=session,
                       tenant=session.get(Tenant, pharmacy_tenant.tenant_id),
                       product=get_product(db_session=session, code="pharmacy"))
    session.commit()
    forget_entitlements()

    ack = receive(hub, hl7_message(sender=pharmacy_tenant.sender))

    assert ack["MSA"][1] == "AR"
    assert len(rows(hub, PharmacyOrder, pharmacy_tenant.tenant_id)) == 1


def test_a_client_of_another_tenant_cannot_send_for_this_sender(hub, pharmacy_tenant):
    ack = receive(hub, hl7_message(sender=pharmacy_tenant.sender), transport="http",
                  tenant_id=uuid.uuid4())

    assert ack["MSA"][1] == "AR" and ack["ERR"][3].startswith("204^")
    assert rows(hub, PharmacyOrder, pharmacy_tenant.tenant_id) == []


@pytest.mark.parametrize(("change", "code", "location"), [
    ({"ndc": "12345"}, "102", "RXE^1^2"),
    ({"quantity": "two"}, "102", "RXE^1^3"),
    ({"dose_unit": ""}, "101", "RXE^1^5"),
    ({"unit": "ICU-٣"}, "103", "PV1^1^3"),
    ({"at": "20261118"}, "102", "ORC^1^9"),
])
def test_unmappable_content_gets_ae_with_the_field_and_nothing_is_stored(
        hub, pharmacy_tenant, change, code, location):
    ack = receive(hub, hl7_message(sender=pharmacy_tenant.sender, control_id="C-BAD", **change))

    assert ack["MSA"][1:3] == ["AE", "C-BAD"]
    assert ack["ERR"][2] == location and ack["ERR"][3].split("^")[0] == code
    assert rows(hub, PharmacyOrder, pharmacy_tenant.tenant_id) == []
    [receipt] = rows(hub, Hl7Message, pharmacy_tenant.tenant_id)
    assert (receipt.ack_code, receipt.error_code) == ("AE", code)


def test_a_corrected_resend_of_a_refused_control_id_is_stored(hub, pharmacy_tenant):
    receive(hub, hl7_message(sender=pharmacy_tenant.sender, control_id="C-FIX", ndc="1"))

    ack = receive(hub, hl7_message(sender=pharmacy_tenant.sender, control_id="C-FIX"))

    assert ack["MSA"][1] == "AA"
    assert len(rows(hub, PharmacyOrder, pharmacy_tenant.tenant_id)) == 1


def test_dispensed_totals_and_iter_dispenses_read_the_stored_dispenses(hub, pharmacy_tenant):
    for quantity, unit, at in (("3", "ICU3", "202611180915"), ("2", "ICU3", "202611180815"),
                               ("1", "MEDSURG4", "202611180815")):
        receive(hub, hl7_message("RDS^O13", sender=pharmacy_tenant.sender, quantity=quantity,
                                 unit=unit, at=at))
    session = hub.database.session

    totals = dispensed_totals(db_session=session, tenant_id=pharmacy_tenant.tenant_id,
                              unit=None, since=WINDOW[0], until=WINDOW[1])
    only_icu = list(iter_dispenses(db_session=session, tenant_id=pharmacy_tenant.tenant_id,
                                   unit="ICU-3", since=WINDOW[0], until=WINDOW[1]))

    assert totals == {("ICU-3", NDC11): {"dispenses": 2, "quantity": 5.0, "dose_unit": "mg"},
                      ("MEDSURG-4", NDC11): {"dispenses": 1, "quantity": 1.0,
                                             "dose_unit": "mg"}}
    assert [record["dose"]["quantity"] for record in only_icu] == [2.0, 3.0]
    assert only_icu[0]["patient"] == {"ref": pseudonym(hub, pharmacy_tenant.tenant_id,
                                                       "MRN7731904")}
    assert only_icu[0]["dispensed_at"] == "2026-11-18T13:15:00Z"
    assert dispensed_totals(db_session=session, tenant_id=pharmacy_tenant.tenant_id,
                            unit="ICU-3", since=WINDOW[1], until=WINDOW[1]) == {}


def test_a_second_tenant_cannot_claim_a_sender_already_claimed(hub, pharmacy_tenant):
    options = {"senders": [{"application": pharmacy_tenant.sender[0],
                            "facility": pharmacy_tenant.sender[1]}]}

    with pytest.raises(Problem) as refused:
        check_sender_claims(db_session=hub.database.session, tenant_id=uuid.uuid4(),
                            options=options)

    assert refused.value.status == 409
    assert check_sender_claims(db_session=hub.database.session,
                               tenant_id=pharmacy_tenant.tenant_id, options=options)["senders"]


def test_no_seeded_patient_data_reaches_the_stored_rows_or_the_acks(hub, pharmacy_tenant):
    acks = [receive(hub, hl7_message(kind, sender=pharmacy_tenant.sender))
            for kind in ("RDE^O11", "RDS^O13", "RAS^O17")]
    acks.append(receive(hub, hl7_message("RAS^O17", sender=pharmacy_tenant.sender, ndc="9")))
    stored = [vars(row) for model in (PharmacyOrder, PharmacyDispense, PharmacyAdministration,
                                      Hl7Message)
              for row in rows(hub, model, pharmacy_tenant.tenant_id)]

    text = repr(stored) + repr(acks)
    assert [value for value in SEEDED_PHI if value in text] == []
    assert hub.database.session.scalar(
        select(func.count()).select_from(PharmacyAdministration)
        .where(PharmacyAdministration.tenant_id == pharmacy_tenant.tenant_id)) == 1


def test_an_administration_without_a_nurse_is_stored_without_one(hub, pharmacy_tenant):
    message = hl7_message("RAS^O17", sender=pharmacy_tenant.sender).replace(
        "RN55012^Ames", "")

    ack = receive(hub, message)

    assert ack["MSA"][1] == "AA"
    [given] = rows(hub, PharmacyAdministration, pharmacy_tenant.tenant_id)
    assert given.nurse_pseudonym is None


def test_the_demo_pharmacys_messages_map(hub, pharmacy_tenant):
    """The shape System C's demo sender uses (demo_systems/pharmacy/messages.py): UTC times with
    +0000, no nurse, the unit in PV1-3, RXD-13 and RXA-11."""
    application, facility = pharmacy_tenant.sender
    head = (f"MSH|^~\\&|{application}|{facility}|MEDHUB|MEDHUB|20261118081500+0000||"
            "{type}|{control}|P|2.5")
    common = ["PID|1||MRN7731904^^^NGH^MR||Quillfeather^Ottoline||19470314", "PV1|1|I|ICU-3^^^NGH"]
    medication = "00409488802^Morphine 2 mg/mL^NDC"
    messages = [
        [head.format(type="RDE^O11^RDE_O11", control="PH1O"), *common,
         "ORC|NW|RX0000000001^DEMO-PHARMACY|||||||20261118081500+0000",
         f"RXE||{medication}|2||mg", "RXR|IV"],
        [head.format(type="RDS^O13^RDS_O13", control="PH1D"), *common,
         "ORC|RE|RX0000000001^DEMO-PHARMACY", f"RXE||{medication}|2||mg", "RXR|IV",
         f"RXD|1|{medication}|20261118090000+0000|2|mg||RX0000000001||||||ICU-3^^^NGH",
         "RXR|IV"],
        [head.format(type="RAS^O17^RAS_O17", control="PH1A"), *common,
         "ORC|RE|RX0000000001^DEMO-PHARMACY",
         f"RXA|0|1|20261118093000+0000|20261118093000+0000|{medication}|2|mg||||ICU-3^^^NGH",
         "RXR|IV"],
    ]

    acks = [receive(hub, "\r".join(segments) + "\r") for segments in messages]

    assert [ack["MSA"][1] for ack in acks] == ["AA", "AA", "AA"]
    [dispense] = rows(hub, PharmacyDispense, pharmacy_tenant.tenant_id)
    assert (dispense.order_number, dispense.unit, dispense.dispensed_at.replace(tzinfo=UTC)) == (
        "RX0000000001", "ICU-3", datetime(2026, 11, 18, 9, tzinfo=UTC))


def test_the_cli_sets_a_pharmacy_connections_senders_and_refuses_a_claimed_one(hub_app, hub):
    from tests.fixtures.cli import hub_cli

    cli = hub_cli(hub_app)
    first, second = (f"cli-rx-{uuid.uuid4().hex[:8]}" for _ in range(2))
    sender = ("CLI-PHARMACY", f"F{uuid.uuid4().hex[:6]}")
    for slug in (first, second):
        assert cli("tenants", "create", slug, "--name", "Pharmacy Hospital").exit_code == 0
        assert cli("entitlements", "grant", slug, "pharmacy").exit_code == 0

    taken = cli("connections", "set", first, "pharmacy", "--base-url", "mllp://pharmacy",
                "--credential-ref", "env:UNUSED", "--sender", *sender)
    refused = cli("connections", "set", second, "pharmacy", "--base-url", "mllp://pharmacy",
                  "--credential-ref", "env:UNUSED", "--sender", *sender)

    assert taken.exit_code == 0, taken.output
    assert refused.exit_code != 0 and "already receives" in refused.output
    ack = receive(hub, hl7_message(sender=sender))
    assert ack["MSA"][1] == "AA"


def test_refusals_of_unknown_senders_leave_no_receipt(hub):
    sender = ("NOBODY", uuid.uuid4().hex[:12])
    receive(hub, hl7_message(sender=sender))
    receive(hub, hl7_message("ORU^R01", sender=sender))

    assert hub.database.session.scalar(select(func.count()).select_from(Hl7Message).where(
        Hl7Message.sender_facility == sender[1])) == 0


def test_a_header_refusal_of_a_known_sender_is_kept_for_its_tenant(hub, pharmacy_tenant):
    ack = receive(hub, hl7_message("ORU^R01", sender=pharmacy_tenant.sender, control_id="C-ORU"))

    [receipt] = rows(hub, Hl7Message, pharmacy_tenant.tenant_id)
    assert (receipt.control_id, receipt.ack_code, receipt.error_code, receipt.message_type) == (
        "C-ORU", "AR", "200", "ORU^R01")
    assert ack["MSA"][1] == "AR"


def test_the_cli_lists_a_tenants_messages_with_their_outcome(hub_app, hub, pharmacy_tenant):
    from tests.fixtures.cli import hub_cli

    receive(hub, hl7_message(sender=pharmacy_tenant.sender, control_id="CLI-OK"))
    receive(hub, hl7_message(sender=pharmacy_tenant.sender, control_id="CLI-BAD", ndc="1"))

    everything = hub_cli(hub_app, "hl7")("messages", "--tenant", pharmacy_tenant.slug).output
    refused = hub_cli(hub_app, "hl7")("messages", "--tenant", pharmacy_tenant.slug,
                                      "--ack", "AE").output

    assert "CLI-OK" in everything and "CLI-BAD" in everything
    assert "CLI-OK" not in refused and "RDE^O11  AE 102" in refused
    assert [value for value in SEEDED_PHI if value in everything] == []


def test_a_malformed_birth_date_does_not_refuse_a_dose(hub, pharmacy_tenant):
    ack = receive(hub, hl7_message("RAS^O17", sender=pharmacy_tenant.sender).replace(
        "19470314", "19471399"))

    assert ack["MSA"][1] == "AA"
