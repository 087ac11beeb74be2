"""``POST /v1/hl7``: the same messages as MLLP, over HTTP, authorised like every other call."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.pharmacy.models import PharmacyOrder
from tests.fixtures.factories import client_row
from tests.fixtures.hl7 import SEEDED_PHI, ack_segments, hl7_message, onboard_pharmacy_tenant

HL7 = "application/hl7-v2"


def pharmacy_client(hub_app, tenant, scopes=("hl7:write",)) -> dict:
    from app.tenants.models import Tenant
    from tests.fixtures.tenants import client_token

    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        client, secret = client_row(session, tenant=session.get(Tenant, tenant.tenant_id),
                                    scopes=list(scopes))
        client_id = client.client_id
        session.commit()
    token = client_token(hub_app, client_id, secret)["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def sender(hub_app, pharmacy_tenant):
    return pharmacy_tenant, pharmacy_client(hub_app, pharmacy_tenant)


def stored_orders(hub_app, tenant) -> int:
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        return len(list(hub.database.session.scalars(
            select(PharmacyOrder).where(PharmacyOrder.tenant_id == tenant.tenant_id))))


@pytest.mark.parametrize("media_type", [HL7, "x-application/hl7-v2+er7", "text/plain"])
def test_a_message_is_stored_and_answered_with_its_ack(api, hub_app, sender, media_type):
    tenant, headers = sender

    response = api.post("/v1/hl7", data=hl7_message(sender=tenant.sender, control_id="HTTP-1"),
                        headers={**headers, "Content-Type": media_type})

    assert response.status_code == 200
    assert response.mimetype == HL7
    ack = ack_segments(response.data)
    assert ack["MSA"][1:3] == ["AA", "HTTP-1"]
    assert ack["MSH"][5:7] == list(tenant.sender)
    assert stored_orders(hub_app, tenant) == 1


def test_a_refused_message_is_a_200_with_an_ar_ack(api, sender):
    tenant, headers = sender

    response = api.post("/v1/hl7", data=hl7_message("ORU^R01", sender=tenant.sender),
                        headers={**headers, "Content-Type": HL7})

    assert response.status_code == 200
    assert ack_segments(response.data)["ERR"][3].startswith("200^")


def test_no_token_is_401(api, pharmacy_tenant):
    response = api.post("/v1/hl7", data=hl7_message(sender=pharmacy_tenant.sender),
                        headers={"Content-Type": HL7})

    assert response.status_code == 401


def test_a_token_without_hl7_write_is_403(api, hub_app, pharmacy_tenant):
    headers = pharmacy_client(hub_app, pharmacy_tenant, scopes=("jobs:read",))

    response = api.post("/v1/hl7", data=hl7_message(sender=pharmacy_tenant.sender),
                        headers={**headers, "Content-Type": HL7})

    assert response.status_code == 403
    assert stored_orders(hub_app, pharmacy_tenant) == 0


def test_another_tenants_sender_is_rejected_ar_and_not_stored(api, hub_app, sender):
    _tenant, headers = sender
    other = onboard_pharmacy_tenant(hub_app)

    response = api.post("/v1/hl7", data=hl7_message(sender=other.sender),
                        headers={**headers, "Content-Type": HL7})

    ack = ack_segments(response.data)
    assert response.status_code == 200 and ack["MSA"][1] == "AR"
    assert ack["ERR"][3].startswith("204^")
    assert stored_orders(hub_app, other) == 0


def test_a_body_that_is_not_hl7_is_a_400_problem(api, sender):
    _tenant, headers = sender

    response = api.post("/v1/hl7", data="hello", headers={**headers, "Content-Type": HL7})

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("/not-hl7")


def test_json_is_a_415_problem(api, sender):
    _tenant, headers = sender

    response = api.post("/v1/hl7", json={"msh": "x"}, headers=headers)

    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"


def test_a_body_over_the_edge_limit_is_413(api, hub_app, sender):
    tenant, headers = sender
    limit = hub_app.extensions["hub"].settings.hub_max_body_bytes
    message = hl7_message(sender=tenant.sender, extra=("NTE|1||" + "x" * limit,))

    response = api.post("/v1/hl7", data=message, headers={**headers, "Content-Type": HL7})

    assert response.status_code == 413


def test_query_parameters_are_refused(api, sender):
    tenant, headers = sender

    response = api.post("/v1/hl7?debug=1", data=hl7_message(sender=tenant.sender),
                        headers={**headers, "Content-Type": HL7})

    assert response.status_code == 422


def test_no_seeded_patient_data_in_the_answers(api, sender):
    tenant, headers = sender
    answers = [api.post("/v1/hl7", data=hl7_message(kind, sender=tenant.sender, **change),
                        headers={**headers, "Content-Type": HL7}).get_data(as_text=True)
               for kind, change in (("RAS^O17", {}), ("RAS^O17", {"ndc": "1"}),
                                    ("RDE^O11", {"version": "2.3"}))]

    assert [value for value in SEEDED_PHI if value in "".join(answers)] == []


def test_a_refused_message_naming_another_tenants_sender_leaves_no_receipt(api, hub_app, sender):
    from app.pharmacy.models import Hl7Message

    _tenant, headers = sender
    other = onboard_pharmacy_tenant(hub_app)

    api.post("/v1/hl7", data=hl7_message("ORU^R01", sender=other.sender),
             headers={**headers, "Content-Type": HL7})

    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        assert list(hub.database.session.scalars(
            select(Hl7Message).where(Hl7Message.tenant_id == other.tenant_id))) == []
