"""The CLI finds the service and its token without --url and --token: the README's quick
start pasted as it is, on any port, from any directory (SQLite only: the CLI talks HTTP)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from app.cli.locate import service_url
from app.security import admin_token
from tests.e2e.test_crash import serve_command
from tests.helpers import ADMIN_TOKEN, LiveServer

# Nothing from the outer environment decides where the CLI goes.
CLEAN = {"JOBCHAIN_URL": None, "JOBCHAIN_TOKEN": None, "JOBCHAIN_HOST": None, "JOBCHAIN_PORT": None}


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout jobchain is installed from, and a current directory elsewhere."""
    root = tmp_path / "checkout"
    root.mkdir()
    monkeypatch.setattr(admin_token, "CHECKOUT_DIR", root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return root


def jobchain(*args: str, input: str | None = None, **env: str | None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input, env={**CLEAN, **env})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_url_is_where_serve_listens_with_the_same_settings() -> None:
    assert service_url(None, {}).value == "http://127.0.0.1:8080"
    assert service_url(None, {"JOBCHAIN_PORT": "9123"}).value == "http://127.0.0.1:9123"
    anywhere = {"JOBCHAIN_HOST": "0.0.0.0", "JOBCHAIN_PORT": "81"}
    assert service_url(None, anywhere).value == "http://127.0.0.1:81"
    assert service_url(None, {"JOBCHAIN_HOST": "::"}).value == "http://[::1]:8080"
    given = service_url("http://api.example:1", {"JOBCHAIN_PORT": "9123"})
    assert (given.value, given.note) == ("http://api.example:1", "")


def test_the_cli_follows_jobchain_port_and_the_checkouts_token(
    live: LiveServer, checkout: Path
) -> None:
    port = live.url.rsplit(":", 1)[1]
    (checkout / "var").mkdir()
    (checkout / "var" / "admin-token").write_text(ADMIN_TOKEN + "\n")

    listed = jobchain("job-types", JOBCHAIN_PORT=port)
    assert listed.exit_code == 0, listed.output
    assert "SLEEP" in listed.output


def test_a_refused_or_missing_token_says_where_it_looked(live: LiveServer, checkout: Path) -> None:
    url = ["--url", live.url]
    missing = jobchain(*url, "job-types")
    assert missing.exit_code == 1
    here = Path.cwd() / "var" / "admin-token"
    assert (
        f"  no token given, and no saved admin token in {here}, {checkout / 'var/admin-token'}; "
        "pass --token or set JOBCHAIN_TOKEN" in missing.output
    )

    (checkout / "var").mkdir()
    (checkout / "var" / "admin-token").write_text("jc_from_another_database\n")
    refused = jobchain(*url, "job-types")
    assert refused.exit_code == 1
    assert f"the admin token saved in {checkout / 'var/admin-token'} was refused" in refused.output


def test_an_unreachable_default_url_says_where_it_came_from(checkout: Path) -> None:
    port = free_port()  # nothing listens on it
    result = jobchain("ready", "--timeout", "0.2", JOBCHAIN_PORT=str(port))
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: not ready after 0.2 s: cannot reach jobchain at http://127.0.0.1:{port}"
    )
    assert "no --url or JOBCHAIN_URL given: this is JOBCHAIN_PORT" in result.output


def test_the_quick_start_as_pasted_on_another_port(checkout: Path, tmp_path: Path) -> None:
    """`JOBCHAIN_PORT=N make run &`, then at once `jobchain ready` and `jobchain submit`
    from another directory: ready waits for the first start, which has saved its token in
    the checkout's var/ by then."""
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCHAIN_")}
    env.update(JOBCHAIN_PORT=port, JOBCHAIN_WORKERS="1")
    with (tmp_path / "serve.out").open("w") as out:
        server = subprocess.Popen(
            serve_command(), cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        ready = jobchain("ready", "--timeout", "60", JOBCHAIN_PORT=port)
        assert ready.exit_code == 0, ready.output + (tmp_path / "serve.out").read_text()
        assert ready.output == f"jobchain at http://127.0.0.1:{port} is ready\n"
        assert (checkout / "var" / "admin-token").exists()

        payload = '{"targetObject": "NOOP"}'
        submitted = jobchain("submit", "-", "--wait", input=payload, JOBCHAIN_PORT=port)
        assert submitted.exit_code == 0, submitted.output
        assert "FINISHED" in submitted.output
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, (tmp_path / "serve.out").read_text()
    printed = (tmp_path / "serve.out").read_text()
    assert f"saved to {checkout / 'var' / 'admin-token'} (mode 0600)" in printed
