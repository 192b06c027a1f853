"""The package layout's promises that imports alone can break.

What runs jobs (a ``jobchain worker`` process) loads no web stack; the pure rules load
nothing of the rest of jobchain; the store never imports the runner or the web layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
WEB_STACK = ("flask", "werkzeug", "waitress", "requests", "jinja2")

WITHOUT_WEB_STACK = [
    "app",
    "app.domain.statuses",
    "app.domain.payload",
    "app.domain.cron",
    "app.runner.worker_process",
    "app.runner.schedule_loop",
    "app.services.submit",
    "app.security.roles",
    "app.security.signatures",
    "app.cli",  # `jobchain worker` goes through the command group
    "app.alerts.dispatcher",
    "app.runner.background",
]


@pytest.mark.parametrize("module", WITHOUT_WEB_STACK)
def test_module_imports_no_web_stack(module: str) -> None:
    # A fresh interpreter: this test process has long imported Flask for other tests.
    check = (
        f"import sys, {module}; "
        f"loaded = [m for m in {WEB_STACK!r} if m in sys.modules]; "
        "print(', '.join(loaded), file=sys.stderr); sys.exit(1 if loaded else 0)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, f"importing {module} loads {done.stderr.strip()}"


def imports_of(package: str) -> set[str]:
    """Every ``app.*`` module the package's files import (statically)."""
    found: set[str] = set()
    for path in (APP / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("app")}


def test_the_domain_imports_only_the_domain() -> None:
    assert {m for m in imports_of("domain") if not m.startswith("app.domain")} == set()


def test_the_store_imports_no_runner_and_no_web_layer() -> None:
    allowed = ("app.store", "app.domain", "app.failpoints")
    assert {m for m in imports_of("store") if not m.startswith(allowed)} == set()


def test_the_runner_imports_no_web_layer() -> None:
    web = ("app.api", "app.admin", "app.web", "app.server", "app.cli", "app.security.tokens")
    assert {m for m in imports_of("runner") if m.startswith(web)} == set()


# What a `jobchain worker` at rest needs no more: migrations (the schema is at head), the
# CLI's HTTP client, an interval scheduler's machinery, e-mail, and on SQLite the PostgreSQL
# driver and dialect. bench/README.md ("Worker memory") says what each cost.
NOT_AT_REST = (
    "alembic",
    "mako",
    "requests",
    "apscheduler.schedulers",
    "apscheduler.executors",
    "smtplib",
    "psycopg",
    "sqlalchemy.dialects.postgresql",
)


def test_a_worker_at_rest_on_a_database_at_head_loads_only_what_it_needs(tmp_path: Path) -> None:
    from app.store import schema

    url = f"sqlite:///{tmp_path / 'jobchain.db'}"
    schema.upgrade(url)  # here, as `jobchain db upgrade` or the first process would
    check = f"""
import sys, time
from app.cli.client import ApiClient
from app.runner.background import Background
from app.runtime import Runtime
from config import Settings
ApiClient("http://127.0.0.1:1")  # the command group makes one for every command
background = Background(Runtime.create(Settings(database_url={url!r}, workers=1))).start()
time.sleep(0.5)
background.stop(1.0)
loaded = sorted({{p for p in {NOT_AT_REST!r} for m in sys.modules
                  if m == p or m.startswith(p + ".")}})
print(", ".join(loaded), file=sys.stderr)
sys.exit(1 if loaded else 0)
"""
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, f"a worker at rest loaded {done.stderr.strip()}"
