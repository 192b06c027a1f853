"""/metrics under gunicorn with several workers (prometheus_client's multiprocess mode):
whichever worker answers a scrape, each process's counters are summed over the node, the
families read from the event log are counted once (not once per worker), and the database
gauges appear once. A real `jobchain worker` process runs the jobs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import requests

from app.store import schema
from tests.api.test_metrics import samples, value
from tests.e2e.test_deployment import BIN, GUNICORN_URL, READY, Process
from tests.helpers import ADMIN_TOKEN, AUTH, wait_until

SCRAPES = 12


def test_gunicorn_workers_export_one_set_of_numbers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobchain.db'}"
    schema.upgrade(url)
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCHAIN_")}
    env.update(
        JOBCHAIN_DATABASE_URL=url,
        JOBCHAIN_API_TOKENS=f"admin:{ADMIN_TOKEN}",
        JOBCHAIN_CALLBACK_SECRETS="secret",
        JOBCHAIN_NOTIFY_POLL_SECONDS="0.1",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    api = Process(
        [str(BIN / "gunicorn"), "-w", "3", "-b", "127.0.0.1:0", "wsgi:app"],
        env,
        tmp_path / "api.log",
    )
    worker = Process([str(BIN / "jobchain"), "worker", "--workers", "2"], env, tmp_path / "w.log")
    try:
        base = api.wait_for(GUNICORN_URL).group(1)
        worker.wait_for(re.compile(READY))

        def scrape() -> str:
            answer = requests.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10)
            assert answer.status_code == 200, answer.text
            return answer.text

        scrape()  # the node starts reading the event log
        for _ in range(6):  # refused callbacks, spread over the gunicorn workers
            requests.post(
                f"{base}/api/v1/jobs/1/callback",
                json={},
                headers={**AUTH, "Connection": "close"},
                timeout=10,
            )
        chain = {"targetObject": "1.NOOP", "nextJobs": [{"targetObject": "2.NOOP"}]}
        requests.post(f"{base}/api/v1/jobs", json=chain, headers=AUTH, timeout=10)

        def ended() -> float:
            found = samples(scrape())
            return value(found, "jobchain_jobs_ended_total", job_type="NOOP", status="FINISHED")

        wait_until(lambda: ended() == 2, timeout=20, what="both jobs counted")
        for _ in range(SCRAPES):
            text = scrape()
            found = samples(text)
            refused = value(
                found, "jobchain_callbacks_total", outcome="refused", reason="invalid_signature"
            )
            assert refused == 6
            assert (
                value(found, "jobchain_jobs_ended_total", job_type="NOOP", status="FINISHED") == 2
            )
            assert text.count("\njobchain_joins_waiting ") == 1
        pids = {p.name for p in multiproc.iterdir() if p.suffix == ".db"}
        assert len(pids) >= 2, pids  # several processes did write their own files
    finally:
        for process in (api, worker):
            if process.proc.poll() is None:
                process.stop()
