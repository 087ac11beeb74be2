"""Seed the demo systems: databases, ground truth, API key files and the manifest.

Everything is built in a staging folder inside the data dir and moved into place at the end,
so re-seeding replaces the previous world whole and a failed seed leaves the old one intact.
Servers already running keep reading the file they opened; restart them after re-seeding.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from demo_systems import ground_truth, manifest
from demo_systems.administration import store as administration_store
from demo_systems.database import open_for_seeding
from demo_systems.inventory import store as inventory_store
from demo_systems.keys import write_key_files
from demo_systems.pharmacy import store as pharmacy_store
from demo_systems.sites import ADMINISTRATION, INVENTORY
from demo_systems.world import generate

PARALLEL_FROM = 50_000
"""From this many administrations on, the inventory database is built in a second process while
this one builds the eMAR's and the pharmacy's, and the two reconciliation truths are computed
one in each.

Each process regenerates the same world from the seed (cheaper than shipping rows between
processes) and loads only its own system's rows; below this size a process start costs more
than it saves.
"""


@dataclass(frozen=True)
class SeedSummary:
    """What one seed run produced."""

    seed: int
    administrations: int
    containers: int
    movements: int
    patients: int
    seconds: float
    data_dir: Path

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (f"seeded {self.data_dir} with seed {self.seed}: {self.administrations} administrations, "
                f"{self.containers} containers, {self.movements} movements, {self.patients} patients "
                f"in {self.seconds:.1f}s")


def seed(*, data_dir: Path, seed: int, administrations: int, keys_out: Path) -> SeedSummary:
    """Build the world for ``seed`` into ``data_dir`` and write the key files into ``keys_out``."""
    started = time.perf_counter()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".seeding-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    inventory_db = staging / inventory_store.FILE_NAME
    administration_db = staging / administration_store.FILE_NAME
    pharmacy_db = staging / pharmacy_store.FILE_NAME
    try:
        if administrations >= PARALLEL_FROM:
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                inventory_job = pool.submit(build_inventory, seed, administrations, inventory_db)
                administration_counts, administration_truth = build_administration(
                    seed, administrations, administration_db, pharmacy_db)
                inventory_counts = inventory_job.result()
                # The two reconciliation truths only read the finished databases: one each.
                pharmacy_job = pool.submit(ground_truth.pharmacy_part, pharmacy_db,
                                           administration_db, inventory_db)
                inventory_truth = ground_truth.inventory_part(inventory_db, administration_db)
                pharmacy_truth = pharmacy_job.result()
        else:
            inventory_counts = build_inventory(seed, administrations, inventory_db)
            administration_counts, administration_truth = build_administration(
                seed, administrations, administration_db, pharmacy_db)
            inventory_truth = ground_truth.inventory_part(inventory_db, administration_db)
            pharmacy_truth = ground_truth.pharmacy_part(pharmacy_db, administration_db,
                                                        inventory_db)
        ground_truth.write(staging / ground_truth.FILE_NAME, {
            ADMINISTRATION: administration_truth,
            INVENTORY: inventory_truth,
            pharmacy_store.PRODUCT: pharmacy_truth,
        })
        key_files = write_key_files(seed, Path(keys_out))
        manifest.write(staging / manifest.FILE_NAME, manifest.build(seed, key_files))
        for name in (inventory_store.FILE_NAME, administration_store.FILE_NAME,
                     pharmacy_store.FILE_NAME, ground_truth.FILE_NAME, manifest.FILE_NAME):
            os.replace(staging / name, data_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SeedSummary(seed=seed, administrations=administration_counts["administrations"],
                       containers=inventory_counts["containers"],
                       movements=inventory_counts["movements"],
                       patients=administration_counts["patients"],
                       seconds=time.perf_counter() - started, data_dir=data_dir)


def build_inventory(seed: int, administrations: int, path: Path) -> dict[str, int]:
    """Write the inventory database of the world for ``seed``; return its row counts."""
    world = generate(seed, administrations)
    connection = open_for_seeding(path)
    try:
        inventory_store.create_schema(connection, world.sites, world.formulary)
        for batch in world.batches():
            inventory_store.insert_batch(connection, batch)
        inventory_store.create_indexes(connection)
        connection.execute("COMMIT")
        containers, movements = connection.execute(
            "SELECT count(*), count(*) + count(stocked_epoch) + count(dispensed_epoch) FROM containers"
        ).fetchone()
    finally:
        connection.close()
    return {"containers": containers, "movements": movements}


def build_administration(seed: int, administrations: int, path: Path,
                         pharmacy_path: Path) -> tuple[dict[str, int], dict]:
    """Write the eMAR and pharmacy databases of the world for ``seed``; return the eMAR's row
    counts and ground truth.

    The pharmacy's orders are derived from the eMAR's doses, so both are written from the one
    pass over the world instead of generating it a third time.
    """
    world = generate(seed, administrations)
    connection = open_for_seeding(path)
    pharmacy = open_for_seeding(pharmacy_path)
    try:
        administration_store.create_schema(connection, world.sites, world.formulary, world.patients)
        pharmacy_store.create_schema(pharmacy, world.formulary, world.patients)
        order_book = pharmacy_store.OrderBook(seed, world.formulary)
        given = 0
        for batch in world.batches():
            administration_store.insert_batch(connection, batch)
            pharmacy_store.insert_orders(pharmacy, order_book.orders(batch))
            given += len(batch.administrations)
        administration_store.create_indexes(connection)
        connection.execute("COMMIT")
        pharmacy.execute("COMMIT")
    finally:
        connection.close()
        pharmacy.close()
    return ({"administrations": given, "patients": len(world.patients)},
            ground_truth.administration_part(path))
