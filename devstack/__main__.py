"""The one-command local stack (``make run``).

``python -m devstack run``      prepare data, then run every Procfile process under supervisord
``python -m devstack redis``    the embedded Redis (a Procfile process)
``python -m devstack announce`` wait for the stack, print URLs, where the secrets are, and a
                                curl example (secrets themselves never reach the log)
``python -m devstack onboard``  onboard the demo sites as hub tenants (``run`` does this too)
``python -m devstack ctl …``    supervisorctl on the running stack (``ctl status``,
                                ``ctl restart worker_io``)

The stack is a Procfile run under supervisord (devstack/supervision.py), which restarts a
process that dies; this module only prepares what the processes need (migrated database, seeded
demo systems, onboarded demo tenants, exported settings) and reports when everything answers.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from app.settings import PROJECT_ROOT, Settings, load_settings
from devstack.supervision import config_path, write_config

READY_TIMEOUT_SECONDS = 180


def _say(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def demo_data_dir(settings: Settings) -> Path:
    """Folder of the demo systems' databases and manifest."""
    return settings.hub_data_dir / "demo"


def demo_keys_dir(settings: Settings) -> Path:
    """Folder of the demo systems' per-site API keys (read by the hub's connections)."""
    return settings.hub_secrets_dir / "demo"


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _check_ports(settings: Settings) -> None:
    ports = {
        "HUB_API_PORT": settings.hub_api_port,
        "HUB_FLOWER_PORT": settings.hub_flower_port,
        "HUB_MLLP_PORT": settings.hub_mllp_port,
        "DEMO_INVENTORY_PORT": settings.demo_inventory_port,
        "DEMO_ADMINISTRATION_PORT": settings.demo_administration_port,
        "DEMO_SUBSCRIBER_PORT": settings.demo_subscriber_port,
    }
    if settings.redis_is_embedded:
        ports["HUB_EMBEDDED_REDIS_PORT"] = settings.hub_embedded_redis_port
    busy = [f"{name}={port}" for name, port in ports.items() if _port_in_use(port)]
    if busy:
        raise SystemExit(f"[devstack] ports already in use: {', '.join(busy)}. Stop what holds "
                         "them (another `make run`?) or choose other ports with these variables.")


def _seed_demo_systems(settings: Settings) -> Path:
    data_dir = demo_data_dir(settings)
    manifest = data_dir / "manifest.json"
    wanted = {"seed": settings.demo_seed, "administrations": settings.demo_administrations}
    if manifest.exists():
        current = json.loads(manifest.read_text(encoding="utf-8"))
        if all(current.get(key) == value for key, value in wanted.items()):
            _say(f"demo systems already seeded (seed {settings.demo_seed}, "
                 f"{settings.demo_administrations} administrations)")
            return manifest
    _say("seeding the demo hospital systems")
    subprocess.run([sys.executable, "-m", "demo_systems", "seed", "--data-dir", str(data_dir),
                    "--seed", str(settings.demo_seed),
                    "--administrations", str(settings.demo_administrations),
                    "--keys-out", str(demo_keys_dir(settings))], check=True, cwd=PROJECT_ROOT)
    return manifest


def _onboard_demo_tenants(settings: Settings, manifest: Path,
                          system_urls: dict[str, str] | None = None) -> None:
    from app.database import Database
    from devstack.demo_tenants import configure_demo_parallel_runs, onboard_demo_sites

    database = Database(settings.database_url)
    urls = system_urls or _system_urls(settings)
    try:
        credentials = onboard_demo_sites(
            db_session=database.session, manifest_path=manifest, system_urls=urls,
            secrets_dir=settings.hub_secrets_dir)
        configure_demo_parallel_runs(db_session=database.session, manifest_path=manifest,
                                     inventory_url=urls["inventory"],
                                     secrets_dir=settings.hub_secrets_dir)
    finally:
        database.remove_session()
        database.engine.dispose()
    _restrict_secrets(settings)
    _say(f"onboarded {len({c.tenant for c in credentials})} demo tenants; their client "
         f"secrets are in {demo_clients_path(settings)}")


