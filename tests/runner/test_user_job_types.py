"""User job types: loading modules named in JOBCHAIN_JOB_MODULES, and the shipped examples.

``examples/pricing_jobs.py`` is what docs/job-types.md points to as a complete example, and
the ``examples/*.json`` chains are what the README tells people to submit, so both are tested
here.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.domain.payload import Limits, PayloadError, parse_tree
from app.runner.process_setup import StartupError, load_job_modules
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import actions, queries, submission
from app.store.database import Database
from config import Settings
from jobs import REGISTRY
from tests.helpers import flatten, wait_for_chain, wait_for_status, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return payload


def submit(db: Database, payload: dict[str, Any]) -> int:
    return submission.submit(db, parse_tree(payload, Limits(), lambda n: n in REGISTRY))


def statuses(tree: dict[str, Any]) -> dict[str, str]:
    return {node["target_object"]: node["status"] for node in flatten(tree)}


@pytest.fixture(autouse=True)
def pricing_jobs() -> None:
    """Register LPG and CFS the way ``jobchain serve`` does, from the setting."""
    settings = Settings.from_env({"JOBCHAIN_JOB_MODULES": "examples.pricing_jobs"})
    load_job_modules(settings.job_modules)


def test_job_modules_setting_registers_the_example_types(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "JOBCHAIN_JOB_MODULES": " examples.pricing_jobs , ",
            "JOBCHAIN_DATABASE_URL": f"sqlite:///{tmp_path / 'jobchain.db'}",
        }
    )
    assert settings.job_modules == ("examples.pricing_jobs",)
    runtime = Runtime.create(settings)
    try:
        from examples import pricing_jobs

        lpg = runtime.registry.get("LPG")
        assert lpg is not None and lpg.function is pricing_jobs.recalculate_price_list
        assert lpg.description.startswith("Recalculates price list")
        assert "CFS" in runtime.registry
    finally:
        runtime.db.dispose()


def test_job_module_is_found_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A console script does not put the cwd on sys.path; serve adds it for job modules."""
    name = f"user_jobs_{uuid.uuid4().hex[:8]}"
    type_name = f"USER_{uuid.uuid4().hex[:8].upper()}"
    (tmp_path / f"{name}.py").write_text(
        "from jobs import job_type\n\n"
        f'@job_type("{type_name}")\n'
        "def run(ctx):\n"
        '    """Says hello."""\n'
        "    return {'hello': ctx.target_id}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    # Keep the throw-away type out of the registry other tests see.
    monkeypatch.setattr(REGISTRY, "_types", dict(REGISTRY._types))

    try:
        load_job_modules((name,))
    finally:
        sys.modules.pop(name, None)

    job = REGISTRY.get(type_name)
    assert job is not None and job.description == "Says hello."


def test_a_broken_job_module_is_a_clean_startup_error(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot load job module 'no_such_jobs_module'"):
        load_job_modules(("no_such_jobs_module",))

    result = CliRunner().invoke(
        cli,
        ["serve"],
        env={
            "JOBCHAIN_JOB_MODULES": "no_such_jobs_module",
            "JOBCHAIN_DATABASE_URL": f"sqlite:///{tmp_path / 'jobchain.db'}",
        },
    )
    assert result.exit_code == 1
    assert "Error: cannot load job module 'no_such_jobs_module'" in result.output
    assert "ModuleNotFoundError" in result.output


def test_price_list_example_runs_with_progress_log_and_result(
    db: Database, pool: WorkerPool
) -> None:
    root = submit(db, load_example("price-list.json"))
    tree = wait_for_chain(db, root)

    assert statuses(tree) == {"155.LPG": "FINISHED", "38.CFS": "FINISHED"}
    lpg, cfs = flatten(tree)
    assert lpg["result"] == {"priceList": "155", "mode": "full", "articles": 1200}
    assert (lpg["progress"], lpg["message"]) == (100.0, "published")
    assert cfs["result"] == {"fieldSet": "38", "fields": 3}
    log = queries.get_log(db, lpg["id"])
    assert log is not None
    assert "recalculating price list 155 (full, attempt 1)" in log["text"]
    assert "rounding prices" in log["text"]
    assert "repriced 1200 articles" in log["text"]


def test_lpg_reports_progress_while_running_and_stops_when_cancelled(
    db: Database, pool: WorkerPool
) -> None:
    root = submit(db, {"targetObject": "155.LPG", "parameters": {"stepSeconds": 0.5}})

    def running_progress() -> tuple[float, str] | None:
        job = queries.get_job(db, root)
        assert job is not None
        if job["status"] == "PROCESSING" and job["progress"] is not None:
            return job["progress"], job["message"]
        return None

    progress = wait_until(running_progress, what="stored progress")
    assert progress is not None
    percent, message = progress
    assert 0 <= percent < 100
    assert message in {"loading articles", "applying discounts", "rounding prices"}

    assert actions.cancel(db, root) == "PROCESSING"
    pool.request_abort(root)
    wait_for_status(db, root, "CANCELLED", timeout=5)
    log = queries.get_log(db, root)
    assert log is not None and "stopped while" in log["text"]


def test_lpg_rejects_an_unknown_mode(db: Database, pool: WorkerPool) -> None:
    """Refused at submission by the type's schema; a job stored without that check (say,
    before the schema existed) fails when it runs, with the same reason."""
    with pytest.raises(PayloadError) as refused:
        parse_tree(
            {"targetObject": "155.LPG", "parameters": {"mode": "weekly"}},
            Limits(),
            REGISTRY.__contains__,
            REGISTRY.check_parameters,
        )
    assert refused.value.details == {"parameters.mode": ["Must be one of: full, delta."]}
    root = submit(db, {"targetObject": "155.LPG", "parameters": {"mode": "weekly"}})
    wait_for_status(db, root, "FAILED")
    job = queries.get_job(db, root)
    assert job is not None
    assert job["message"] == "invalid parameters: parameters.mode: Must be one of: full, delta."


EXPECTED = {
    "price-list.json": {"155.LPG": "FINISHED", "38.CFS": "FINISHED"},
    "nightly-datamart.json": {
        "sales-2026-11.csv.SHELL": "FINISHED",
        "sales.SHELL": "FINISHED",
        "sales-datamart.SHELL": "FINISHED",
    },
    "nightly-price-lists.json": {
        "nightly-pricing.NOOP": "FINISHED",
        **{f"{n}.LPG": "FINISHED" for n in (155, 156, 157)},
        **{f"{n}.CFS": "FINISHED" for n in (38, 39, 40)},
    },
    "failing-export.json": {
        "155.LPG": "FINISHED",
        "partner-feed.SHELL": "FAILED",
        "pricing-team.SHELL": "FINISHED",
        "partner-feed.NOOP": "SKIPPED",
        "38.CFS": "FINISHED",
    },
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(EXPECTED)


def test_every_example_runs_to_its_documented_outcome(db: Database, pool: WorkerPool) -> None:
    roots = {name: submit(db, load_example(name)) for name in EXPECTED}
    for name, root in roots.items():
        assert statuses(wait_for_chain(db, root, timeout=30)) == EXPECTED[name], name
