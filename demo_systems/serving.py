"""Run a demo system under gunicorn with the settings in :mod:`demo_systems.gunicorn_conf`."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from demo_systems.sites import SYSTEMS

PACKAGE_DIR = Path(__file__).resolve().parent
GUNICORN_CONF = PACKAGE_DIR / "gunicorn_conf.py"


def gunicorn_command(system: str, *, data_dir: Path, host: str, port: int, threads: int) -> list[str]:
    """The gunicorn command line that serves ``system`` from ``data_dir``."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}")
    return [
        sys.executable, "-m", "gunicorn",
        "--config", str(GUNICORN_CONF),
        "--pythonpath", str(PACKAGE_DIR.parent),
        "--bind", f"{host}:{port}",
        "--threads", str(threads),
        f"demo_systems.{system}.app:create_app(data_dir={str(Path(data_dir).resolve())!r})",
    ]


def serve(system: str, *, data_dir: Path, host: str, port: int, threads: int) -> None:
    """Replace this process with gunicorn serving ``system``; never returns."""
    command = gunicorn_command(system, data_dir=data_dir, host=host, port=port, threads=threads)
    # GUNICORN_CMD_ARGS may be exported for the hub's API in the same shell; it is not ours.
    environment = {name: value for name, value in os.environ.items() if name != "GUNICORN_CMD_ARGS"}
    sys.stdout.flush()
    os.execve(command[0], command, environment)