def subscriber_url(settings: Settings) -> str:
    """Where the demo webhook subscriber listens."""
    return f"http://127.0.0.1:{settings.demo_subscriber_port}"


def subscriber_secrets_path(settings: Settings) -> Path:
    """The demo subscriber's signing secrets (``{tenant: whsec_…}``, mode 0600)."""
    from devstack.demo_tenants import SUBSCRIBER_SECRETS_FILE

    return settings.hub_secrets_dir / SUBSCRIBER_SECRETS_FILE


# The demo subscriber is plain http on loopback: allowed for the local stack only, and only
# when the operator has not configured these settings themselves. Production leaves them unset
# (https only, no private or loopback destinations).
DEMO_WEBHOOK_SETTINGS = {"HUB_WEBHOOK_ALLOW_HTTP": "true",
                         "HUB_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}


def _subscribe_demo_tenants(settings: Settings, manifest: Path) -> None:
    from app.database import Database
    from app.problems import Problem
    from devstack.demo_tenants import subscribe_demo_tenants

    database = Database(settings.database_url)
    try:
        tenants = subscribe_demo_tenants(
            db_session=database.session, settings=settings, manifest_path=manifest,
            subscriber_url=subscriber_url(settings), secrets_dir=settings.hub_secrets_dir)
    except Problem as refused:
        # The operator's own webhook settings refuse the demo subscriber's URL: the stack
        # runs without the demo subscriptions rather than not at all.
        _say(f"demo tenants not subscribed to the demo subscriber: {refused.detail} "
             f"{refused.errors or ''} (see HUB_WEBHOOK_ALLOW_HTTP, "
             "HUB_WEBHOOK_ALLOWED_NETWORKS)")
        return
    finally:
        database.remove_session()
        database.engine.dispose()
    _restrict_secrets(settings)
    _say(f"subscribed {len(tenants)} demo tenants' events to the demo subscriber")


def _system_urls(settings: Settings) -> dict[str, str]:
    return {"inventory": f"http://127.0.0.1:{settings.demo_inventory_port}",
            "administration": f"http://127.0.0.1:{settings.demo_administration_port}"}


def _process_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    # Every process must agree on the resolved values, including generated secrets.
    env.update({
        "HUB_DATA_DIR": str(settings.hub_data_dir),
        "HUB_SECRETS_DIR": str(settings.hub_secrets_dir),
        "DATABASE_URL": settings.database_url,
        "CELERY_BROKER_URL": settings.celery_broker_url,
        "CELERY_RESULT_BACKEND": settings.celery_result_backend,
        "HUB_API_PORT": str(settings.hub_api_port),
        "HUB_FLOWER_PORT": str(settings.hub_flower_port),
        "HUB_MLLP_HOST": settings.hub_mllp_host,
        "HUB_MLLP_PORT": str(settings.hub_mllp_port),
        "HUB_WORKER_IO_CONCURRENCY": str(settings.hub_worker_io_concurrency),
        "HUB_WORKER_COMPUTE_CONCURRENCY": str(settings.hub_worker_compute_concurrency),
        "DEMO_INVENTORY_PORT": str(settings.demo_inventory_port),
        "DEMO_ADMINISTRATION_PORT": str(settings.demo_administration_port),
        "DEMO_SUBSCRIBER_PORT": str(settings.demo_subscriber_port),
        "DEMO_SUBSCRIBER_SECRETS": str(subscriber_secrets_path(settings)),
        "HUB_WEBHOOK_ALLOW_HTTP": "true" if settings.hub_webhook_allow_http else "false",
        "HUB_WEBHOOK_ALLOWED_NETWORKS": settings.hub_webhook_allowed_networks,
        "DEMO_DATA_DIR": str(demo_data_dir(settings)),
        "DEMO_ACCESS_LOG": "1" if settings.demo_access_log else "0",
        "DEMO_LIVE_RECORDS_PER_MINUTE": str(settings.demo_live_records_per_minute),
        # Flower reads its basic auth from this variable (the value may come from a file).
        "FLOWER_BASIC_AUTH": settings.flower_basic_auth,
    })
    if not settings.redis_is_embedded:
        env["REDIS_URL"] = settings.redis_url
    # Every API worker writes its metrics here (the Procfile hands it to the API only, as
    # PROMETHEUS_MULTIPROC_DIR); /metrics aggregates them.
    metrics_dir = settings.hub_data_dir / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["HUB_API_METRICS_DIR"] = str(metrics_dir)
    return env


def run() -> None:
    """Prepare the data and start every process of the stack; Ctrl-C stops them all."""
    started = time.monotonic()
    for name, value in DEMO_WEBHOOK_SETTINGS.items():
        os.environ.setdefault(name, value)
    settings = load_settings()
    settings.hub_data_dir.mkdir(parents=True, exist_ok=True)
    _check_ports(settings)

    from app.database import upgrade_schema

    upgrade_schema(settings.database_url)
    _say("database migrated")
    manifest = _seed_demo_systems(settings)
    _onboard_demo_tenants(settings, manifest)
    _subscribe_demo_tenants(settings, manifest)

    processes = ["inventory", "administration", "pharmacy", "subscriber", "api", "hl7",
                 "worker_io",
                 "worker_compute", "beat", "flower", "ready"]
    if settings.redis_is_embedded:
        processes.insert(0, "redis")
    env = _process_environment(settings)
    env["DEVSTACK_STARTED_AT"] = str(time.time() - (time.monotonic() - started))
    config = write_config(procfile_path=PROJECT_ROOT / "Procfile", processes=processes,
                          data_dir=settings.hub_data_dir, working_dir=PROJECT_ROOT,
                          python=sys.executable)
    supervisord = shutil.which("supervisord", path=env["PATH"])
    if supervisord is None:
        raise SystemExit("[devstack] supervisord not found: install the requirements "
                         "(make run does: pip install -r requirements.txt)")
    _say("starting " + ", ".join(processes) + " under supervisord; a process that dies is "
         "restarted (python -m devstack ctl status shows each one's state)")
    os.chdir(PROJECT_ROOT)
    # supervisord takes this process's place: Ctrl-C (SIGINT) or SIGTERM reaches it and it
    # stops the processes tier by tier (devstack/supervision.py).
    os.execvpe(supervisord, [supervisord, "--configuration", str(config)], env)


def ctl(arguments: list[str]) -> None:
    """Run supervisorctl against the running stack (default: ``status``)."""
    settings = load_settings()
    supervisorctl = shutil.which("supervisorctl",
                                 path=str(Path(sys.executable).parent) + os.pathsep
                                 + os.environ.get("PATH", ""))
    os.execv(supervisorctl, [supervisorctl, "--configuration",
                             str(config_path(settings.hub_data_dir)), *(arguments or ["status"])])


def onboard(manifest: Path | None, inventory_url: str | None,
            administration_url: str | None) -> None:
    """Onboard the demo sites of a manifest as tenants with connections, entitlements and
    clients (default: the stack's own manifest and demo system ports)."""
    settings = load_settings()
    urls = _system_urls(settings)
    urls.update({name: url for name, url in (("inventory", inventory_url),
                                              ("administration", administration_url)) if url})
    manifest = manifest or demo_data_dir(settings) / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(f"[devstack] no manifest at {manifest}: seed the demo systems first "
                         "(`python -m demo_systems seed` or `make run`)")
    _onboard_demo_tenants(settings, manifest, urls)


def redis() -> None:
    """Run the embedded Redis in the foreground (its data in the data folder)."""
    from devstack.embedded_redis import exec_redis_server

    settings = load_settings()
    exec_redis_server(port=settings.hub_embedded_redis_port,
                      data_dir=settings.hub_data_dir / "redis",
                      password=settings.hub_embedded_redis_password, persist=True)


def _wait_for(description: str, probe, deadline: float) -> None:
    while True:
        try:
            if probe():
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(description)
        time.sleep(0.5)


def announce() -> None:
    """Wait until the API is ready and Flower sees both workers, then print how to use the
    stack, and end (supervisord runs it once: it is never restarted)."""
    settings = load_settings()
    api = f"http://127.0.0.1:{settings.hub_api_port}"
    flower = f"http://127.0.0.1:{settings.hub_flower_port}"
    user, password = settings.flower_basic_auth.split(":", 1)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS

    def flower_workers() -> set[str]:
        answer = requests.get(f"{flower}/api/workers", auth=(user, password), timeout=5,
                              params={"refresh": "true"})
        return {name.split("@")[0] for name in answer.json()} if answer.ok else set()

    try:
        _wait_for("API /readyz", lambda: requests.get(f"{api}/readyz", timeout=5).ok, deadline)
        _wait_for("Flower workers", lambda: {"io", "compute"} <= flower_workers(), deadline)
        _wait_for("the MLLP listener", lambda: _port_in_use(settings.hub_mllp_port), deadline)
    except TimeoutError as waiting_for:
        _say(f"the stack is not ready after {READY_TIMEOUT_SECONDS}s: still waiting for "
             f"{waiting_for}; see the lines above")
    else:
        started_at = float(os.environ.get("DEVSTACK_STARTED_AT", time.time()))
        print(_banner(settings, api, flower, time.time() - started_at), flush=True)


DEMO_CLIENTS_FILE = "demo-clients.json"


def demo_clients_path(settings: Settings) -> Path:
    """The file of the demo clients' secrets (``{client_id: secret}``, mode 0600)."""
    return settings.hub_secrets_dir / DEMO_CLIENTS_FILE


def _restrict_secrets(settings: Settings) -> None:
    # Only the owner may read the secrets, whoever created the files (an older run, an umask).
    settings.hub_secrets_dir.chmod(0o700)
    for path in settings.hub_secrets_dir.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)


