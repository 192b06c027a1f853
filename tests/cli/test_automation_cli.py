"""``jobchain models status`` and ``jobchain models why`` against a live server with workers
(SQLite), reconciliation ticks driven by hand."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from app.cli.client import ApiClient
from app.runner.automation_loop import AutomationLoop
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.services.runs import RunService
from tests.helpers import ADMIN_TOKEN, LiveServer, wait_until

Run = Callable[..., Result]
LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+")

GRAPH = {
    "name": "daily",
    "assets": [
        {"name": "a", "job": {"targetObject": "a.NOOP"}, "automation": "reconcile"},
        {
            "name": "b",
            "job": {"targetObject": "b.NOOP"},
            "automation": "reconcile",
            "codeVersion": "1",
        },
        {
            "name": "c",
            "job": {"targetObject": "c.NOOP"},
            "automation": "reconcile",
            "freshness": {"maximumLagMinutes": 10},
        },
        # Off: never run by a tick; run by hand, then late as soon as a refresh of a brings
        # new data.
        {"name": "d", "job": {"targetObject": "d.NOOP"}, "freshness": {"maximumLagMinutes": 0.001}},
    ],
    "dependencies": [
        {"upstream": "a", "downstream": "b"},
        {"upstream": "b", "downstream": "c"},
        {"upstream": "a", "downstream": "d"},
    ],
}


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def api(live: LiveServer, pool: WorkerPool) -> Iterator[ApiClient]:
    with ApiClient(live.url, token=ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def jobchain(live: LiveServer, api: ApiClient) -> Run:
    def run(*args: str, code: int = 0) -> Result:
        options = ["--url", live.url, "--token", ADMIN_TOKEN]
        result = CliRunner().invoke(cli, [*options, *args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == code, result.output
        return result

    return run


@pytest.fixture
def loop(runtime: Runtime) -> AutomationLoop:
    """Ticked by hand; each call is a new tick."""
    settings = replace(runtime.settings, automation_tick_seconds=0.001)
    return AutomationLoop(RunService(runtime.db, runtime.registry, settings))


def rows(output: str) -> dict[str, str]:
    """The status table's lines by asset name."""
    lines = output.splitlines()
    assert lines[0].split() == ["ASSET", "STATUS", "LAG", "NEXT", "DEADLINE", "CAUSE"]
    return {line.split()[0]: line for line in lines[1:]}


def statuses(api: ApiClient, model_id: int) -> dict[str, Any]:
    return {a["name"]: a for a in api.assets(model_id)}


