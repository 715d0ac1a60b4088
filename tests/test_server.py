"""The eventlet server: serves, logs access, stops cleanly on SIGTERM and SIGINT, and
answers a request target that is not an absolute path with a 400 fault itself."""

from __future__ import annotations

import json
import logging
import signal
import socket
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import webob

from middleware_kit._wsgi import Environ, StartResponse
from middleware_kit.server import BAD_TARGET_MESSAGE, guard_request_target
from tests.support.servers import LOOPBACK, served

DEMO_ONLY = "[app:main]\nuse = egg:middleware_kit#demo\n"
# The demo at / and again at /v1 behind Paste's urlmap, as in the example inis.
URLMAP_DEMO = (
    "[composite:main]\nuse = egg:Paste#urlmap\n/ = demo\n/v1 = demo\n\n"
    "[app:demo]\nuse = egg:middleware_kit#demo\n"
)


@pytest.fixture
def demo_ini(tmp_path: Path) -> Path:
    path = tmp_path / "demo.ini"
    path.write_text(DEMO_ONLY)
    return path


@pytest.mark.server
def test_serves_and_logs_access(demo_ini: Path) -> None:
    with served(demo_ini) as server:
        status, _, body = server.request("/cats")
        assert (status, body) == (200, b'{"cats": []}')
        status, _, _ = server.request("/nowhere")
        assert status == 404
        server.stop()
        log = server.output()
    assert '"GET /cats HTTP/1.1" 200' in log
    assert '"GET /nowhere HTTP/1.1" 404' in log


