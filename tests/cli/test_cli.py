"""The ``jobchain`` CLI against a live API with real workers (SQLite only: the CLI only
talks HTTP, the store is covered on both databases elsewhere)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from app.cli.client import ApiClient
from app.runner.process_setup import load_job_modules
from app.runner.worker_pool import WorkerPool
from tests.helpers import ADMIN_TOKEN, LiveServer, flatten, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TERMINAL = {"FINISHED", "FAILED", "CANCELLED", "SKIPPED"}

Run = Callable[..., Result]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def api(live: LiveServer, pool: WorkerPool) -> Iterator[ApiClient]:
    load_job_modules(("examples.pricing_jobs",))
    with ApiClient(live.url, token=ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def jobchain(live: LiveServer, api: ApiClient) -> Run:
    """``jobchain --url <live server> --token <admin> ARGS...``; unexpected exceptions fail
    the test."""

    def run(*args: str, input: str | None = None, url: str | None = None) -> Result:
        options = ["--url", url or live.url, "--token", ADMIN_TOKEN]
        result = CliRunner().invoke(cli, [*options, *args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


def submitted_id(result: Result) -> int:
    match = re.search(r"submitted job (\d+)", result.output)
    assert match, result.output
    return int(match.group(1))


def wait_for(api: ApiClient, job_id: int, *statuses: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job = api.job(job_id)
        return job if job["status"] in statuses else None

    job = wait_until(reached, what=f"job {job_id} to reach {statuses}")
    assert job is not None
    return job


def wait_for_chain_end(api: ApiClient, root_id: int) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        tree = api.tree(root_id)
        return tree if all(n["status"] in TERMINAL for n in flatten(tree)) else None

    tree = wait_until(ended, what=f"chain {root_id} to end")
    assert tree is not None
    return tree


def test_submit_wait_prints_the_tree_and_exits_0(jobchain: Run) -> None:
    result = jobchain("submit", str(EXAMPLES / "price-list.json"), "--wait")

    assert result.exit_code == 0, result.output
    root = submitted_id(result)
    assert f"submitted job {root} (155.LPG)" in result.output
    assert re.search(rf"^\s+{root} FINISHED\s+155\.LPG  published$", result.output, re.M)
    assert re.search(r"^\s+\d+ FINISHED\s+38\.CFS  3 fields calculated$", result.output, re.M)


def test_submit_wait_exits_1_when_a_job_failed(jobchain: Run) -> None:
    result = jobchain("submit", str(EXAMPLES / "failing-export.json"), "--wait")

    assert result.exit_code == 1, result.output
    assert re.search(r"FAILED\s+partner-feed\.SHELL  command exited with code 2", result.output)
    assert re.search(r"SKIPPED\s+partner-feed\.NOOP  skipped: job \d+", result.output)
    assert re.search(r"FINISHED\s+pricing-team\.SHELL", result.output)


def test_submit_reads_stdin_and_returns_at_once_without_wait(jobchain: Run, api: ApiClient) -> None:
    payload = json.dumps({"targetObject": "7.NOOP", "nextJobs": [{"targetObject": "8.NOOP"}]})
    result = jobchain("submit", "-", input=payload)

    assert result.exit_code == 0, result.output
    root = submitted_id(result)
    assert {n["status"] for n in flatten(wait_for_chain_end(api, root))} == {"FINISHED"}


def test_submit_wait_timeout_exits_3(jobchain: Run, api: ApiClient, tmp_path: Path) -> None:
    path = tmp_path / "slow.json"
    path.write_text(json.dumps({"targetObject": "SLEEP", "parameters": {"seconds": 30}}))
    result = jobchain("submit", str(path), "--wait", "--timeout", "0.3")

    assert result.exit_code == 3, result.output
    assert "still running after 0.3 s" in result.output
    api.cancel(submitted_id(result))


def test_status_shows_the_tree_indented_and_as_json(jobchain: Run, api: ApiClient) -> None:
    root = api.submit(
        {
            "targetObject": "1.NOOP",
            "nextJobs": [{"targetObject": "2.NOOP", "nextJobs": [{"targetObject": "3.NOOP"}]}],
        }
    )["id"]
    wait_for_chain_end(api, root)

    lines = jobchain("status", str(root)).output.splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["FINISHED", "1.NOOP"],
        ["FINISHED", "2.NOOP"],
        ["FINISHED", "3.NOOP"],
    ]
    indents = [len(line) - len(line.lstrip()) for line in lines]
    assert indents[0] < indents[1] < indents[2]

    tree = json.loads(jobchain("status", str(root), "--json").output)
    assert tree["nextJobs"][0]["nextJobs"][0]["targetObject"] == "3.NOOP"


def test_cancel_a_running_job_then_retry_it(jobchain: Run, api: ApiClient) -> None:
    root = api.submit(
        {
            "targetObject": "SLEEP",
            "parameters": {"seconds": 30},
            "nextJobs": [{"targetObject": "after.NOOP"}],
        }
    )["id"]
    wait_for(api, root, "PROCESSING")

    result = jobchain("cancel", str(root))
    assert result.exit_code == 0, result.output
    assert result.output.strip() in {
        f"job {root}: PROCESSING (stop requested)",
        f"job {root}: CANCELLED",
    }
    wait_for(api, root, "CANCELLED")
    child = api.tree(root)["nextJobs"][0]
    assert child["status"] == "CANCELLED"

    again = jobchain("cancel", str(root))
    assert again.exit_code == 1
    assert f"Error: HTTP 409: job {root} is CANCELLED" in again.output

    retried = jobchain("retry", str(root))
    assert retried.exit_code == 0, retried.output
    assert re.fullmatch(rf"job {root}: retried, now \w+\n", retried.output)
    wait_for(api, root, "PROCESSING")
    assert api.tree(root)["nextJobs"][0]["status"] == "WAITING_FOR_PARENT"
    api.cancel(root)
    wait_for(api, root, "CANCELLED")


def test_retry_of_a_finished_job_is_refused(jobchain: Run, api: ApiClient) -> None:
    root = api.submit({"targetObject": "NOOP"})["id"]
    wait_for(api, root, "FINISHED")

    result = jobchain("retry", str(root))
    assert result.exit_code == 1
    assert "only FAILED or CANCELLED jobs can be retried" in result.output


def test_log_and_events(jobchain: Run, api: ApiClient) -> None:
    root = api.submit({"targetObject": "155.LPG", "parameters": {"stepSeconds": 0}})["id"]
    wait_for(api, root, "FINISHED")

    log = jobchain("log", str(root))
    assert log.exit_code == 0
    assert "INFO recalculating price list 155 (delta, attempt 1)" in log.output
    assert "INFO repriced 80 articles" in log.output

    # A job that never ran (skipped after its parent failed) has no log lines: say so.
    failing = api.submit({"targetObject": "x.FAIL", "nextJobs": [{"targetObject": "y.NOOP"}]})
    skipped = failing["nextJobIds"][0]
    wait_for(api, skipped, "SKIPPED")
    empty = jobchain("log", str(skipped))
    assert empty.exit_code == 0
    assert empty.output == f"no log lines for job {skipped}\n"

    events = jobchain("events", str(root)).output.splitlines()
    assert [line.split()[1:4] for line in events] == [
        ["-", "->", "WAITING_FOR_DISPATCH"],
        ["WAITING_FOR_DISPATCH", "->", "PROCESSING"],
        ["PROCESSING", "->", "FINISHED"],
    ]
    assert events[0].endswith("submit")


def test_list_filters_by_status(jobchain: Run, api: ApiClient) -> None:
    ok = api.submit({"targetObject": "ok.NOOP"})["id"]
    bad = api.submit({"targetObject": "bad.FAIL", "parameters": {"message": "no stock"}})["id"]
    wait_for(api, ok, "FINISHED")
    wait_for(api, bad, "FAILED")

    failed = jobchain("list", "--status", "failed").output.splitlines()
    assert [line.split()[:3] for line in failed] == [[str(bad), "FAILED", "bad.FAIL"]]
    assert failed[0].endswith("no stock")
    everything = jobchain("list", "--limit", "5").output.splitlines()
    assert [int(line.split()[0]) for line in everything] == [bad, ok]

    assert jobchain("list", "--status", "Failed").output.splitlines() == failed
    wrong = jobchain("list", "--status", "DONE")
    assert wrong.exit_code == 2
    assert "'DONE' is not one of 'WAITING_FOR_PARENT', 'WAITING_FOR_DISPATCH'" in wrong.output
    assert "failed" not in wrong.output
    usage = jobchain("list", "--help").output
    assert "[WAITING_FOR_PARENT|WAITING_FOR_DISPATCH|PROCESSING|FINISHED|FAILED|" in usage


def test_job_types_lists_builtin_and_user_types(jobchain: Run) -> None:
    output = jobchain("job-types").output
    assert re.search(r"^NOOP\s+Does nothing", output, re.M)
    assert re.search(r"^LPG\s+Recalculates price list <id>\.LPG", output, re.M)


def test_bad_payload_names_the_bad_field(jobchain: Run, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "targetObject": "155.LPG",
                "nextJobs": [{"targetObject": "38.CFS", "nextJobs": [{"targetObject": "x."}]}],
            }
        )
    )
    result = jobchain("submit", str(path))
    assert result.exit_code == 1
    assert "Error: HTTP 400: invalid ChainedJobInfo" in result.output
    assert "  nextJobs[0].nextJobs[0].targetObject: must be" in result.output

    path.write_text(
        json.dumps({"targetObject": "155.LPG", "nextJobs": [{"targetObject": "9.NOPE"}]})
    )
    result = jobchain("submit", str(path))
    assert result.exit_code == 1
    assert "  nextJobs[0].targetObject: unknown job type 'NOPE'" in result.output


def test_a_file_that_is_not_json_is_reported_before_sending(jobchain: Run, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"targetObject": "NOOP",')
    result = jobchain("submit", str(path))
    assert result.exit_code == 1
    assert f"Error: {path} is not valid JSON" in result.output


def test_unknown_job_is_a_clean_404(jobchain: Run) -> None:
    result = jobchain("status", "999999")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: HTTP 404: no job 999999"


def test_unreachable_server_is_a_clean_error(jobchain: Run) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    result = jobchain("status", "1", url=url)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: cannot reach jobchain at {url}: Connection refused"


def test_url_may_be_given_as_printed_by_serve(jobchain: Run, live: LiveServer) -> None:
    result = jobchain("job-types", url=f"{live.url}/api/v1/")
    assert result.exit_code == 0
    assert "SLEEP" in result.output
