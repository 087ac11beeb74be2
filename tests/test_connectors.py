"""Connectors: native records to canonical, invalid records skipped and counted without values."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pybreaker
import pytest

from app.canonical.schemas import AdministrationSchema, ContainerSchema
from app.connectors import administration, inventory
from app.connectors.base import ConnectionTarget, map_records, resource_url
from app.connectors.registry import default_connector
from app.connectors.resilience import CallPolicy
from app.observability import metrics


def target(unit_codes=None, timezone="America/New_York") -> ConnectionTarget:
    return ConnectionTarget(tenant="north-general", product="administration",
                            connector=administration.CONNECTOR, base_url="http://unused",
                            credential="unused", timezone=timezone,
                            options={"unit_codes": unit_codes or {}}, breaker=None, policy=None)


def native_administration(**overrides) -> dict:
    record = {
        "admin_id": "NGH-A000000001", "ward": "ICU3",
        "patient": {"full_name": "Jane Canary", "mrn": "MRN00012345", "birth_date": "1950-02-03"},
        "med": {"ndc11": "00409488802", "description": "Morphine sulfate"},
        "dose": {"qty": 2, "uom": "mg"}, "route": "IV", "given_at": "2026-11-18T13:15:00Z",
        "nurse_id": "RN12345", "note": "Jane Canary tolerated the dose well.",
        "container_barcode": "NGH000001",
    }
    record.update(overrides)
    return record


def native_container(**overrides) -> dict:
    record = {"containerId": "NGH-C00000001", "barcode": "NGH000001",
              "drug": {"ndc": "0409-4888-02", "name": "Morphine sulfate", "strength": "2 mg/mL"},
              "lotNumber": "L1", "expiresOn": "2027-06-30",
              "location": {"facility": "NGH", "unit": "ICU-3", "cabinet": "ICU-3-CAB1"},
              "status": "stocked"}
    record.update(overrides)
    return record


def _skipped(resource: str) -> float:
    return metrics.INVALID_RECORDS.labels(system="test", resource=resource)._value.get()


def test_native_administration_becomes_canonical():
    [record] = map_records([native_administration()],
                           lambda item: administration._administration(target(), item),
                           AdministrationSchema(), system="test", resource="administration")

    assert record["unit"] == "ICU-3"
    assert record["administered_at"] == "2026-11-18T13:15:00Z"
    assert record["patient"] == {"mrn": "MRN00012345", "name": "Jane Canary",
                                 "birth_date": "1950-02-03"}


def test_native_container_becomes_canonical_with_ndc11():
    [record] = map_records([native_container()],
                           lambda item: inventory._container(target(), item),
                           ContainerSchema(), system="test", resource="container")

    assert record["medication"]["ndc11"] == "00409488802"
    assert record["location"]["unit"] == "ICU-3"


@pytest.mark.parametrize("broken", [
    {"med": {"ndc11": "not-an-ndc", "description": "x"}},
    {"given_at": "yesterday"},
    {"ward": "ICU#3"},
    {"patient": {"full_name": "Jane Canary"}},
])
def test_invalid_records_are_skipped_counted_and_logged_without_values(broken, caplog):
    before = _skipped("administration")
    caplog.set_level(logging.WARNING)

    records = map_records([native_administration(**broken), native_administration()],
                          lambda item: administration._administration(target(), item),
                          AdministrationSchema(), system="test", resource="administration")

    assert len(records) == 1
    assert _skipped("administration") == before + 1
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "skipped invalid administration record" in logged
    assert "Jane Canary" not in logged and "MRN00012345" not in logged


def test_unit_code_maps_translate_both_ways():
    mapped = target(unit_codes={"4WEST": "MEDSURG-4"})

    assert administration._native_ward(mapped, "MEDSURG-4") == "4WEST"
    assert administration._native_ward(mapped, "ICU-3") == "ICU3"
    assert administration._administration(mapped, native_administration(ward="4WEST"))[
        "unit"] == "MEDSURG-4"


@pytest.mark.parametrize("ndc11, spellings", [
    ("00409488802", ["0409-4888-02", "00409-4888-2"]),
    ("12345067890", ["12345-678-90"]),
    ("12345678910", []),  # no padding zero anywhere: not an NDC-10 this system can hold
])
def test_inventory_asks_for_every_ndc10_spelling_an_ndc11_may_have(ndc11, spellings):
    assert inventory.ndc10_candidates(ndc11) == spellings


def test_an_odd_container_id_is_one_percent_encoded_path_segment():
    url = resource_url("http://inventory.test/api/v2/sites/north-general/", "containers",
                       "NGH-C1#x?unit=ICU-3/../NGH-C2%", "movements")

    assert url == ("http://inventory.test/api/v2/sites/north-general/containers/"
                   "NGH-C1%23x%3Funit%3DICU-3%2F..%2FNGH-C2%25/movements")


@pytest.mark.parametrize("segment", ["", ".", ".."])
def test_a_path_segment_that_would_move_up_or_vanish_is_refused(segment):
    with pytest.raises(ValueError):
        resource_url("http://inventory.test/api", "containers", segment)


# --- change feeds ----------------------------------------------------------------------------

class _FeedPage(BaseHTTPRequestHandler):
    """Answers every GET with the server's ``page`` as JSON."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps(self.server.page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