def _secret_source(settings: Settings, name: str, value: str) -> str:
    """Where the secret ``name`` (whose value is ``value``) can be read: its file, or the
    variable that holds it. (The launcher hands every secret to the processes as variables,
    so the files are looked at first.)"""
    candidates = [settings.hub_secrets_dir / name.lower()]
    if os.environ.get(f"{name}_FILE"):
        candidates.insert(0, Path(os.environ[f"{name}_FILE"]))
    for path in candidates:
        try:
            if path.read_text(encoding="utf-8").strip() == value:
                return str(path)
        except OSError:
            continue
    return f"the {name} variable"


def _banner(settings: Settings, api: str, flower: str, elapsed: float) -> str:
    # The process log is not a place for secrets (it is kept, shared and pasted into tickets):
    # the banner says where each secret is and how to read it, never the value.
    clients_path = demo_clients_path(settings)
    client_ids = sorted(json.loads(clients_path.read_text(encoding="utf-8")))
    flower_user = settings.flower_basic_auth.split(":", 1)[0]
    flower_source = _secret_source(settings, "FLOWER_BASIC_AUTH", settings.flower_basic_auth)
    metrics_user = settings.hub_metrics_basic_auth.split(":", 1)[0]
    metrics_source = _secret_source(settings, "HUB_METRICS_BASIC_AUTH",
                                    settings.hub_metrics_basic_auth)
    lines = [
        "",
        f"  The medication hub is up ({elapsed:.1f}s).",
        "",
        f"  API            {api}",
        f"  API docs       {api}/docs   (OpenAPI: {api}/openapi.json)",
        f"  Readiness      {api}/readyz",
        f"  Metrics        {api}/metrics   (basic auth {metrics_user}:<password>, "
        f"`user:password` in {metrics_source})",
        f"  Flower         {flower}   (basic auth {flower_user}:<password>, "
        f"`user:password` in {flower_source})",
        f"  Demo System A  http://127.0.0.1:{settings.demo_inventory_port}   (inventory)",
        f"  Demo System B  http://127.0.0.1:{settings.demo_administration_port}   "
        "(administration / eMAR)",
        f"  Demo subscriber {subscriber_url(settings)}/stats   (webhook events it received "
        "and verified)",
        f"  HL7 v2 (MLLP)  {settings.hub_mllp_host}:{settings.hub_mllp_port}   "
        "(System C, the pharmacy; also POST /v1/hl7)",
        "",
        f"  Demo clients: {', '.join(client_ids)}",
        f"  Their secrets (owner-only file): python3 -m json.tool {clients_path}",
    ]
    lines += ["", "  Scheduled syncs (beat): .venv/bin/flask --app wsgi hub syncs list",
              "  Parallel run of container origins against the demo legacy API "
              "(docs/parallel-run.md):",
              "    .venv/bin/flask --app wsgi hub parallel-runs show north-general "
              "container_origin",
              "", "  Try it:", *[f"    {line}" for line in walkthrough(api, clients_path)],
              "", "  Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def walkthrough(api: str, clients_path: Path) -> list[str]:
    """Shell lines that show the hub at work: readiness, a token, a lookup (MISS, then HIT)
    and a refused lookup (403). The client secret is read from its file when the lines run."""
    client = "north-general-inventory"
    read_secret = ("python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "
                   f"{shlex.quote(str(clients_path))} {client}")
    return [
        f"curl -s {api}/readyz",
        f"SECRET=$({read_secret})",
        f"TOKEN=$(curl -s -X POST {api}/v1/oauth/token -d grant_type=client_credentials "
        f"-d client_id={client} --data-urlencode \"client_secret=$SECRET\" "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f"curl -s -D - -o /dev/null -H \"Authorization: Bearer $TOKEN\" "
        f"\"{api}/v1/administrations?unit=ICU-3&page_size=2\" | grep X-Cache   # MISS",
        f"curl -s -D - -o /dev/null -H \"Authorization: Bearer $TOKEN\" "
        f"\"{api}/v1/administrations?unit=ICU-3&page_size=2\" | grep X-Cache   # HIT",
        f"curl -s -H \"Authorization: Bearer $TOKEN\" {api}/v1/containers/NGH-C00000001/origin"
        "   # 403: this client may not read inventory",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help=run.__doc__)
    commands.add_parser("redis", help=redis.__doc__)
    commands.add_parser("announce", help="Wait for the stack, then print how to use it.")
    control = commands.add_parser("ctl", help=ctl.__doc__)
    control.add_argument("arguments", nargs=argparse.REMAINDER,
                         help="supervisorctl's arguments, e.g. status, restart worker_io")
    onboarding = commands.add_parser("onboard", help="Onboard the demo sites as tenants.")
    onboarding.add_argument("--manifest", type=Path,
                            help="manifest.json written by `python -m demo_systems seed` "
                                 "(default: the stack's).")
    onboarding.add_argument("--inventory-url", help="Base URL of the demo inventory system.")
    onboarding.add_argument("--administration-url",
                            help="Base URL of the demo administration system.")
    arguments = parser.parse_args()
    if arguments.command == "ctl":
        ctl(arguments.arguments)
        return
    if arguments.command == "onboard":
        onboard(arguments.manifest, arguments.inventory_url, arguments.administration_url)
        return
    {"run": run, "redis": redis, "announce": announce}[arguments.command]()


if __name__ == "__main__":
    main()
