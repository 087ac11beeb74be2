"""``/v1/hl7``: System C's HL7 v2 messages over HTTP, for senders that cannot speak MLLP."""

from __future__ import annotations

import uuid

from flask import Response, request

from app.api import HubBlueprint
from app.auth.principal import current_principal, requires_scopes
from app.canonical.parameters import NoParametersSchema
from app.extensions import resources
from app.pharmacy import service

blp = HubBlueprint("hl7", __name__, url_prefix="/v1", audit_resource_type="hl7_messages",
                   description="HL7 v2 messages of the tenant's pharmacy system (System C): "
                               "orders, dispenses and administrations, acknowledged in HL7.")

_HL7_BODY = {"schema": {"type": "string", "minLength": 3, "pattern": "^MSH",
                        "example": "MSH|^~\\&|DEMO-PHARMACY|NGH|MEDHUB|MEDHUB|20261118081500+0000"
                                   "||RDE^O11^RDE_O11|PH0000000042O|P|2.5\r..."}}


@blp.post("/hl7")
@requires_scopes("hl7:write")
@blp.arguments(NoParametersSchema, location="query")
@blp.doc(requestBody={"required": True, "description": "One HL7 v2.5 message (ER7), segments "
                      "ended by CR (LF accepted), no MLLP framing.",
                      "content": {media_type: _HL7_BODY
                                  for media_type in service.HL7_MEDIA_TYPES}})
@blp.response(200, content_type=service.ACK_MEDIA_TYPE,
              description="The HL7 acknowledgement: `MSA|AA` when the message is stored (or was "
              "already), `AR`/`AE` with an ERR segment (HL7 table 0357 code and reason) when "
              "it is refused. A refusal is a 200 too: the HL7 answer is the ACK.")
@blp.alt_response(400, description="The body is not an HL7 v2 message (no MSH segment).")
@blp.alt_response(415, description="The body is not `application/hl7-v2`, "
                  "`x-application/hl7-v2+er7` or `text/plain`.")
@blp.alt_response(403, description="Scope hl7:write missing.")
def receive_hl7(_query: dict):
    """Send one HL7 v2 message (RDE^O11, RDS^O13, RAS^O17) and receive its ACK."""
    hub = resources()
    ack = service.receive_http_message(
        db_session=hub.database.session, settings=hub.settings, media_type=request.mimetype,
        body=request.get_data(), tenant_id=uuid.UUID(current_principal().tenant_id))
    return Response(ack, status=200, content_type=service.ACK_MEDIA_TYPE)
