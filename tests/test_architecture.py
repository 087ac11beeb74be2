"""The layers point one way: the import-linter contracts in ``.importlinter`` hold.

``make test`` and CI run this module, so a change that makes the hub import the local stack,
the app import a task, a service import a view, or the settings import a domain fails the
suite. docs/architecture.md draws the layers these contracts enforce.
"""

import configparser
import subprocess
import sys
from pathlib import Path

from app.settings import PROJECT_ROOT

CONFIG = PROJECT_ROOT / ".importlinter"


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"

    # --no-cache: a stale graph cache must never let a new import slip through.
    result = subprocess.run([str(lint_imports), "--config", str(CONFIG), "--no-cache"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_layer_rule_has_its_contract():
    config = configparser.ConfigParser()
    config.read(CONFIG, encoding="utf-8")
    contracts = {section.removeprefix("importlinter:contract:"): config[section]
                 for section in config.sections() if section.startswith("importlinter:contract:")}

    assert {"processes", "local-stack-only", "demo-systems-stand-alone", "app-submits-by-name",
            "lower-layers", "settings-import-no-domain", "views-only-in-the-factory"} <= set(contracts)
    # An exception to a layer rule is a decision to document, not a line to add quietly.
    assert not any(contract.get("ignore_imports", "").strip() for contract in contracts.values())
