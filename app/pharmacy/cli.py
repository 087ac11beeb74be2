"""``flask --app wsgi hub hl7 …``: what the pharmacy's HL7 v2 senders sent, and how the hub
answered."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.extensions import resources
from app.tenants.cli import tenant_by_slug

hl7_cli = AppGroup("hl7", help="HL7 v2 messages of the pharmacy (System C).")


@hl7_cli.command("messages")
@click.option("--tenant", "tenant_slug", help="Only this tenant's messages.")
@click.option("--ack", "ack_code", type=click.Choice(["AA", "AE", "AR"]),
              help="Only messages answered with this ACK code.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
def list_messages(tenant_slug: str | None, ack_code: str | None, limit: int) -> None:
    """The latest messages received: when, sender, control id, type, ACK code, error code and
    resends. Refusals of senders no tenant names are not kept (see the logs and metrics)."""
    from app.pharmacy.service import list_receipts

    tenant_id = tenant_by_slug(tenant_slug).id if tenant_slug else None
    receipts = list_receipts(db_session=resources().database.session, tenant_id=tenant_id,
                             ack_code=ack_code, limit=limit)
    for receipt in receipts:
        click.echo(f"{receipt.received_at:%Y-%m-%d %H:%M:%S}  {receipt.transport:4}  "
                   f"{receipt.sender_application}/{receipt.sender_facility}  "
                   f"{receipt.control_id}  {receipt.message_type}  {receipt.ack_code}"
                   f"{' ' + receipt.error_code if receipt.error_code else ''}"
                   f"{f'  resent {receipt.repeats}x' if receipt.repeats else ''}")
    if not receipts:
        click.echo("no messages")