def test_status_and_why_through_a_code_version_change(
    jobchain: Run, api: ApiClient, loop: AutomationLoop, tmp_path: Path
) -> None:
    graph = tmp_path / "daily.json"
    graph.write_text(json.dumps(GRAPH))
    jobchain("models", "apply", str(graph))
    model_id = next(m["id"] for m in api.models() if m["name"] == "daily")
    table = rows(jobchain("models", "status", "daily").output)
    assert [line.split()[1] for line in table.values()] == ["MISSING"] * 4
    why = jobchain("models", "why", "daily", "a").output
    assert why.splitlines()[:2] == ["a: MISSING", "  job, automation reconcile"]
    assert "no evaluation yet" in why and "no refreshes yet" in why

    jobchain("models", "run", "daily", "--asset", "d", "--no-downstream", "--wait")
    assert [r.requested for r in loop.run_once()] == [["a", "b", "c"]]
    wait_until(
        lambda: all(s["status"] == "FRESH" for n, s in statuses(api, model_id).items() if n != "d"),
        20,
        what="a, b and c to be fresh",
    )
    wait_until(lambda: statuses(api, model_id)["d"]["late"], 10, what="d to be late")
    table = rows(jobchain("models", "status", str(model_id)).output)
    assert table["a"].split()[1:3] == ["FRESH", "0"]
    assert re.search(r"STALE LATE \d+ s", table["d"]), table["d"]
    assert LOCAL_TIME.search(table["c"]), table["c"]  # its next deadline, local, to the second
    late = rows(jobchain("models", "status", "daily", "--late").output)
    assert list(late) == ["d"]
    fresh = rows(jobchain("models", "status", "daily", "--status", "fresh").output)
    assert list(fresh) == ["a", "b", "c"]

    # A new code version: b STALE (CODE b), c below it STALE (DEPENDENCIES b), before any run.
    api._call(
        "PATCH",
        f"/models/{model_id}/assets/{statuses(api, model_id)['b']['id']}",
        json={"codeVersion": "2"},
    )
    table = rows(jobchain("models", "status", "daily").output)
    assert table["b"].split()[1] == "STALE" and table["b"].endswith("CODE b")
    assert table["c"].split()[1] == "STALE" and table["c"].endswith("DEPENDENCIES b")
    assert table["a"].split()[1] == "FRESH"

    assert [r.requested for r in loop.run_once()] == [["b"]]
    why = jobchain("models", "why", "daily", "b").output
    lines = why.splitlines()
    assert lines[1].startswith("  job, automation reconcile; code version 2; data version ")
    assert re.fullmatch(
        rf"last evaluation {LOCAL_TIME.pattern} \(tick \d+\): requested a refresh", lines[2]
    ), lines[2]
    assert lines[3] == "  reason: b: code version changed to '2'"
    assert lines[4:9] == [
        "  ✓ status: STALE (CODE b)",
        "  ✓ automation is reconcile: reconcile",
        "  ✓ not held: no",
        "  ✓ not refreshing now: no",
        "  ✓ missing, new code or new upstream data",
    ]
    assert "last refreshes:" in lines
    assert "      b: code version changed to '2'" in lines
    assert lines[-1] == "      b is missing"

    # c has a policy with time to spare: not requested, and why says so.
    why = jobchain("models", "why", "daily", "c").output
    assert "did not request one" in why
    policy = next(line for line in why.splitlines() if "freshness policy at stake" in line)
    assert policy.startswith("  ✗ freshness policy at stake: ")
    assert "of at most 10 min; deadline " in policy and policy.endswith("; not late")
    assert "c is missing (maximum lag 10 min)" in why

    # d is off: ticks evaluate it (it is late) but never request it.
    why = jobchain("models", "why", "daily", "d", "--json").output
    shown = json.loads(why)
    assert shown["asset"]["late"] is True and shown["evaluation"]["requested"] is False
    assert [r["reason"] for r in shown["refreshes"]] == [None]  # run by hand

    assert "no asset 'nope'" in jobchain("models", "why", "daily", "nope", code=1).output
    assert "no model named 'nope'" in jobchain("models", "status", "nope", code=1).output


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "models" / "fresh-prices.json"


def test_the_example_model_applies_exports_the_same_and_reconciles(
    jobchain: Run,
    api: ApiClient,
    loop: AutomationLoop,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the example's source file is relative: var/drop/...
    drop = tmp_path / "var" / "drop" / "supplier-prices.csv"
    drop.parent.mkdir(parents=True)
    drop.write_text("sku;price\n1;9.90\n")
    jobchain("models", "apply", str(EXAMPLE))
    exported = tmp_path / "exported.json"
    exported.write_text(jobchain("models", "export", "fresh-prices").output)
    again = json.loads(exported.read_text())
    source = next(a for a in again["assets"] if a["name"] == "supplier_file")
    assert source["kind"] == "source" and source["job"] is None
    assert source["observe"]["type"] == "FILE_SHA256"
    board = next(a for a in again["assets"] if a["name"] == "price_board")
    assert board["freshness"] == {"maximumLagMinutes": 2.0}
    jobchain("models", "apply", str(exported))  # the export applies as it is
    model_id = next(m["id"] for m in api.models() if m["name"] == "fresh-prices")
    ticks = loop.run_once()
    assert [r.requested for r in ticks] == [
        ["rates", "margin_report", "price_board", "supplier_prices"]
    ]
    wait_until(
        lambda: all(s["status"] == "FRESH" for s in statuses(api, model_id).values()),
        20,
        what="every asset to be fresh",
    )
    # The next tick looks at the new versions and requests nothing; then all is idle (the
    # observer read the file once; its next look is due in 30 s).
    assert [r.requested for r in loop.run_once()] == [[]]
    assert loop.run_once() == []
    table = rows(jobchain("models", "status", "fresh-prices").output)
    assert {line.split()[1] for line in table.values()} == {"FRESH"}
