"""The bearer check consults the client's current state (app.clients.service.client_state): a
disabled client's or tenant's tokens stop working within seconds, not at their expiry; an
unreachable state store answers 503, never 500, and a Redis outage does not break the check."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from sqlalchemy import create_engine, update

from app import create_app
from app.clients.models import Client
from app.clients.service import disable_client, forget_client_states, get_client
from app.tenants.models import Tenant
from app.tenants.service import ensure_tenant
from tests.fixtures.factories import client_row, tenant_row
from tests.fixtures.problems import assert_invalid_token, assert_problem
from tests.fixtures.processes import free_port, wait_until
from tests.fixtures.tenants import client_token

JOBS = "/v1/jobs"


@dataclass
class ProbeClient:
    """An operator client of its own tenant, made for one test (disabling it harms no other)."""

    client_id: str
    secret: str
    tenant_slug: str


@pytest.fixture
def probe(hub_app) -> ProbeClient:
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        tenant = tenant_row(session, slug="state-probe", name="State Probe Hospital")
        client, secret = client_row(session, tenant=tenant, client_id=f"{tenant.slug}-ops",
                                    scopes=["jobs:read"])
        session.commit()
        return ProbeClient(client.client_id, secret, tenant.slug)


def token_of(app, probe: ProbeClient) -> str:
    return client_token(app, probe.client_id, probe.secret)["access_token"]


def list_jobs(app, token: str):
    return app.test_client().get(JOBS, headers={"Authorization": f"Bearer {token}"})


def test_disabling_a_client_stops_its_issued_tokens_at_once(hub_app, probe):
    token = token_of(hub_app, probe)
    assert list_jobs(hub_app, token).status_code == 200

    # As `flask hub clients disable` does: the service function, then a commit.
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        disable_client(db_session=session,
                       client=get_client(db_session=session, client_id=probe.client_id))
        session.commit()

    assert_invalid_token(list_jobs(hub_app, token))


def test_a_client_disabled_by_another_process_is_refused_within_the_state_memory(
        hub_settings, migrated_database, probe):
    api_process = create_app(replace(hub_settings, hub_client_state_seconds=1))
    token = token_of(api_process, probe)
    assert list_jobs(api_process, token).status_code == 200  # now remembered as enabled

    # Another process (a CLI on another machine, SQL by hand) writes the database only: this
    # process is not told, its memory must run out.
    engine = create_engine(migrated_database)
    with engine.begin() as connection:
        connection.execute(update(Client).where(Client.client_id == probe.client_id)
                           .values(is_active=False))
    engine.dispose()

    wait_until(lambda: list_jobs(api_process, token).status_code == 401, timeout=4,
               description="the disabled client's token refused")
    assert_invalid_token(list_jobs(api_process, token))


def test_disabling_a_tenant_stops_its_clients_tokens(hub_settings, migrated_database, probe):
    api_process = create_app(replace(hub_settings, hub_client_state_seconds=1))
    token = token_of(api_process, probe)
    assert list_jobs(api_process, token).status_code == 200

    engine = create_engine(migrated_database)
    with engine.begin() as connection:
        connection.execute(update(Tenant).where(Tenant.slug == probe.tenant_slug)
                           .values(is_active=False))
    engine.dispose()

    wait_until(lambda: list_jobs(api_process, token).status_code == 401, timeout=4,
               description="the disabled tenant's token refused")


def test_a_token_whose_client_moved_to_another_tenant_is_refused(hub_app, probe):
    token = token_of(hub_app, probe)
    hub = hub_app.extensions["hub"]
    with hub_app.app_context():
        session = hub.database.session
        other = ensure_tenant(db_session=session, slug=f"{probe.tenant_slug}-b", name="Other")
        get_client(db_session=session, client_id=probe.client_id).tenant_id = other.id
        session.commit()
    forget_client_states()

    assert_invalid_token(list_jobs(hub_app, token))


def test_unreachable_client_state_is_503_problem_not_500(hub_settings, migrated_database,
                                                         hub_app, probe, tmp_path):
    token = token_of(hub_app, probe)
    no_database = create_app(replace(
        hub_settings, database_url=f"sqlite:///{tmp_path / 'missing-folder' / 'hub.db'}"))
    forget_client_states()  # nothing remembered: the state must be read

    response = list_jobs(no_database, token)

    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) > 0


def test_redis_outage_does_not_fail_token_requests_or_the_bearer_check(
        hub_settings, migrated_database, probe):
    no_redis = create_app(replace(hub_settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))

    token = token_of(no_redis, probe)  # rate limits fall back to process memory
    response = list_jobs(no_redis, token)

    assert response.status_code == 200, response.get_data(as_text=True)
