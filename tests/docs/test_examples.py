"""Every example in README.md, docs/ and examples/ runs as written: each job payload (a
```json block, a `curl -d '...'` body posted to /api/v1/jobs, an example file, a schedule's
job) is accepted by a real app, and the shell recipe of a signed callback ends a real
EXTERNAL job. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.runner.process_setup import load_job_modules
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store.database import Database
from app.web import create_app
from tests.api.test_external import (  # noqa: F401  (fixtures)
    IntegrationSystem,
    external_job_waiting,
    quick_notify_backoff,
    system,
)
from tests.helpers import ADMIN_TOKEN, AUTH, CALLBACK_SECRET, LiveServer, wait_for_status

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^\s*```(\w*)\n(.*?)^\s*```", re.M | re.S)
CURL_BODY = re.compile(r"-d '(\{.*?\})'", re.S)


def fenced(kind: str) -> Iterator[tuple[str, str]]:
    """(page:line, text) of each fenced block of ``kind`` in the README and the manual."""
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == kind:
                line = text.count("\n", 0, match.start()) + 1
                yield f"{page.relative_to(REPO)}:{line}", match.group(2)


def job_payloads() -> list[Any]:
    """Every job payload the docs and examples show, with where it is."""
    found = []
    for where, block in fenced("json"):
        value = json.loads(block)
        # A payload names a target and has no id yet (a job as JSON, a notification, has).
        if isinstance(value, dict) and "targetObject" in value and "jobId" not in value:
            found.append(pytest.param(value, id=where))
    for where, block in fenced("sh"):
        if "/api/v1/jobs " in block:
            for body in CURL_BODY.findall(block):
                found.append(pytest.param(json.loads(body), id=f"{where} curl"))
    for path in sorted((REPO / "examples").rglob("*.json")):
        value = json.loads(path.read_text())
        if isinstance(value, dict) and "targetObject" in value.get("job", value):
            found.append(pytest.param(value.get("job", value), id=str(path.relative_to(REPO))))
    return found


def test_the_docs_show_job_payloads() -> None:
    where = {str(p.id).split(":")[0] for p in job_payloads()}
    assert {"README.md", "docs/joins.md", "docs/integration.md", "docs/index.md"} <= where


@pytest.mark.parametrize("payload", job_payloads())
def test_every_example_payload_is_accepted(runtime: Runtime, payload: Any) -> None:
    load_job_modules(("examples.pricing_jobs",))  # as `make run` does
    client = create_app(runtime=runtime).test_client()
    response = client.post("/api/v1/jobs", json=payload, headers=AUTH)
    assert response.status_code == 201, response.get_json()


# -- the signed callback from a shell ---------------------------------------------------------


def callback_recipe() -> str:
    (recipe,) = [block for where, block in fenced("sh") if "--data-binary" in block]
    return recipe


def run_recipe(script: str, url: str, job_id: int, cwd: Path) -> dict[str, Any]:
    script = script.replace('"jobId": 42', f'"jobId": {job_id}')
    env = {**os.environ, "CALLBACK_URL": url, "TOKEN": ADMIN_TOKEN, "SECRET": CALLBACK_SECRET}
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_the_callback_recipe_ends_the_job(
    live: LiveServer,
    pool: WorkerPool,
    db: Database,
    system: IntegrationSystem,  # noqa: F811
    tmp_path: Path,
) -> None:
    job_id, url = external_job_waiting(live, db, system)
    answer = run_recipe(callback_recipe(), url, job_id, tmp_path)
    assert (answer["id"], answer["status"]) == (job_id, "FINISHED")
    assert answer["result"] == {"rows": 1250}
    wait_for_status(db, job_id, "FINISHED")


def test_the_same_recipe_with_curl_d_is_refused(
    live: LiveServer,
    pool: WorkerPool,
    db: Database,
    system: IntegrationSystem,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Why the recipe says --data-binary: -d drops the body's newline, and the signature."""
    job_id, url = external_job_waiting(live, db, system)
    answer = run_recipe(callback_recipe().replace("--data-binary", "-d"), url, job_id, tmp_path)
    assert answer["error"]["message"] == "signature does not match", answer
