"""``jobchain models`` and ``jobchain deps`` against a live server (SQLite)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from app.cli.client import ApiClient
from app.server import load_job_modules
from tests.helpers import ADMIN_TOKEN, LiveServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"
MONTHLY = EXAMPLES / "monthly-profit.json"

Run = Callable[..., Result]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def api(live: LiveServer) -> Iterator[ApiClient]:
    load_job_modules(("examples.pricing_jobs",))
    with ApiClient(live.url, token=ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def jobchain(live: LiveServer, api: ApiClient) -> Run:
    def run(*args: str, input: str | None = None, code: int = 0) -> Result:
        options = ["--url", live.url, "--token", ADMIN_TOKEN]
        result = CliRunner().invoke(cli, [*options, *args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == code, result.output
        return result

    return run


def test_apply_creates_the_model_and_export_gives_the_file_back(
    jobchain: Run, tmp_path: Path
) -> None:
    applied = jobchain("models", "apply", str(MONTHLY)).output
    assert "created model" in applied and "3 assets and 2 dependencies" in applied
    # A second apply finds the model by name and changes nothing.
    assert "created" not in jobchain("models", "apply", str(MONTHLY)).output
    exported = json.loads(jobchain("models", "export", "monthly-profit").output)
    original = json.loads(MONTHLY.read_text())
    assert exported["name"] == original["name"]
    assert exported["description"] == original["description"]
    assert exported["dependencies"] == original["dependencies"]
    assert {a["name"]: a["job"] for a in exported["assets"]} == {
        a["name"]: a["job"] for a in original["assets"]
    }
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(exported))
    jobchain("models", "apply", str(copy))
    assert json.loads(jobchain("models", "export", "monthly-profit").output) == exported
    listed = jobchain("models", "list").output
    assert "monthly-profit" in listed and "3 assets" in listed


def test_apply_takes_the_name_from_the_option_or_stdin(jobchain: Run, api: ApiClient) -> None:
    body = json.dumps({"assets": [{"name": "x", "job": {"targetObject": "NOOP"}}]})
    jobchain("models", "apply", "-", "--name", "from-stdin", input=body)
    assert [m["name"] for m in api.models()] == ["from-stdin"]
    result = jobchain("models", "apply", "-", input=body, code=1)
    assert "no model name" in result.output


def test_apply_reports_every_problem(jobchain: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "assets": [
                    {"name": "a", "job": {"targetObject": "NOPE"}},
                    {"name": "b", "job": {"targetObject": "NOOP"}},
                ],
                "dependencies": [
                    {"upstream": "b", "downstream": "b"},
                    {"upstream": "b", "downstream": "c"},
                ],
            }
        )
    )
    output = jobchain("models", "apply", str(bad), code=1).output
    assert "HTTP 400" in output
    assert "assets[0].job.targetObject: unknown job type 'NOPE'" in output
    assert "dependencies[0]: b would depend on itself" in output
    assert "dependencies[1].downstream: no asset named 'c'" in output


def test_show_and_order(jobchain: Run) -> None:
    jobchain("models", "apply", str(EXAMPLES / "aggregate-refresh.json"))
    shown = jobchain("models", "show", "price-aggregates").output
    assert "field_set_38" in shown
    assert "depends on  price_list_155, price_list_156" in shown
    transitive = jobchain("models", "show", "price-aggregates", "--transitive").output
    assert "depends on  field_set_38, field_set_39, price_list_155, price_list_156" in transitive
    assert jobchain("models", "order", "price-aggregates").output == (
        "level 0: price_list_155, price_list_156\n"
        "level 1: field_set_38, field_set_39\n"
        "level 2: daily_summary\n"
    )
    ordered = json.loads(jobchain("models", "order", "price-aggregates", "--json").output)
    assert ordered["order"][-1] == "daily_summary"
    assert "no model named 'nope'" in jobchain("models", "show", "nope", code=1).output


def test_deps_add_list_delete(jobchain: Run, api: ApiClient) -> None:
    jobchain("models", "apply", str(MONTHLY))
    assert jobchain("deps", "list", "monthly-profit").output.count("depends on") == 2
    jobchain("deps", "delete", "monthly-profit", "load_sales", "profit_report")
    assert "load_sales" not in jobchain("deps", "list", "monthly-profit").output
    added = jobchain("deps", "add", "monthly-profit", "load_sales", "profit_report").output
    assert "profit_report depends on load_sales" in added
    cycle = jobchain("deps", "add", "monthly-profit", "profit_report", "load_sales", code=1)
    assert "load_sales would depend on profit_report, which depends on load_sales" in cycle.output
    assert "cycle: load_sales; profit_report; load_sales" in cycle.output
    again = jobchain("deps", "add", "monthly-profit", "load_sales", "profit_report", code=1)
    assert "HTTP 409" in again.output
    model_id = api.models()[0]["id"]
    dep_id = api.dependencies(model_id)[0]["id"]
    assert (
        f"deleted dependency {dep_id}"
        in jobchain("deps", "delete", str(model_id), str(dep_id)).output
    )
    assert (
        "no asset named 'nope'"
        in jobchain("deps", "add", "monthly-profit", "nope", "load_sales", code=1).output
    )
    jobchain("deps", "delete", "monthly-profit", "1", "2", "3", code=2)


def test_models_run_refreshes_in_order_and_batches_across_runs(jobchain: Run, pool: object) -> None:
    jobchain("models", "apply", str(EXAMPLES / "aggregate-refresh.json"))
    shown = jobchain("models", "run", "price-aggregates", "--wait").output
    assert "state SUCCEEDED" in shown
    assert shown.index("price_list_155") < shown.index("field_set_38") < shown.index("daily")
    jobchain("models", "apply", str(MONTHLY))
    sales = ("models", "run", "monthly-profit", "--asset", "load_sales", "--batch", "2024-03")
    first = jobchain(*sales).output
    assert "waiting for 'load_expenses' in batch 2024-03" in first
    expenses = ("models", "run", "monthly-profit", "--asset", "load_expenses")
    second = jobchain(*expenses, "--batch", "2024-03", "--wait").output
    assert "profit_report" in second and "state SUCCEEDED" in second
    again = jobchain(*sales, code=1).output
    assert "already refreshing or refreshed in batch 2024-03: load_sales" in again
    assert "state SUCCEEDED" in jobchain(*sales, "--force", "--wait").output
    unknown = jobchain("models", "run", "monthly-profit", "--asset", "nope", code=1).output
    assert "no asset named 'nope'" in unknown