@pytest.mark.server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_stops_promptly_with_an_idle_keepalive_connection(demo_ini: Path, sig: int) -> None:
    with served(demo_ini) as server:
        idle = socket.create_connection((LOOPBACK, server.port), timeout=5)
        idle.sendall(b"GET /cats HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        status = server.stop(sig)
        elapsed = time.monotonic() - started
        idle.close()
    assert status == 0
    # The contract is "within a second"; allow slack for a loaded machine.
    assert elapsed < 3.0, f"took {elapsed:.2f} s to stop"
    assert "stopped" in server.output()


@pytest.mark.server
def test_unexpected_exception_is_not_a_traceback_to_the_client(demo_ini: Path) -> None:
    with served(demo_ini) as server:
        status, _, body = server.request("/boom")
        assert status == 500
        assert b"Traceback" not in body
        assert b"secret detail" not in body
        # And the server keeps serving.
        assert server.request("/cats")[0] == 200


@pytest.mark.server
def test_port_in_use_is_one_line_error(demo_ini: Path) -> None:
    import subprocess
    import sys

    with served(demo_ini) as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "middleware_kit.cli",
                "serve",
                str(demo_ini),
                "--port",
                str(server.port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


class Recorder:
    """The app behind the guard: records the environ it saw, answers 200."""

    def __init__(self) -> None:
        self.seen: list[Environ] = []

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        self.seen.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]


def guarded_request(path_info: str, method: str = "GET") -> webob.Request:
    """A request with ``path_info`` as eventlet would put the raw target there."""
    request = webob.Request.blank("/", method=method)
    request.environ["PATH_INFO"] = path_info
    request.environ["RAW_PATH_INFO"] = path_info
    return request


@pytest.mark.parametrize(
    "path_info",
    [
        pytest.param("/", id="root"),
        pytest.param("/v1/cats", id="path"),
        pytest.param("//cats", id="double-slash"),
    ],
)
def test_guard_passes_an_absolute_path_through_untouched(path_info: str) -> None:
    app = Recorder()
    response = guarded_request(path_info).get_response(guard_request_target(app))
    assert (response.status_int, response.body) == (200, b"app")
    assert app.seen[0]["PATH_INFO"] == path_info


@pytest.mark.parametrize(
    ("path_info", "expected"),
    [
        pytest.param("http://127.0.0.1:8080/v1/cats", "/v1/cats", id="http"),
        pytest.param("https://api.example/v1/cats", "/v1/cats", id="https"),
        pytest.param("HTTP://API.example/v1/cats", "/v1/cats", id="upper-case-scheme"),
        pytest.param("http://127.0.0.1:8080", "/", id="no-path"),
        pytest.param("http://user@h/a//b/", "/a//b/", id="userinfo-and-odd-path"),
    ],
)
def test_guard_serves_an_absolute_form_target_with_its_path(path_info: str, expected: str) -> None:
    app = Recorder()
    request = guarded_request(path_info)
    request.environ["HTTP_HOST"] = "client.example"
    response = request.get_response(guard_request_target(app))
    assert response.status_int == 200
    seen = app.seen[0]
    assert (seen["PATH_INFO"], seen["RAW_PATH_INFO"], seen["SCRIPT_NAME"]) == (
        expected,
        expected,
        "",
    )
    assert seen["HTTP_HOST"] == "client.example"


@pytest.mark.parametrize(
    ("method", "path_info"),
    [
        pytest.param("GET", "*", id="asterisk"),
        pytest.param("OPTIONS", "*", id="options-asterisk"),
        pytest.param("GET", "cats", id="relative"),
        pytest.param("GET", "", id="empty"),
        pytest.param("GET", "HTTP/1.1", id="empty-target-as-http09"),
        pytest.param("GET", "ftp://h/x", id="other-scheme"),
        pytest.param("GET", "http:/x", id="one-slash-scheme"),
        pytest.param("CONNECT", "127.0.0.1:443", id="authority-form"),
    ],
)
def test_guard_answers_an_odd_target_with_a_400_fault(method: str, path_info: str) -> None:
    app = Recorder()
    response = guarded_request(path_info, method).get_response(guard_request_target(app))
    assert response.status_int == 400
    assert response.content_type == "application/json"
    assert response.json == {"badRequest": {"code": 400, "message": BAD_TARGET_MESSAGE}}
    assert app.seen == []


def test_guard_answers_a_missing_path_info_with_a_400_fault() -> None:
    app = Recorder()
    request = webob.Request.blank("/")
    del request.environ["PATH_INFO"]
    assert request.get_response(guard_request_target(app)).status_int == 400
    assert app.seen == []


def test_guard_answers_head_with_the_fault_headers_and_no_body() -> None:
    response = guarded_request("*", "HEAD").get_response(guard_request_target(Recorder()))
    assert response.status_int == 400
    assert response.body == b""
    assert int(response.headers["Content-Length"]) > 0


def test_guard_logs_one_escaped_info_line_per_odd_target(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = "\x1b[31mcats\r\n" + "x" * 500
    request = guarded_request(target)
    request.environ["REMOTE_ADDR"] = "192.0.2.7"
    with caplog.at_level(logging.INFO, logger="middleware_kit.server"):
        request.get_response(guard_request_target(Recorder()))
        guarded_request("/cats").get_response(guard_request_target(Recorder()))
    [record] = caplog.records
    assert record.levelno == logging.INFO
    line = record.getMessage()
    assert "\x1b" not in line and "\r" not in line and "\n" not in line
    assert "'\\x1b[31mcats\\r\\n" in line
    assert "192.0.2.7" in line
    assert len(line) < 400


def raw_exchange(port: int, request_line: bytes) -> tuple[bytes, bytes]:
    """Send one request with ``Connection: close``; returns the head and the body."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.server
def test_served_absolute_form_target_reaches_the_app_behind_urlmap(tmp_path: Path) -> None:
    ini = tmp_path / "urlmap.ini"
    ini.write_text(URLMAP_DEMO)
    with served(ini) as server:
        for target in (f"http://{LOOPBACK}:{server.port}/v1/cats", "HTTP://x/v1/cats"):
            head, body = raw_exchange(server.port, b"GET " + target.encode() + b" HTTP/1.1")
            assert head.startswith(b"HTTP/1.1 200 "), (target, head)
            assert body == b'{"cats": []}'


@pytest.mark.server
@pytest.mark.parametrize(
    "request_line",
    [
        pytest.param(b"GET * HTTP/1.1", id="asterisk"),
        pytest.param(b"OPTIONS * HTTP/1.1", id="options-asterisk"),
        pytest.param(b"GET cats HTTP/1.1", id="relative"),
    ],
)
def test_served_odd_target_is_a_400_fault_behind_urlmap(
    tmp_path: Path, request_line: bytes
) -> None:
    ini = tmp_path / "urlmap.ini"
    ini.write_text(URLMAP_DEMO)
    with served(ini) as server:
        head, body = raw_exchange(server.port, request_line)
        assert server.request("/v1/cats")[0] == 200
        server.stop()
        log = server.output()
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert json.loads(body)["badRequest"]["message"] == BAD_TARGET_MESSAGE
    assert "Traceback" not in log
    assert "the request target is not an absolute path" in log