@pytest.fixture
def feed_server():
    """A local HTTP server answering with whatever page a test sets (a system's native answer,
    malformed on purpose where the real demo systems never are)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FeedPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def feed_target(server, product: str) -> ConnectionTarget:
    return ConnectionTarget(tenant="north-general", product=product,
                            connector=default_connector(product),
                            base_url=f"http://127.0.0.1:{server.server_port}", credential="k",
                            timezone="America/New_York", options={},
                            breaker=pybreaker.CircuitBreaker(name=f"test-{product}"),
                            policy=CallPolicy(connect_timeout=2, read_timeout=2, attempts=1,
                                              breaker_failures=5, breaker_reset_seconds=1))


def test_an_unmappable_administration_in_the_feed_is_skipped_and_the_watermark_moves_past_it(
        feed_server):
    feed_server.page = {"head_sequence": 9, "data": [
        {**native_administration(), "sequence": 7, "recorded_at": "2026-12-02T10:00:00Z"},
        {**native_administration(admin_id="NGH-A000000002", given_at="yesterday"),
         "sequence": 8, "recorded_at": "2026-12-02T10:00:01Z"}]}

    page = administration.administrations_changed_since(
        feed_target(feed_server, "administration"), "6", 100)

    assert [record["administration_id"] for record in page.records] == ["NGH-A000000001"]
    assert (page.watermark, page.skipped, page.more) == ("8", 1, True)


def test_a_movement_in_the_feed_becomes_the_container_with_its_movement(feed_server):
    feed_server.page = {"headSequence": 3, "limit": 100, "items": [{
        "movementId": "NGH-C00000001-S", "containerId": "NGH-C00000001", "barcode": "NGH000001",
        "type": "stock", "at": "2026-12-02T05:00:00-05:00", "from": {"unit": "PHARMACY",
                                                                    "cabinet": None},
        "to": {"unit": "ICU-3", "cabinet": "ICU-3-CAB1"}, "container": native_container(),
        "sequence": 3, "recordedAt": "2026-12-02T05:00:00-05:00"}]}

    page = inventory.movements_changed_since(feed_target(feed_server, "inventory"), "2", 100)

    [record] = page.records
    assert record["container_id"] == "NGH-C00000001"
    assert record["movement"] == {"movement_id": "NGH-C00000001-S", "type": "stocked",
                                  "from_location": "PHARMACY", "to_location": "ICU-3-CAB1",
                                  "at": "2026-12-02T10:00:00Z"}
    assert (page.watermark, page.skipped, page.more) == ("3", 0, False)


def test_an_empty_feed_page_keeps_the_watermark(feed_server):
    feed_server.page = {"headSequence": 5, "limit": 100, "items": []}

    page = inventory.movements_changed_since(feed_target(feed_server, "inventory"), "5", 100)

    assert (page.records, page.watermark, page.more) == ([], "5", False)
