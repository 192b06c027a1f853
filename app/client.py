"""A small client for the jobchain API, used by the CLI (and handy in scripts)."""

from __future__ import annotations

from typing import Any

import requests


class ApiClientError(Exception):
    def __init__(self, status: int, body: Any):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"HTTP {status}: {error.get('message', body)}")
        self.status = status
        self.body = body


class ApiClient:
    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(
            method, f"{self.base_url}/api/v1{path}", timeout=self.timeout, **kwargs
        )
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ApiClientError(response.status_code, body)
        return body

    def submit(self, payload: Any) -> dict[str, Any]:
        return self._call("POST", "/jobs", json=payload)

    def job(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def tree(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/tree")

    def jobs(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", "/jobs", params=params)

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/cancel")

    def retry(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/retry")

    def events(self, job_id: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/jobs/{job_id}/events")["items"]

    def log(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/log")

    def job_types(self) -> list[dict[str, Any]]:
        return self._call("GET", "/job-types")["items"]
