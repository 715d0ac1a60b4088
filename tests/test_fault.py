"""The shared fault format: names, body, status line, and send_fault over WSGI."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import webob
from hypothesis import given, settings
from hypothesis import strategies as st

from middleware_kit._wsgi import DRAIN_BYTES, Environ, StartResponse
from middleware_kit.fault import (
    CONTENT_TYPE,
    REQUEST_ID_KEY,
    fault_body,
    generic_message,
    send_fault,
    status_line,
)
from tests.support.servers import served


@pytest.mark.parametrize(
    ("code", "name"),
    [
        pytest.param(400, "badRequest", id="400"),
        pytest.param(401, "unauthorized", id="401"),
        pytest.param(403, "forbidden", id="403"),
        pytest.param(404, "itemNotFound", id="404"),
        pytest.param(405, "badMethod", id="405"),
        pytest.param(409, "conflictingRequest", id="409"),
        pytest.param(413, "overLimit", id="413"),
        pytest.param(415, "badMediaType", id="415"),
        pytest.param(429, "overLimit", id="429"),
        pytest.param(501, "notImplemented", id="501"),
        pytest.param(503, "serviceUnavailable", id="503"),
        pytest.param(500, "computeFault", id="500"),
        pytest.param(418, "computeFault", id="418-other"),
        pytest.param(599, "computeFault", id="599-unknown"),
    ],
)
def test_nova_fault_names(code: int, name: str) -> None:
    assert json.loads(fault_body(code, "m")) == {name: {"code": code, "message": "m"}}


def test_request_id_and_extra_fields() -> None:
    body = json.loads(fault_body(429, "slow down", "req-1", {"retryAfter": "3"}))
    assert body == {
        "overLimit": {
            "code": 429,
            "message": "slow down",
            "retryAfter": "3",
            "request_id": "req-1",
        }
    }
    assert "request_id" not in json.loads(fault_body(400, "x", ""))["badRequest"]


@pytest.mark.parametrize(
    ("code", "line"),
    [
        pytest.param(404, "404 Not Found", id="404"),
        pytest.param(429, "429 Too Many Requests", id="429"),
        pytest.param(500, "500 Internal Server Error", id="500"),
        pytest.param(599, "599 Unknown", id="unknown"),
    ],
)
def test_status_line(code: int, line: str) -> None:
    assert status_line(code) == line


def test_generic_messages_are_plain_text() -> None:
    assert generic_message(599) == "The server could not complete the request."
    for code in (400, 404, 413, 429, 500, 503):
        message = generic_message(code)
        assert message and "\n" not in message and "%" not in message


def recording() -> tuple[list[tuple[Any, ...]], StartResponse]:
    calls: list[tuple[Any, ...]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> Any:
        # two parameters only: send_fault must not pass exc_info when it has none
        calls.append((status, headers))
        return lambda data: None

    return calls, start_response


def test_send_fault_headers_body_and_request_id() -> None:
    calls, start_response = recording()
    environ: Environ = {"REQUEST_METHOD": "GET", REQUEST_ID_KEY: "req-9"}
    body = send_fault(environ, start_response, 413, "too big", headers=[("Retry-After", "1")])
    [(status, headers)] = calls
    assert status.startswith("413 ")
    assert headers[:2] == [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body[0])))]
    assert ("Retry-After", "1") in headers
    assert json.loads(body[0]) == {
        "overLimit": {"code": 413, "message": "too big", "request_id": "req-9"}
    }


def test_send_fault_head_has_headers_and_no_body() -> None:
    calls, start_response = recording()
    body = send_fault({"REQUEST_METHOD": "HEAD"}, start_response, 404, "gone")
    assert body == []
    headers = dict(calls[0][1])
    assert int(headers["Content-Length"]) == len(fault_body(404, "gone"))


def test_send_fault_passes_exc_info() -> None:
    seen: list[Any] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen.append(exc_info)
        return lambda data: None

    try:
        raise ValueError("x")
    except ValueError as exc:
        exc_info = (ValueError, exc, exc.__traceback__)
        send_fault({}, start_response, 500, "m", exc_info=exc_info)
    assert seen == [exc_info]


def test_send_fault_is_a_valid_webob_response() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        return send_fault(environ, start_response, 400, 'Ünïcode "quoted" </script>')

    response = webob.Request.blank("/").get_response(app)
    assert response.status_int == 400
    assert response.content_type == "application/json"
    assert response.charset == "UTF-8"
    assert response.json["badRequest"]["message"] == 'Ünïcode "quoted" </script>'


@settings(max_examples=100)
@given(code=st.integers(400, 599), message=st.text(), request_id=st.none() | st.text())
def test_any_fault_body_is_json_with_its_code(
    code: int, message: str, request_id: str | None
) -> None:
    [(name, detail)] = json.loads(fault_body(code, message, request_id)).items()
    assert (detail["code"], detail["message"]) == (code, message)
    assert detail.get("request_id") == (request_id or None)
    assert name


NOAUTH_INI = """\
[pipeline:main]
pipeline = noauth demo

[filter:noauth]
use = egg:middleware_kit#noauth

[app:demo]
use = egg:middleware_kit#demo
"""


def post_head(length: int, token: bool) -> bytes:
    auth = b"X-Auth-Token: alice:p\r\n" if token else b"X-Auth-Token: :no-user\r\n"
    return b"POST /v1/cats HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n" % (auth, length)


@pytest.mark.server
def test_served_fault_reads_little_of_a_body_then_closes(tmp_path: Path) -> None:
    """A 401 to a 10 GiB upload: the server reads at most DRAIN_BYTES more of it, then
    closes the connection (eventlet alone would read all 10 GiB to keep it)."""
    ini = tmp_path / "noauth.ini"
    ini.write_text(NOAUTH_INI)
    piece, budget, sent = b"x" * 65536, 64 * 2**20, 0
    with served(ini) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.settimeout(5)
            sock.sendall(post_head(10 * 2**30, token=False))
            with pytest.raises(OSError):  # reset or broken pipe: the server closed
                while sent < budget:
                    sock.sendall(piece)
                    sent += len(piece)
        # A small body after a fault is read and dropped: the connection is kept.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.settimeout(5)
            sock.sendall(post_head(3, token=False) + b"abc")
            first = sock.recv(65536)
            sock.sendall(post_head(2, token=True) + b"{}")
            second = sock.recv(65536)
    assert DRAIN_BYTES <= sent < budget
    assert first.startswith(b"HTTP/1.1 401 ")
    assert second.startswith(b"HTTP/1.1 ")  # answered on the same connection
