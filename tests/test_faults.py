"""Faults over HTTP: misbehaving apps and slow clients, through the served chain.

Every hostile app of ``tests/support/hostile_apps.py`` sits behind ``chains.CHAIN`` in one
served eventlet process. A client gets a fault, the server's own 500 or a truncated
body it can tell is truncated; never a complete 200. Slow clients hold green threads,
not the server: others are answered meanwhile, and ``--socket-timeout`` closes them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from tests.support.chains import CHAIN, CLIENT_HEADER_LINES, CLIENT_HEADERS
from tests.support.hostile_apps import urlmap_ini
from tests.support.servers import LOOPBACK, ServedApp, served

pytestmark = pytest.mark.server

SOCKET_TIMEOUT_S = 2.0  # the server's; requests here take milliseconds
CLIENT_TIMEOUT_S = 15.0  # ours: far above it, so a close is the server's doing
STALLED = 16  # of each kind of slow client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    ini = tmp_path_factory.mktemp("faults") / "hostile.ini"
    ini.write_text(urlmap_ini(CHAIN))
    with served(ini, extra_args=["--socket-timeout", str(SOCKET_TIMEOUT_S)]) as app:
        yield app


def exchange(port: int, path: str) -> tuple[int | None, dict[str, str], bytes, bool]:
    """One GET: (status or None when closed first, headers, body, body complete?)."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=CLIENT_TIMEOUT_S)
    try:
        connection.request("GET", path, headers=CLIENT_HEADERS)
        try:
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None, {}, b"", False
        headers = {k.lower(): v for k, v in response.getheaders()}
        try:
            return response.status, headers, response.read(), True
        except http.client.IncompleteRead as truncated:
            return response.status, headers, truncated.partial, False
    finally:
        connection.close()


def assert_still_serving(server: ServedApp) -> None:
    status, _, body = server.request(
        "/healthy/", headers=CLIENT_HEADERS, timeout_s=CLIENT_TIMEOUT_S
    )
    assert (status, body) == (200, b"ok")


def assert_fault(status: int | None, headers: dict[str, str], body: bytes, code: int) -> None:
    assert status == code
    assert headers["content-type"] == "application/json; charset=UTF-8"
    (detail,) = json.loads(body).values()
    assert detail["code"] == code
    assert detail["request_id"] == headers["x-openstack-request-id"]
    assert b"hunter2" not in body and b"Traceback" not in body


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/raises/", id="raises"),
        pytest.param("/firstchunk/", id="raises-before-first-chunk"),
        pytest.param("/noniterable/", id="non-iterable"),
    ],
)
def test_app_failure_before_the_body_is_our_500_fault(server: ServedApp, path: str) -> None:
    status, headers, body, complete = exchange(server.port, path)
    assert complete
    assert_fault(status, headers, body, 500)
    assert_still_serving(server)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/midbody/", id="content-length"),
        pytest.param("/midbody_chunked/", id="chunked"),
    ],
)
def test_raise_mid_body_before_headers_leave_is_the_servers_500(
    server: ServedApp, path: str
) -> None:
    # 2 KiB sit in eventlet's write buffer: nothing has left, the server can still say 500.
    status, _, body, complete = exchange(server.port, path)
    assert (status, body, complete) == (500, b"", True)
    assert_still_serving(server)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/midbody_sent/", id="content-length"),
        pytest.param("/midbody_sent_chunked/", id="chunked"),
    ],
)
def test_raise_mid_body_after_headers_left_is_a_truncation_the_client_sees(
    server: ServedApp, path: str
) -> None:
    status, _, body, complete = exchange(server.port, path)
    assert status == 200
    assert not complete, "a truncated body passed off as a complete 200"
    assert 0 < len(body) < 10 * 8192
    assert_still_serving(server)


def test_no_start_response_is_the_servers_500(server: ServedApp) -> None:
    status, _, body, complete = exchange(server.port, "/nostart/")
    assert (status, body, complete) == (500, b"", True)
    assert_still_serving(server)


def test_no_false_complete_200_across_every_hostile_app(server: ServedApp) -> None:
    """The issue's property, over every app, twice each on fresh connections."""
    hostile = ["raises", "firstchunk", "noniterable", "nostart", "midbody", "midbody_chunked"]
    hostile += ["midbody_sent", "midbody_sent_chunked"]
    for name in hostile * 2:
        status, _, _, complete = exchange(server.port, f"/{name}/")
        assert not (status == 200 and complete), name
        assert status in (None, 200, 500), name
    assert_still_serving(server)


def open_stalled(port: int, first_bytes: bytes) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=CLIENT_TIMEOUT_S)
    sock.sendall(first_bytes)
    return sock


def still_open(sock: socket.socket) -> bool:
    """True when the server has neither answered nor closed (nothing to read yet)."""
    sock.setblocking(False)
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
        sock.settimeout(CLIENT_TIMEOUT_S)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; raises TimeoutError if it never does."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


HALF_HEADERS = b"GET /healthy/ HTTP/1.1\r\nHost: x\r\nX-Slow: "
HALF_BODY = (
    b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
    + CLIENT_HEADER_LINES
    + b"\r\n"
    + b"y" * 10
)


def test_stalled_clients_do_not_block_others_and_the_socket_timeout_closes_them(
    server: ServedApp,
) -> None:
    with contextlib.ExitStack() as stack:
        headers_stalled = [
            stack.enter_context(open_stalled(server.port, HALF_HEADERS)) for _ in range(STALLED)
        ]
        body_stalled = [
            stack.enter_context(open_stalled(server.port, HALF_BODY)) for _ in range(STALLED)
        ]
        for _ in range(STALLED):
            assert_still_serving(server)
        # Answered while every slow client still held its connection: not one after another.
        assert all(still_open(sock) for sock in headers_stalled + body_stalled)

        # Closed unanswered after --socket-timeout (the default, 60 s, would outlast
        # CLIENT_TIMEOUT_S and fail the read with a TimeoutError).
        for sock in headers_stalled:
            assert read_until_closed(sock) == b""
        for sock in body_stalled:  # the app's read timed out: a fault, then closed
            answer = read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 500 "), answer[:80]
            assert b'"computeFault"' in answer
    assert_still_serving(server)


def test_trickled_body_is_read_whole_while_others_are_served(server: ServedApp) -> None:
    body = b"0123456789" * 3
    with open_stalled(
        server.port,
        b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n"
        + CLIENT_HEADER_LINES
        + b"\r\n",
    ) as sock:
        for byte in body:  # one byte at a time, a request from someone else in between
            sock.sendall(bytes([byte]))
            assert_still_serving(server)
        sock.shutdown(socket.SHUT_WR)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n30")
