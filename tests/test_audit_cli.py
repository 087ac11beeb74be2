"""``flask hub audit flush`` and ``flask hub audit verify``."""

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app import create_app
from app.audit.chain import append_records
from app.audit.models import AuditEvent
from app.audit.records import AuditRecord
from app.audit.service import PENDING_KEY
from app.database import upgrade_schema


def test_flush_writes_the_queue_now_and_verify_reports_an_intact_chain(api, hub_app):
    hub = hub_app.extensions["hub"]
    hub.redis.delete(PENDING_KEY)
    request_id = f"cli-test-{uuid.uuid4().hex}"
    api.get("/v1/inventory", headers={"X-Request-ID": request_id})
    runner = hub_app.test_cli_runner()

    flushed = runner.invoke(args=["hub", "audit", "flush"])
    verified = runner.invoke(args=["hub", "audit", "verify"])

    assert flushed.exit_code == 0, flushed.output
    assert json.loads(flushed.output) == {"written": 1, "still_pending": 0}
    with hub_app.app_context():
        stored = hub.database.session.scalars(
            select(AuditEvent.request_id).where(AuditEvent.request_id == request_id)).all()
    assert stored == [request_id]
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.output)
    assert report["ok"] is True and report["first_broken_id"] is None
    assert report["rows_checked"] >= 1


def test_verify_exits_1_and_names_the_first_broken_row(hub_settings, tmp_path):
    # A database of its own: this test breaks the chain on purpose.
    database_url = f"sqlite:///{tmp_path / 'broken-chain.db'}"
    upgrade_schema(database_url)
    app = create_app(replace(hub_settings, database_url=database_url))
    engine = app.extensions["hub"].database.engine
    records = [AuditRecord(request_id=f"r{n}", operation="lookups.inventory_on_hand",
                           outcome="success", status_code=200, occurred_at=datetime.now(UTC))
               for n in range(3)]
    with Session(engine) as session:
        append_records(db_session=session, records=records)
        session.commit()
        first, middle, last = session.scalars(select(AuditEvent.id).order_by(AuditEvent.id))
        session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": middle})
        session.commit()

    result = app.test_cli_runner().invoke(args=["hub", "audit", "verify"])
    engine.dispose()

    assert result.exit_code == 1
    assert json.loads(result.output)["first_broken_id"] == last
