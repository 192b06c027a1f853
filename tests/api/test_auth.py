"""Bearer tokens and roles: the whole role x endpoint matrix over real HTTP, the tokens CLI,
seeding from JOBCHAIN_API_TOKENS and the first start of ``jobchain serve``.

The matrix enumerates the app's own routes under /api/v1, so an endpoint added later is
checked without touching this file; what each call should need is restated below from the
spec (not read from app/security/roles.py), so the test checks the policy rather than
repeating it.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from flask import Flask

from app.cli import cli
from app.cli.client import ApiClient
from app.runtime import Runtime
from app.security.admin_token import ensure_admin_token
from app.security.roles import required_role
from app.security.tokens import TokenVerifier
from app.store import tokens
from app.store.database import Database
from app.store.tokens import ROLES, TokenConfigError
from app.web import create_app
from tests.e2e.test_crash import ServeProcess, serve_command
from tests.helpers import AUTH, LiveServer, wait_until

OPEN = {"/health", "/api/v1/health", "/openapi.json", "/api/v1/openapi.json"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
AUTH_CODES = {"missing_token", "invalid_token", "insufficient_role"}
BAD_TOKEN = "jc_not-a-token-anyone-was-given"


def expected_role(method: str, path: str) -> str | None:
    """The spec: reads need reader, submitting (a chain, or a model's run) and cancelling a
    run submitter, callbacks and a source's observations integration, anything else admin;
    health and the OpenAPI document are open. Alert rules are admin's alone."""
    if path.startswith("/api/v1/notification-rules"):
        return "admin"
    if method in SAFE_METHODS:
        return None if path in OPEN else "reader"
    if method == "POST" and path == "/api/v1/jobs":
        return "submitter"
    if method == "POST" and re.fullmatch(r"/api/v1/models/\d+/runs(/\d+/cancel)?", path):
        return "submitter"
    if method == "POST" and re.fullmatch(r"/api/v1/jobs/\d+/callback", path):
        return "integration"
    if method == "POST" and re.fullmatch(r"/api/v1/models/\d+/assets/\d+/observations", path):
        return "integration"
    return "admin"


def rank(role: str) -> int:
    return ["reader", "submitter", "integration", "admin"].index(role)


class Caller:
    """Raw HTTP calls to a live server with a chosen token (or none)."""

    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()

    def __call__(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.session.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def call(live: LiveServer) -> Iterator[Caller]:
    caller = Caller(live.url)
    yield caller
    caller.session.close()


@pytest.fixture
def role_tokens(db: Database) -> dict[str, str]:
    """One fresh token per role, plus "revoked": a token revoked before its first use."""
    secrets = {role: tokens.create(db, role, f"test {role}")[1] for role in ROLES}
    revoked, secrets["revoked"] = tokens.create(db, "admin", "test revoked")
    tokens.revoke(db, revoked.id)
    return secrets


def api_calls(app: Flask, ids: dict[str, int]) -> list[tuple[str, str]]:
    """Every (method, path) the app routes under /api/v1, with real ids filled in."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        kind = next((k for k in ids if name.startswith(k)), None)
        return str(ids[kind]) if kind else "1"

    calls = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[^<>:]+:)?([^<>:]+)>", value, rule.rule)
            calls.update((method, path) for method in rule.methods or ())
    return sorted(calls)


def rejection(response: requests.Response) -> tuple[int, str | None] | None:
    """(status, code) if the auth check refused the call, else None."""
    if response.status_code not in (401, 403):
        return None
    if response.request.method == "HEAD":
        return response.status_code, None
    code = response.json()["error"]["code"]
    return (response.status_code, code) if code in AUTH_CODES else None


def test_every_endpoint_for_every_role(
    live: LiveServer, call: Caller, role_tokens: dict[str, str]
) -> None:
    admin = role_tokens["admin"]
    payload = {"targetObject": "A.NOOP", "nextJobs": [{"targetObject": "k.JOIN"}]}
    job = call.session.post(f"{live.url}/api/v1/jobs", json=payload, headers=AUTH).json()
    joins = call("GET", "/api/v1/joins?key=k", admin).json()["items"]
    calls = api_calls(live.app, {"job": job["id"], "join": joins[0]["id"]})
    assert {
        ("POST", "/api/v1/jobs"),
        ("GET", f"/api/v1/jobs/{job['id']}/tree"),
        ("POST", f"/api/v1/jobs/{job['id']}/cancel"),
        ("GET", f"/api/v1/joins/{joins[0]['id']}"),
        ("GET", "/api/v1/health"),
    } <= set(calls)

    wrong: list[str] = []
    for method, path in calls:
        need = expected_role(method, path)
        if need is None:
            response = call(method, path)
            if response.status_code != 200:
                wrong.append(f"{method} {path} without a token: {response.status_code}")
            continue
        for who, token in [
            ("no", None),
            ("a bad", BAD_TOKEN),
            ("a revoked", role_tokens["revoked"]),
        ]:
            code = "missing_token" if token is None else "invalid_token"
            expected = (401, None if method == "HEAD" else code)
            response = call(method, path, token)
            got = rejection(response)
            challenge = response.headers.get("WWW-Authenticate", "")
            if got != expected or not challenge.startswith("Bearer "):
                wrong.append(f"{method} {path} with {who} token: {got}, expected {expected}")
        for role in ROLES:
            response = call(method, path, role_tokens[role])
            got = rejection(response)
            if rank(role) >= rank(need):
                if got is not None:
                    wrong.append(f"{method} {path} as {role} (needs {need}): refused {got}")
                continue
            expected = (403, None if method == "HEAD" else "insufficient_role")
            if got != expected:
                wrong.append(f"{method} {path} as {role} (needs {need}): {got}")
            elif method != "HEAD" and response.json()["error"]["details"]["requiredRole"] != need:
                wrong.append(f"{method} {path} as {role}: {response.json()['error']}")
    assert not wrong, "\n".join(wrong)


# Parameters each type accepts, so the role check is what answers (they are checked first).
VALID_PARAMETERS: dict[str, dict[str, Any]] = {
    "SHELL": {"command": ["true"]},
    "HTTP": {"url": "http://127.0.0.1:9/"},
    "EXTERNAL": {"notifyUrl": "http://127.0.0.1:9/"},
}


@pytest.mark.parametrize(
    ("role", "target", "allowed"),
    [
        ("submitter", "NOOP", True),
        ("submitter", "SHELL", False),
        ("submitter", "HTTP", False),
        ("submitter", "EXTERNAL", False),
        ("integration", "EXTERNAL", True),
        ("integration", "SHELL", False),
        ("admin", "SHELL", True),
    ],
)
def test_job_types_that_reach_outside_need_a_higher_role(
    call: Caller, role_tokens: dict[str, str], role: str, target: str, allowed: bool
) -> None:
    """A submitter must not run shell commands (or reach internal addresses) on the server."""
    node = {"targetObject": f"x.{target}", "parameters": VALID_PARAMETERS.get(target, {})}
    body = {"targetObject": "NOOP", "nextJobs": [node]}
    response = call("POST", "/api/v1/jobs", role_tokens[role], json=body)
    if allowed:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "insufficient_role"
        assert list(error["details"]) == ["nextJobs[0].targetObject"]


def test_health_and_openapi_are_open(call: Caller) -> None:
    for path in ("/health", "/api/v1/health", "/openapi.json", "/api/v1/openapi.json"):
        assert call("GET", path).status_code == 200, path
    spec = call("GET", "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["paths"]["/api/v1/health"]["get"]["security"] == []
    submit = spec["paths"]["/api/v1/jobs"]["post"]
    assert submit["x-required-role"] == "submitter"
    assert {"401", "403"} <= set(submit["responses"])


def test_a_browser_at_the_service_address_lands_on_the_console(call: Caller) -> None:
    home = call("GET", "/", allow_redirects=False)
    assert home.status_code in (302, 303)
    assert home.headers["Location"].endswith("/admin/")
    assert call("HEAD", "/", allow_redirects=False).status_code in (302, 303)
    icon = call("GET", "/favicon.ico")
    assert icon.status_code in (200, 204)
    assert "WWW-Authenticate" not in icon.headers
    # Only reading is open there: anything else still needs the admin role.
    assert call("POST", "/").status_code == 401


def test_errors_are_json_with_a_bearer_challenge(call: Caller, role_tokens: dict[str, str]) -> None:
    missing = call("GET", "/api/v1/jobs")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="jobchain"'
    assert missing.json() == {
        "error": {
            "code": "missing_token",
            "message": "this call needs an 'Authorization: Bearer <token>' header",
            "details": {},
        }
    }
    invalid = call("GET", "/api/v1/jobs", BAD_TOKEN)
    assert invalid.headers["WWW-Authenticate"] == 'Bearer realm="jobchain", error="invalid_token"'
    assert invalid.json()["error"]["code"] == "invalid_token"

    forbidden = call("POST", "/api/v1/jobs/1/cancel", role_tokens["submitter"])
    assert forbidden.status_code == 403
    assert forbidden.headers["Content-Type"].startswith("application/json")
    assert forbidden.json()["error"] == {
        "code": "insufficient_role",
        "message": "POST /api/v1/jobs/1/cancel needs the admin role; this token has submitter",
        "details": {"requiredRole": "admin", "role": "submitter"},
    }
    # A wrong method on a known path is no way around the check.
    assert call("DELETE", "/api/v1/jobs/1", role_tokens["integration"]).status_code == 403
    assert call("DELETE", "/api/v1/jobs/1").status_code == 401


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/v1/jobs/1/nowhere", "/nowhere"])
def test_unknown_paths_are_404_for_any_token_or_none(
    call: Caller, role_tokens: dict[str, str], method: str, path: str
) -> None:
    for who in (None, "reader", "submitter", "admin", "revoked"):
        token = role_tokens[who] if who else None
        response = call(method, path, token)
        assert response.status_code == 404, (who, response.text)
        assert "WWW-Authenticate" not in response.headers
        error = response.json()["error"]
        assert error["code"] == "not_found"
        assert set(error) == {"code", "message", "details"}


def test_lease_owner_is_shown_to_submitters_and_above_only(
    call: Caller, db: Database, role_tokens: dict[str, str]
) -> None:
    body = {"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}]}
    root = call("POST", "/api/v1/jobs", role_tokens["submitter"], json=body).json()
    db.write(lambda conn: conn.exec_driver_sql("UPDATE jobs SET lease_owner = 'worker-host:4242'"))
    reads = [f"/api/v1/jobs/{root['id']}", f"/api/v1/jobs/{root['id']}/tree", "/api/v1/jobs"]

    def jobs_seen(path: str, role: str) -> list[dict[str, Any]]:
        response = call("GET", path, role_tokens[role])
        assert response.status_code == 200, response.text
        found = response.json()
        if "items" in found:
            return list(found["items"])
        seen, stack = [], [found]
        while stack:
            job = stack.pop()
            seen.append(job)
            stack.extend(job.get("nextJobs", []))
        return seen

    for path in reads:
        reader_jobs = jobs_seen(path, "reader")
        assert reader_jobs and all("leaseOwner" not in job for job in reader_jobs), path
        assert "worker-host" not in call("GET", path, role_tokens["reader"]).text
        for role in ("submitter", "integration", "admin"):
            jobs = jobs_seen(path, role)
            assert jobs and all(job["leaseOwner"] == "worker-host:4242" for job in jobs), path


def test_authorization_header_forms(live: LiveServer, role_tokens: dict[str, str]) -> None:
    def status(header: str) -> int:
        url = f"{live.url}/api/v1/job-types"
        return requests.get(url, headers={"Authorization": header}, timeout=30).status_code

    reader = role_tokens["reader"]
    assert status(f"Bearer {reader}") == 200
    assert status(f"bearer   {reader} ") == 200
    assert status(f"Basic {reader}") == 401
    assert status("Bearer") == 401
    assert status(reader) == 401
    assert status(f"Bearer {reader}x") == 401


def test_revoking_a_token_in_use_takes_effect_within_seconds(call: Caller, db: Database) -> None:
    token, secret = tokens.create(db, "reader", "soon revoked")
    assert call("GET", "/api/v1/jobs", secret).status_code == 200  # now it is cached
    tokens.revoke(db, token.id)
    wait_until(
        lambda: call("GET", "/api/v1/jobs", secret).status_code == 401,
        timeout=3,
        interval=0.05,
        what="the revoked token to be refused",
    )


def test_verifier_caches_valid_tokens_only_briefly(db: Database) -> None:
    clock = [100.0]
    verifier = TokenVerifier(db, ttl=1.0, clock=lambda: clock[0])
    token, secret = tokens.create(db, "reader", "cached")
    assert verifier.verify(secret) == token
    tokens.revoke(db, token.id)
    assert verifier.verify(secret) == token  # still within its second
    clock[0] += 1.01
    assert verifier.verify(secret) is None
    assert verifier.verify(BAD_TOKEN) is None


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/health", None),
        ("HEAD", "/api/v1/openapi.json", None),
        ("POST", "/health", "admin"),
        ("GET", "/api/v1/jobs/5/tree", "reader"),
        ("get", "/api/v1/schedules", "reader"),
        ("OPTIONS", "/api/v1/jobs", "reader"),
        ("POST", "/api/v1/jobs", "submitter"),
        ("POST", "/api/v1/jobs/", "admin"),
        ("PUT", "/api/v1/jobs", "admin"),
        ("POST", "/api/v1/jobs/5/callback", "integration"),
        ("POST", "/api/v1/jobs/5/callback/x", "admin"),
        ("POST", "/api/v1/jobs/5/cancel", "admin"),
        ("POST", "/api/v1/jobs/5/retry", "admin"),
        ("POST", "/api/v1/models/5/runs", "submitter"),
        ("POST", "/api/v1/models/5/runs/7/cancel", "submitter"),
        ("POST", "/api/v1/models/5/runs/7", "admin"),
        ("POST", "/api/v1/models/5/assets", "admin"),
        ("POST", "/api/v1/models/5/assets/3/observations", "integration"),
        ("POST", "/api/v1/models/5/assets/3/release", "admin"),
        ("POST", "/api/v1/schedules", "admin"),
        ("PATCH", "/api/v1/schedules/3", "admin"),
        ("DELETE", "/api/v1/tokens/1", "admin"),
        ("POST", "/api/v1/something-new", "admin"),
        ("GET", "/api/v1/notification-rules", "admin"),
        ("GET", "/api/v1/notification-rules/1/deliveries", "admin"),
        ("GET", "/api/v1/notification-rules-x", "reader"),
        ("GET", "/metrics", None),
        ("GET", "/", None),
        ("HEAD", "/favicon.ico", None),
        ("POST", "/", "admin"),
        ("POST", "/metrics", "admin"),
    ],
)
def test_policy_table(method: str, path: str, role: str | None) -> None:
    assert required_role(method, path) == role


# -- seeding from JOBCHAIN_API_TOKENS ---------------------------------------------------------


def test_seeding_is_an_idempotent_upsert(runtime: Runtime, db: Database) -> None:
    settings = replace(runtime.settings, api_tokens=("reader:r-token", "admin:a-token"))
    for _ in range(2):
        create_app(runtime=replace(runtime, settings=settings))
    seeded = {t.name: t.role for t in tokens.list_tokens(db)}
    assert seeded == {"env:admin": "admin", "env:reader": "reader"}
    assert tokens.verify(db, "r-token") is not None

    # The environment may change a token's role; a revoked seeded token stays revoked.
    settings = replace(settings, api_tokens=("submitter:r-token", "admin:a-token"))
    admin = tokens.verify(db, "a-token")
    assert admin is not None
    tokens.revoke(db, admin.id)
    create_app(runtime=replace(runtime, settings=settings))
    promoted = tokens.verify(db, "r-token")
    assert promoted is not None and (promoted.role, promoted.name) == ("submitter", "env:submitter")
    assert tokens.verify(db, "a-token") is None
    assert len(tokens.list_tokens(db)) == 2


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (("boss:s3cret-token",), "entry 1 does not start with a role"),
        (("admin:ok", "s3cret-token"), "entry 2 does not start with a role"),
        (("s3cret-token:admin",), "entry 1 does not start with a role"),
        (("reader:",), "entry 1 (reader) has an empty token"),
        (("reader:s3cret-token", "admin:s3cret-token"), "entry 2 repeats an earlier token"),
    ],
)
def test_a_bad_env_entry_is_a_clear_error_without_the_token(
    entries: tuple[str, ...], message: str, runtime: Runtime
) -> None:
    settings = replace(runtime.settings, api_tokens=entries)
    with pytest.raises(TokenConfigError) as raised:
        create_app(runtime=replace(runtime, settings=settings))
    assert message in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_serve_refuses_to_start_with_a_bad_env_entry(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCHAIN_")}
    env.update(JOBCHAIN_PORT="0", JOBCHAIN_API_TOKENS="boss:s3cret-token")
    done = subprocess.run(
        serve_command(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Error: JOBCHAIN_API_TOKENS entry 1 does not start with a role" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr + done.stdout
    assert not (tmp_path / "var" / "admin-token").exists()


# -- the tokens CLI ---------------------------------------------------------------------------


def jobchain(*args: str, input: str | None = None, **env: str | None) -> Result:
    """The CLI in-process, never with a JOBCHAIN_TOKEN from the outer environment."""
    env = {"JOBCHAIN_TOKEN": None, **env}
    result = CliRunner().invoke(cli, list(args), input=input, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_tokens_cli_create_list_revoke(live: LiveServer, call: Caller, database_url: str) -> None:
    created = jobchain(
        "tokens", "create", "--role", "reader", "--name", "ci", "--database-url", database_url
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert re.fullmatch(r"jc_[A-Za-z0-9_-]{43}", secret), created.stdout
    assert re.fullmatch(r"created reader token \d+ \(ci\); it is not shown again\n", created.stderr)
    assert call("GET", "/api/v1/jobs", secret).status_code == 200
    assert call("POST", "/api/v1/jobs", secret).status_code == 403

    listed = jobchain("tokens", "list", "--database-url", database_url)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if line.endswith("  ci"))
    token_id, role, created_at, revoked = row.split()[:4]
    assert (role, revoked) == ("reader", "-")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created_at)
    assert "env:admin" in listed.output  # the token the test settings seed
    assert secret not in listed.output and tokens.hash_token(secret) not in listed.output

    revoked_now = jobchain("tokens", "revoke", token_id, "--database-url", database_url)
    assert revoked_now.exit_code == 0, revoked_now.output
    assert revoked_now.output == f"revoked token {token_id} (reader, ci)\n"
    wait_until(
        lambda: call("GET", "/api/v1/jobs", secret).status_code == 401,
        timeout=3,
        interval=0.05,
        what="the revoked token to be refused",
    )
    listed = jobchain("tokens", "list", "--database-url", database_url)
    row = next(line for line in listed.output.splitlines() if line.endswith("  ci"))
    assert row.split()[3] != "-"

    unknown = jobchain("tokens", "revoke", "424242", "--database-url", database_url)
    assert (unknown.exit_code, unknown.output) == (1, "Error: no token 424242\n")
    bad_role = jobchain("tokens", "create", "--role", "root", "--name", "x")
    assert bad_role.exit_code == 2 and "'root' is not one of" in bad_role.output


def test_tokens_cli_reads_the_database_url_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    created = jobchain(
        "tokens", "create", "--role", "admin", "--name", "ops", JOBCHAIN_DATABASE_URL=url
    )
    assert created.exit_code == 0, created.output
    db = Database(url)
    try:
        assert tokens.verify(db, created.stdout.strip()) is not None
    finally:
        db.dispose()


def test_client_commands_take_token_option_env_or_saved_file(
    live: LiveServer,
    role_tokens: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    url = ["--url", live.url]
    refused = jobchain(*url, "job-types")
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: HTTP 401: this call needs an 'Authorization")
    assert "pass --token or set JOBCHAIN_TOKEN" in refused.output

    assert jobchain(*url, "--token", role_tokens["reader"], "job-types").exit_code == 0
    assert jobchain(*url, "job-types", JOBCHAIN_TOKEN=role_tokens["reader"]).exit_code == 0
    cancel = jobchain(*url, "cancel", "1", JOBCHAIN_TOKEN=role_tokens["reader"])
    assert cancel.exit_code == 1
    assert "needs the admin role; this token has reader" in cancel.output

    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "admin-token").write_text(role_tokens["admin"] + "\n")
    assert jobchain(*url, "job-types").exit_code == 0
    assert jobchain(*url, "status", "424242").output == "Error: HTTP 404: no job 424242\n"


# -- the first start --------------------------------------------------------------------------


def test_first_admin_token_only_when_none_exists(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "var" / "admin-token"
    secret = ensure_admin_token(db, path)
    assert secret is not None and path.read_text() == secret + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    found = tokens.verify(db, secret)
    assert found is not None and (found.role, found.name) == ("admin", "first-start admin")
    assert ensure_admin_token(db, path) is None
    tokens.revoke(db, found.id)
    assert ensure_admin_token(db, path) not in (None, secret)  # all revoked: a new one


def test_first_start_of_serve_writes_an_admin_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` with no set-up: a token is printed once and saved in var/admin-token, and
    the CLI uses it; a second start creates nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCHAIN_")}
    env.update(JOBCHAIN_HOST="127.0.0.1", JOBCHAIN_PORT="0", JOBCHAIN_WORKERS="1")
    work = tmp_path / "work"
    work.mkdir()
    path = work / "var" / "admin-token"

    first = ServeProcess(env, tmp_path, "first", cwd=work, token=None)
    try:
        wait_until(
            lambda: "first start" in first.stdout_path.read_text(), what="the first-start note"
        )
        secret = path.read_text().strip()
        assert re.fullmatch(r"jc_[A-Za-z0-9_-]{43}", secret)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert requests.get(f"{first.url}/health", timeout=10).status_code == 200
        assert requests.get(f"{first.url}/jobs", timeout=10).status_code == 401
        with ApiClient(first.url, token=secret) as client:
            assert client.jobs()["items"] == []
    finally:
        stop(first)
    output = first.stdout_path.read_text()
    assert output.count(secret) == 1
    assert f"first start: created admin token {secret}" in output

    second = ServeProcess(env, tmp_path, "second", cwd=work, token=None)
    try:
        monkeypatch.chdir(work)  # the CLI finds var/admin-token on its own
        payload = '{"targetObject": "NOOP"}'
        submitted = jobchain("--url", second.url, "submit", "-", "--wait", input=payload)
        assert submitted.exit_code == 0, submitted.output
        assert jobchain("--url", second.url, "list").output.split()[1:3] == ["FINISHED", "NOOP"]
    finally:
        stop(second)
    assert "first start" not in second.stdout_path.read_text()
    assert path.read_text().strip() == secret


def stop(server: ServeProcess) -> None:
    """SIGTERM and wait: the output files are complete once it has exited."""
    server.client.close()
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            assert server.proc.wait(15) == 0, server.stderr
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)
            raise
