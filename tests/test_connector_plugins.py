"""A separately installed package adds a system to the hub with no hub code changed.

The example package (tests/plugins/example_emar) is built and installed with pip into a
temporary folder, exactly as an integration team would install a vendor's connector; the hub
finds it through its ``medication_hub.connectors`` entry point. The Example eMAR it talks to is
another vendor's system the project does not own: this module runs a small stand-in of it over
real HTTP (its native shape is the plug-in's business, not the hub's).
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import threading
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from standardwebhooks import Webhook
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.connectors.registry import (
    ENTRY_POINT_GROUP,
    InvalidConnectionOptions,
    discover,
    forget_registered,
    registered,
)
from app.entitlements.service import forget_entitlements, grant_entitlement
from app.tenants.service import (
    ensure_connection,
    get_active_connection,
    get_product,
    get_tenant_by_slug,
)
from tests.fixtures.cli import hub_cli
from tests.fixtures.factories import client_row, tenant_row
from tests.fixtures.phi import leaks_in
from tests.fixtures.problems import assert_problem
from tests.fixtures.processes import wait_until
from tests.fixtures.tenants import client_token
from tests.fixtures.webhooks import EventTenant, subscribe

pytestmark = pytest.mark.usefixtures("clean_lookup_state")

PLUGIN_SOURCE = Path(__file__).parent / "plugins" / "example_emar"
EXAMPLE_KEY = "example-emar-key-4711"
# Synthetic patients of the Example eMAR: they must never leave the hub unminimized.
PATIENT_NAME = "Plugin Canaryfield"
PATIENT_MRN = "EXMRN-90210"
PATIENT_DOB = "1961-07-14"


class ExampleEmar:
    """A stand-in of the Example eMAR over real HTTP: two wards, three administrations."""

    records = [
        {"recordId": f"EX-{number}", "wardName": ward, "drugNdc": "0409-4888-02",
         "drugName": "Morphine sulfate", "amount": 2, "amountUnit": "mg", "routeCode": "IV",
         "givenLocal": f"2026-11-18T0{number}:15:00", "packageBarcode": f"PKG{number}",
         "staffId": "RN777", "patientMrn": PATIENT_MRN, "patientName": PATIENT_NAME,
         "patientDob": PATIENT_DOB, "comment": f"{PATIENT_NAME} slept after the dose."}
        for number, ward in ((1, "4 WEST"), (2, "4 WEST"), (3, "ICU 3"))]

    def __init__(self):
        self.calls: list[str] = []
        # The system's change feed: (sequence, record) of every dose charted while it runs.
        self.charted: list[tuple[int, dict]] = []
        self._server = make_server("127.0.0.1", 0, self._answer, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/api"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @Request.application
    def _answer(self, request: Request) -> Response:
        self.calls.append(request.path)
        if request.headers.get("Authorization") != f"Bearer {EXAMPLE_KEY}" \
                or request.args.get("site") != "EX-NORTH":
            return Response("{}", status=401, content_type="application/json")
        if request.path == "/api/wards":
            body = {"wards": ["4 WEST", "ICU 3"]}
        elif request.path == "/api/changes":
            after, size = int(request.args["after"]), int(request.args["size"])
            entries = [{"seq": seq, "record": record} for seq, record in self.charted
                       if seq > after][:size]
            body = {"entries": entries, "head": len(self.charted)}
        elif request.path == "/api/records":
            ward = request.args.get("ward")
            body = {"records": [r for r in self.records if ward in (None, r["wardName"])],
                    "nextPage": None}
        else:
            return Response("{}", status=404, content_type="application/json")
        return Response(json.dumps(body), content_type="application/json")

    def chart(self, record: dict) -> None:
        """Chart a new dose: it joins the change feed."""
        self.charted.append((len(self.charted) + 1, record))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_exc):
        self._server.shutdown()


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """The example package, built and installed by pip into a folder on ``sys.path``."""
    build = tmp_path_factory.mktemp("plugin-source") / "example_emar"
    shutil.copytree(PLUGIN_SOURCE, build)  # pip builds in place: keep the repository clean
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(build)],
                   check=True, timeout=300)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    forget_registered()
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("example_emar_connector", None)
    importlib.invalidate_caches()
    forget_registered()


@pytest.fixture(scope="module")
def example_emar():
    with ExampleEmar() as system:
        yield system


@pytest.fixture
def plugin_tenant(hub_app, installed_plugin, example_emar, monkeypatch):
    """A tenant whose eMAR is the Example eMAR; returns its slug and a System A client's
    headers (System A reads administrations)."""
    monkeypatch.setenv("EXAMPLE_EMAR_KEY", EXAMPLE_KEY)
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        tenant = tenant_row(session, slug="plugin")
        product = get_product(db_session=session, code="administration")
        ensure_connection(db_session=session, tenant=tenant, product=product,
                          base_url=example_emar.base_url, credential_ref="env:EXAMPLE_EMAR_KEY",
                          timezone="America/New_York", connector="example-emar",
                          options={"site_code": "EX-NORTH",
                                   "unit_codes": {"4 WEST": "MEDSURG-4"}})
        grant_entitlement(db_session=session, tenant=tenant, product=product)
        client, secret = client_row(session, tenant=tenant, scopes=["administrations:read"],
                                    product=get_product(db_session=session, code="inventory"))
        slug, client_id = tenant.slug, client.client_id
        session.commit()
    forget_entitlements()
    token = client_token(hub_app, client_id, secret)["access_token"]
    return slug, {"Authorization": f"Bearer {token}"}


def test_installed_package_is_a_registered_connector_with_its_distribution(installed_plugin):
    connector = registered()["example-emar"]

    assert connector.product == "administration"
    assert connector.source == "example_emar_connector 1.0.0"
    assert connector.offers("administrations_page") and not connector.offers("container_origin")
    assert {"inventory-rest", "emar-rest"} <= set(registered())


def test_operator_sees_the_plugin_in_the_connector_list(hub_app, installed_plugin):
    result = hub_cli(hub_app, "connectors")("list")

    assert result.exit_code == 0, result.output
    assert "example-emar" in result.output
    assert "example_emar_connector 1.0.0" in result.output


def test_lookup_flows_through_the_plugin_canonical_and_minimized(api, plugin_tenant,
                                                                  example_emar):
    _slug, headers = plugin_tenant
    calls_before = len(example_emar.calls)

    response = api.get("/v1/administrations?unit=MEDSURG-4&page_size=10", headers=headers)

    assert response.status_code == 200, response.get_data(as_text=True)
    items = response.json["items"]
    assert [item["administration_id"] for item in items] == ["EX-1", "EX-2"]
    first = items[0]
    assert first["unit"] == "MEDSURG-4"
    assert first["medication"]["ndc11"] == "00409488802"
    assert first["administered_at"] == "2026-11-18T06:15:00Z"  # 01:15 in New York
    assert first["patient"]["ref"].startswith("pt_")
    assert "note" not in first
    assert leaks_in(response.get_data(as_text=True),
                    {PATIENT_NAME, PATIENT_MRN, PATIENT_DOB}) == []
    assert example_emar.calls[calls_before:] == ["/api/records"]


def test_an_event_flows_through_the_plugin_to_a_subscriber_minimized(
        api, hub_app, plugin_tenant, example_emar, webhook_receiver, celery_worker):
    slug, _headers = plugin_tenant
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        tenant = get_tenant_by_slug(db_session=hub.database.session, slug=slug)
        tenant_id = tenant.id
    _client, events_headers = EventTenant(hub_app, tenant_id, slug).client(
        scopes=("events:subscribe", "administrations:read"), product="inventory")
    subscription = subscribe(api, events_headers, webhook_receiver.url)
    first_run = _read_changes(hub_app, slug)  # starts the feed at "now": nothing old is sent
    example_emar.chart({**ExampleEmar.records[0], "recordId": "EX-NEW-1"})

    second_run = _read_changes(hub_app, slug)

    assert (first_run["feed_started"], second_run["events_published"]) == (True, 1)
    wait_until(lambda: webhook_receiver.count() == 1, timeout=60, description="the delivery")
    (received,) = webhook_receiver.received()
    payload = Webhook(subscription["secret"]).verify(received.body, received.headers)
    resource = payload["data"]["resource"]
    assert payload["type"] == "administration.recorded"
    assert (resource["administration_id"], resource["unit"]) == ("EX-NEW-1", "MEDSURG-4")
    assert resource["patient"]["ref"].startswith("pt_")
    assert leaks_in(received.body.decode(), {PATIENT_NAME, PATIENT_MRN, PATIENT_DOB}) == []


def _read_changes(hub_app, slug: str) -> dict:
    """One run of the tenant's administration change sync, as beat would start it."""
    from app.syncs.kinds import SYNC_KINDS

    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        return SYNC_KINDS["administration_changes"].run(
            db_session=session, redis_client=hub.redis, settings=hub.settings,
            tenant=get_tenant_by_slug(db_session=session, slug=slug))


