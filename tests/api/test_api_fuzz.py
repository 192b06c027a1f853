"""Schemathesis against a live server: every check but one, a fixed seed, 80 examples per
operation on one worker (the same requests every run: no time budget).

Any server error, any answer outside the document (status code, content type, headers,
body schema) or any invalid data accepted fails it; a planted 500 in one endpoint makes it
fail (ST101, ST103), as it must. Left out, and why:

- ``positive_data_acceptance``: some rules span several fields or nodes and no schema can
  say them (a JOIN's ``batch`` needs ``expect``; a graph file's dependencies must name its
  own assets, without a cycle), so data the document calls valid is sometimes refused.
- the ``coverage`` phase (past six minutes here) and the ``stateful`` phase (its inferred
  links post bodies built from earlier error answers as if they were valid).

The server runs without workers, so no generated SHELL or HTTP job ever executes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ADMIN_TOKEN, LiveServer

ST = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "st"
SEED = 42
# Per operation, with one worker: the same requests in every run (no time budget).
MAX_EXAMPLES = 60


@pytest.mark.timeout(620)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_api_conforms_to_its_document(live: LiveServer, tmp_path: Path) -> None:
    st = str(ST) if ST.exists() else shutil.which("st")
    if st is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [
            st,
            "run",
            f"{live.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--checks",
            "all",
            # Data the document calls valid but the server refuses for rules that span
            # several fields or nodes (a JOIN's batch and expect, a graph file's names):
            # no schema can say them; see the test's docstring.
            "--exclude-checks",
            "positive_data_acceptance",
            "--phases",
            "examples,fuzzing",
            "--seed",
            str(SEED),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,  # about 2 minutes on a quiet machine; far more under load
        cwd=tmp_path,
        check=False,
    )
    summary = done.stdout[done.stdout.rfind("SUMMARY") :]
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:] + summary
