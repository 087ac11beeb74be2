"""Time seeding the demo systems with a million administrations (prints figures, asserts nothing).

    .venv/bin/python bench/seed_demo.py [--administrations 1000000] [--seed 42]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo_systems.seeding import seed  # noqa: E402


def main() -> None:
    """Seed into a temporary dir and print rows, seconds and rows per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--administrations", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="demo-seed-bench-") as scratch:
        summary = seed(data_dir=Path(scratch) / "data", seed=options.seed,
                       administrations=options.administrations, keys_out=Path(scratch) / "keys")
        sizes = {path.name: path.stat().st_size for path in (Path(scratch) / "data").iterdir()}
    rows = summary.administrations + summary.containers + summary.patients
    print(f"cpus: {os.cpu_count()}")
    print(f"administrations: {summary.administrations:,}")
    print(f"containers: {summary.containers:,} (carrying {summary.movements:,} movements)")
    print(f"patients: {summary.patients:,}")
    print(f"rows inserted: {rows:,}")
    print(f"seconds: {summary.seconds:.1f}")
    print(f"administrations/s: {summary.administrations / summary.seconds:,.0f}")
    print(f"rows/s: {rows / summary.seconds:,.0f}")
    for name, size in sorted(sizes.items()):
        print(f"{name}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
