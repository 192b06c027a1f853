"""A small client for the jobchain API, used by the CLI (and handy in scripts)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from app.domain import jsontext

if TYPE_CHECKING:
    import requests

API_PREFIX = "/api/v1"
# Non-JSON error bodies (a proxy's HTML page, say) are cut to this many characters.
MAX_ERROR_TEXT = 300


class ApiClientError(Exception):
    """The service answered with an error status; ``body`` is its decoded error body."""

    def __init__(self, status: int, body: Any, hint: str = ""):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        text = error.get("message") if isinstance(error, dict) else None
        if text is None:
            text = str(body).strip()[:MAX_ERROR_TEXT] or "(empty response)"
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.body = body
        self.hint = hint  # what the caller may do about it (a 401: which token was sent)

    @property
    def details(self) -> dict[str, Any]:
        """Per-field problems (``{"nextJobs[0].targetObject": [...]}``) of a 400 answer."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        details = error.get("details") if isinstance(error, dict) else None
        return details if isinstance(details, dict) else {}


class ApiUnavailable(Exception):
    """The service could not be reached at all (not running, wrong URL, timed out);
    ``hint`` says where the URL came from when it was not given."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


class ApiClient:
    """One method per API call. ``base_url`` may include the ``/api/v1`` the server prints;
    ``token`` is sent as ``Authorization: Bearer <token>`` with every call. ``url_note`` and
    ``token_note`` are added to the error of an unreachable service and of a 401: where the
    URL came from, where the token was looked for."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        token: str | None = None,
        *,
        url_note: str = "",
        token_note: str = "",
    ):
        self.url_note = url_note
        self.token_note = token_note
        base = base_url.rstrip("/")
        if base.endswith(API_PREFIX):
            base = base[: -len(API_PREFIX)]
        self.base_url = base
        self.timeout = timeout
        self._token = token
        # Made at the first request: `jobchain serve` and `jobchain worker` pass through the
        # command group, which makes a client, and never load requests.
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests

            self._session = requests.Session()
            if self._token:
                self._session.headers["Authorization"] = f"Bearer {self._token}"
        return self._session

    def close(self) -> None:
        """Drop kept-alive connections (a server waits for them before it can stop)."""
        if self._session is not None:
            self._session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        status, body = self._request(method, path, **kwargs)
        if status >= 400:
            raise ApiClientError(status, body, self.token_note if status == 401 else "")
        return body

    def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Status and decoded body. Kept apart from the ``raise`` in :meth:`_call` so that an
        error's traceback does not hold the response, whose open file would keep the
        kept-alive socket open (and a test server waiting for it) after :meth:`close`."""
        import requests

        try:
            response = self.session.request(
                method, f"{self.base_url}{API_PREFIX}{path}", timeout=self.timeout, **kwargs
            )
        except requests.Timeout:
            raise ApiUnavailable(
                f"jobchain at {self.base_url} did not answer within {self.timeout:g} s",
                self.url_note,
            ) from None
        except requests.RequestException as exc:
            raise ApiUnavailable(
                f"cannot reach jobchain at {self.base_url}: {_reason(exc)}", self.url_note
            ) from None
        with response:
            try:
                # Not response.json(): a deep tree is past what the json module decodes.
                return response.status_code, jsontext.loads(response.content)
            except ValueError:
                return response.status_code, response.text

    def health(self) -> dict[str, Any]:
        """Whether the service and its database answer (no token needed)."""
        return self._call("GET", "/health")

    def submit(self, payload: Any) -> dict[str, Any]:
        # Encoded here, not by requests (json=): a deep chain is past what json.dumps encodes.
        return self._call(
            "POST",
            "/jobs",
            data=jsontext.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )

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

    def schedules(self) -> list[dict[str, Any]]:
        return self._call("GET", "/schedules")["items"]

    def schedule(self, schedule_id: int) -> dict[str, Any]:
        return self._call("GET", f"/schedules/{schedule_id}")

    def create_schedule(self, schedule: Any) -> dict[str, Any]:
        return self._call("POST", "/schedules", json=schedule)

    def update_schedule(self, schedule_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/schedules/{schedule_id}", json=changes)

    def delete_schedule(self, schedule_id: int) -> None:
        self._call("DELETE", f"/schedules/{schedule_id}")

    # -- dependency graphs (app/cli/models.py, app/cli/deps.py) ----------------------------

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/models")["items"]

    def model(self, model_id: int) -> dict[str, Any]:
        return self._call("GET", f"/models/{model_id}")

    def create_model(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/models", json=body)

    def update_model(self, model_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/models/{model_id}", json=changes)

    def assets(
        self, model_id: int, transitive: bool = False, **filters: Any
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        if transitive:
            params["transitive"] = "true"
        return self._call("GET", f"/models/{model_id}/assets", params=params or None)["items"]

    def graph(self, model_id: int) -> dict[str, Any]:
        return self._call("GET", f"/models/{model_id}/graph")

    def put_graph(self, model_id: int, graph: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", f"/models/{model_id}/graph", json=graph)

    def order(self, model_id: int) -> dict[str, Any]:
        return self._call("GET", f"/models/{model_id}/order")

    def dependencies(self, model_id: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/models/{model_id}/dependencies")["items"]

    def add_dependency(self, model_id: int, upstream_id: int, downstream_id: int) -> dict[str, Any]:
        body = {"upstreamId": upstream_id, "downstreamId": downstream_id}
        return self._call("POST", f"/models/{model_id}/dependencies", json=body)

    def delete_dependency(self, model_id: int, dependency_id: int) -> None:
        self._call("DELETE", f"/models/{model_id}/dependencies/{dependency_id}")

    # -- declarative automation (app/cli/automation.py) -----------------------------------

    def asset_refreshes(self, model_id: int, asset_id: int, limit: int = 5) -> list[dict[str, Any]]:
        path = f"/models/{model_id}/assets/{asset_id}/refreshes"
        return self._call("GET", path, params={"limit": limit})["items"]

    def asset_evaluations(
        self, model_id: int, asset_id: int, limit: int = 1
    ) -> list[dict[str, Any]]:
        path = f"/models/{model_id}/assets/{asset_id}/evaluations"
        return self._call("GET", path, params={"limit": limit})["items"]

    # -- notification rules (app/cli/alerts.py) -------------------------------------------

    def alert_rules(self) -> list[dict[str, Any]]:
        return self._call("GET", "/notification-rules")["items"]

    def alert_rule(self, rule_id: int) -> dict[str, Any]:
        return self._call("GET", f"/notification-rules/{rule_id}")

    def create_alert_rule(self, rule: Any) -> dict[str, Any]:
        return self._call("POST", "/notification-rules", json=rule)

    def update_alert_rule(self, rule_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/notification-rules/{rule_id}", json=changes)

    def delete_alert_rule(self, rule_id: int) -> None:
        self._call("DELETE", f"/notification-rules/{rule_id}")

    def alert_deliveries(self, rule_id: int, limit: int = 20) -> list[dict[str, Any]]:
        path = f"/notification-rules/{rule_id}/deliveries"
        return self._call("GET", path, params={"limit": limit})["items"]

    # -- runs of a model (app/cli/model_runs.py) ------------------------------------------

    def start_run(self, model_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/models/{model_id}/runs", json=body)

    def run(self, model_id: int, run_id: int) -> dict[str, Any]:
        return self._call("GET", f"/models/{model_id}/runs/{run_id}")


def _reason(exc: requests.RequestException) -> str:
    """The OS-level cause ("Connection refused") instead of urllib3's nested repr."""
    match = re.search(r"\[Errno -?\d+\] ([^)\"']+)", str(exc))
    return match.group(1).strip() if match else type(exc).__name__
