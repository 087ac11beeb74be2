"""The layers point one way: the import-linter contracts in ``.importlinter`` hold.

``make test`` and CI run this module, so a change that makes the hub import the local stack,
the app import a task, a service import a view, or the settings import a domain fails the
suite. docs/architecture.md draws the layers these contracts enforce. It also keeps the one
convention for services: they take explicit handles; only the edges reach the app's resources.
"""

import ast
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
            "lower-layers", "settings-import-no-domain", "views-only-in-the-factory",
            "services-take-handles", "systems-only-through-the-registry"} <= set(contracts)
    # An exception to a layer rule is a decision to document, not a line to add quietly.
    assert not any(contract.get("ignore_imports", "").strip() for contract in contracts.values())


# The edges: where a request, a command or the app factory meets the app. Only these reach
# the process's resources (``resources()``, ``current_app``, ``HubResources``) and hand the
# handles (db_session, redis_client, settings, ...) to the services, keyword-only.
EDGES = ("app/__init__.py", "app/extensions.py", "app/cli.py", "app/*/views.py",
         "app/*/cli.py", "app/auth/principal.py", "app/audit/hooks.py", "app/edge/*.py",
         "app/observability/http_metrics.py")
RESOURCE_NAMES = {"current_app", "resources", "HubResources"}


def _is_edge(relative: Path) -> bool:
    return any(relative.match(pattern) for pattern in EDGES)


def _resource_reaches(tree: ast.AST) -> list[str]:
    """How a module reaches the app's resources itself: imports of the accessor, a ``hub``
    parameter, or ``extensions["hub"]``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [f"imports {alias.name} from {node.module}" for alias in node.names
                      if alias.name in RESOURCE_NAMES or node.module == "app.extensions"]
        elif isinstance(node, ast.Import):
            found += [f"imports {alias.name}" for alias in node.names
                      if alias.name == "app.extensions"]
        elif isinstance(node, ast.arguments):
            found += [f"parameter {arg.arg} (line {arg.lineno})"
                      for arg in (*node.posonlyargs, *node.args, *node.kwonlyargs)
                      if arg.arg == "hub"]
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "extensions" and isinstance(node.slice, ast.Constant)
              and node.slice.value == "hub"):
            found.append(f"extensions['hub'] (line {node.lineno})")
    return found


def test_services_take_explicit_handles_and_only_edges_reach_resources():
    offenders = {}
    for path in sorted((PROJECT_ROOT / "app").rglob("*.py")):
        relative = path.relative_to(PROJECT_ROOT)
        if _is_edge(relative):
            continue
        reaches = _resource_reaches(ast.parse(path.read_text(encoding="utf-8")))
        if reaches:
            offenders[str(relative)] = reaches

    assert offenders == {}


def test_the_resource_check_sees_a_service_that_takes_the_bundle():
    bundled = ast.parse("from app.extensions import HubResources\n"
                        "def warm(*, hub: HubResources, tenant): return hub.redis\n")
    accessor = ast.parse("from flask import current_app\n"
                         "def read(): return current_app.extensions['hub'].redis\n")

    assert len(_resource_reaches(bundled)) == 2
    assert len(_resource_reaches(accessor)) == 2
    assert _is_edge(Path("app/lookups/views.py")) and not _is_edge(Path("app/lookups/service.py"))