def test_connection_options_are_checked_against_the_plugins_schema(hub_app, installed_plugin):
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        tenant = tenant_row(session, slug="plugin-bad")
        product = get_product(db_session=session, code="administration")
        with pytest.raises(InvalidConnectionOptions) as refused:
            ensure_connection(db_session=session, tenant=tenant, product=product,
                              base_url="http://example.invalid", credential_ref="env:X",
                              connector="example-emar", options={"site": "typo"})
        stored = get_active_connection(db_session=session, tenant_id=tenant.id,
                                       product="administration")
        session.rollback()

    assert set(refused.value.messages) == {"site", "site_code"}
    assert stored is None


def test_connection_naming_a_connector_no_longer_installed_is_not_connected(
        api, plugin_tenant, installed_plugin):
    _slug, headers = plugin_tenant
    forget_registered()
    sys.path.remove(str(installed_plugin))
    importlib.invalidate_caches()
    try:
        response = api.get("/v1/administrations?unit=ICU-3&page_size=7", headers=headers)
    finally:
        sys.path.insert(0, str(installed_plugin))
        importlib.invalidate_caches()
        forget_registered()

    assert_problem(response, 503, "not-connected")


def test_a_plugin_that_fails_to_load_leaves_the_other_systems_served(caplog):
    broken = EntryPoint("broken-emar", "no_such_connector_package:CONNECTOR", ENTRY_POINT_GROUP)

    connectors = discover(extra=[broken])

    assert "broken-emar" not in connectors
    assert {"inventory-rest", "emar-rest"} <= set(connectors)
    assert "connector plug-in broken-emar failed to load: ModuleNotFoundError" in caplog.text


def test_a_plugin_cannot_take_a_built_in_connectors_name(installed_plugin, caplog):
    impostor = EntryPoint("emar-rest", "example_emar_connector:CONNECTOR", ENTRY_POINT_GROUP)

    connectors = discover(extra=[impostor])

    assert connectors["emar-rest"].source == "hub"
    assert "connector plug-in emar-rest refused: the name is taken" in caplog.text
