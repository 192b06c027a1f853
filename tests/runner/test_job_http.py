"""HTTP job type, run against a real local HTTP server."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jobs import http as http_module
from jobs.context import JobContext, JobFailed
from tests.helpers import job_context, run_job_type


@dataclass
class Server:
    base: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(ConnectionError):  # the client may have given up (/slow)
                self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            server.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": raw.decode(),
                }
            )
            path = self.path
            if path == "/json":
                self._send(200, b'{"ok": true, "items": [1, 2]}', "application/json")
            elif path == "/text":
                self._send(200, b"plain words", "text/plain; charset=utf-8")
            elif path == "/big":
                self._send(200, b"x" * 20000, "text/plain")
            elif path == "/bigjson":
                payload = json.dumps({"data": "y" * 20000}).encode()
                self._send(200, payload, "application/json")
            elif path.startswith("/status/"):
                code = int(path.rsplit("/", 1)[1])
                self._send(code, json.dumps({"code": code}).encode(), "application/json")
            elif path == "/echo":
                self._send(201, raw or b"{}", "application/json")
            elif path == "/slow":
                server.release.wait(5)
                self._send(200, b"late", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(base="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def make_ctx(**parameters: Any) -> JobContext:
    return job_context("HTTP", **parameters)


run = run_job_type


def test_get_json(server: Server) -> None:
    ctx = make_ctx(url=f"{server.base}/json")
    assert run(ctx) == {"status": 200, "body": {"ok": True, "items": [1, 2]}}
    log = ctx.output.drain()
    assert f"GET {server.base}/json" in log
    assert "HTTP 200" in log


def test_get_text(server: Server) -> None:
    assert run(make_ctx(url=f"{server.base}/text")) == {"status": 200, "body": "plain words"}


@pytest.mark.parametrize("path", ["/big", "/bigjson"])
def test_large_body_is_truncated(server: Server, path: str) -> None:
    result = run(make_ctx(url=f"{server.base}{path}"))
    assert result["truncated"] is True
    assert isinstance(result["body"], str)
    assert len(result["body"]) == http_module.BODY_LIMIT


def test_non_2xx_fails_by_default(server: Server) -> None:
    with pytest.raises(JobFailed) as info:
        run(make_ctx(url=f"{server.base}/status/503"))
    assert info.value.message == f"HTTP 503 from GET {server.base}/status/503"
    assert info.value.result == {"status": 503, "body": {"code": 503}}


def test_expect_status_mismatch_fails(server: Server) -> None:
    with pytest.raises(JobFailed, match=r"HTTP 200 from GET .*/json"):
        run(make_ctx(url=f"{server.base}/json", expectStatus=204))


@pytest.mark.parametrize("expect", [404, [200, 404]])
def test_expect_status_match(server: Server, expect: Any) -> None:
    result = run(make_ctx(url=f"{server.base}/status/404", expectStatus=expect))
    assert result["status"] == 404


def test_post_json_body_and_headers(server: Server) -> None:
    ctx = make_ctx(
        url=f"{server.base}/echo",
        method="post",
        json={"name": "build", "n": 3},
        headers={"X-Token": "abc"},
    )
    result = run(ctx)
    assert result == {"status": 201, "body": {"name": "build", "n": 3}}
    (request,) = server.requests
    assert request["method"] == "POST"
    assert json.loads(request["body"]) == {"name": "build", "n": 3}
    assert request["headers"]["X-Token"] == "abc"
    assert request["headers"]["Content-Type"] == "application/json"


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x"
    with pytest.raises(JobFailed, match=rf"GET {url} failed: .*"):
        run(make_ctx(url=url, timeout=5))


def test_read_timeout(server: Server) -> None:
    with pytest.raises(JobFailed, match=r"timed out after 0\.3 s"):
        run(make_ctx(url=f"{server.base}/slow", timeout=0.3))


def test_abort_before_sending(server: Server) -> None:
    ctx = make_ctx(url=f"{server.base}/json")
    ctx.abort("cancelled")
    assert run(ctx) is None
    assert server.requests == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "url: Missing data for required field"),
        ({"url": "ftp://example.com/x"}, "http:// or https://"),
        ({"url": "http://"}, "http:// or https://"),
        ({"url": "http://h/", "method": "FETCH"}, "method: must be one of"),
        ({"url": "http://h/", "headers": {"A": 1}}, "headers"),
        ({"url": "http://h/", "timeout": 0}, "timeout"),
        ({"url": "http://h/", "timeout": "3"}, "timeout"),
        ({"url": "http://h/", "expectStatus": "200"}, "expectStatus"),
        ({"url": "http://h/", "expectStatus": [200, 99]}, "expectStatus"),
        ({"url": "http://h/", "expectStatus": True}, "expectStatus"),
    ],
)
def test_parameter_validation(params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(JobFailed, match=fragment):
        run(make_ctx(**params))
