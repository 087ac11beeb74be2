"""Command line of the demo hospital systems.

    python -m demo_systems seed --data-dir DIR --seed 42 --administrations 20000 --keys-out DIR
    python -m demo_systems serve inventory|administration --data-dir DIR --host 127.0.0.1 --port P
        [--threads 64]
    python -m demo_systems send-pharmacy --data-dir DIR --host 127.0.0.1 --port P [--rate 5]
"""
from __future__ import annotations

from pathlib import Path

import click

from demo_systems.sites import SYSTEMS


@click.group()
def cli() -> None:
    """Simulated downstream hospital systems for the medication hub."""


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the databases, ground truth and manifest go.")
@click.option("--seed", type=int, default=42, show_default=True, help="World seed.")
@click.option("--administrations", type=click.IntRange(min=0), default=20_000, show_default=True,
              help="How many doses to generate, split over the sites running the eMAR.")
@click.option("--keys-out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the per-site API key files go [default: DATA_DIR/keys].")
def seed(data_dir: Path, seed: int, administrations: int, keys_out: Path | None) -> None:
    """Seed both systems, replacing any earlier world in DATA_DIR."""
    from demo_systems.seeding import seed as seed_world

    summary = seed_world(data_dir=data_dir, seed=seed, administrations=administrations,
                         keys_out=keys_out or data_dir / "keys")
    click.echo(summary.line())


@cli.command()
@click.argument("system", type=click.Choice(SYSTEMS))
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), required=True)
@click.option("--threads", type=click.IntRange(min=1), default=64, show_default=True,
              help="Serving threads of the one worker process (injected hangs each hold one).")
def serve(system: str, data_dir: Path, host: str, port: int, threads: int) -> None:
    """Serve SYSTEM under gunicorn (one worker, gthread)."""
    from demo_systems.serving import serve as run

    run(system, data_dir=data_dir, host=host, port=port, threads=threads)


@cli.command("send-pharmacy")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="The hub's MLLP listener.")
@click.option("--port", type=click.IntRange(1, 65535), required=True)
@click.option("--rate", type=click.FloatRange(min=0), default=5, show_default=True,
              help="Messages per second; 0 sends as fast as the ACKs come back.")
@click.option("--ack-timeout", type=click.FloatRange(min=0.1), default=10, show_default=True,
              help="Seconds to wait for each ACK before reconnecting and resending.")
@click.option("--site", "sites", multiple=True,
              help="Send only this site's messages (slug or facility; repeatable) [default: all].")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Stop after this many acknowledged messages (the next run resumes there).")
@click.option("--exit-when-done/--idle-when-done", default=False, show_default=True,
              help="Exit after the last message instead of idling (in the stack, an exiting "
                   "process stops the others).")
@click.option("--verbose", is_flag=True, help="Also log each message not answered AA.")
def send_pharmacy(data_dir: Path, host: str, port: int, rate: float, ack_timeout: float,
                  sites: tuple[str, ...], limit: int | None, exit_when_done: bool,
                  verbose: bool) -> None:
    """Stream the pharmacy's HL7 v2.5 messages (System C) to the hub over MLLP."""
    import asyncio
    import logging

    from demo_systems.pharmacy import sender
    from demo_systems.sites import site_by_slug_or_facility

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    facilities = []
    for name in sites:
        site = site_by_slug_or_facility(name)
        if site is None:
            raise click.BadParameter(f"unknown site {name!r}", param_hint="--site")
        facilities.append(site.facility)
    options = dict(data_dir=data_dir, host=host, port=port, rate=rate, ack_timeout=ack_timeout,
                   limit=limit, facilities=tuple(facilities) or None)
    try:
        asyncio.run(sender.send(**options) if exit_when_done or limit is not None
                    else sender.send_then_idle(**options))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    cli(prog_name="python -m demo_systems")
