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
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chains import (
    CHAIN,
    CLIENT_HEADER_LINES,
    CLIENT_HEADERS,
    KEYSTONE_CHAIN,
    LIMITED_GETS,
    OPTIONS,
    chain_ini,
    keystone_options,
    ratelimit_options,
)
from tests.support.hostile_apps import urlmap_ini
from tests.support.keystone import KeystoneServer
from tests.support.load import run_load
from tests.support.servers import (
    LOOPBACK,
    BackgroundServer,
    ServedApp,
    served,
    start_memcached,
    start_redis,
)

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
        for sock in body_stalled:  # the app's read timed out: a 408 fault, then closed
            answer = read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
            assert b"The request body did not arrive in time." in answer
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


# --- the rate limiter's storage killed under load ------------------------------------

OUTAGE_AT_S = 1.0  # into the load run
OUTAGE_S = 1.5
STORAGE_TIMEOUT_S = 0.2
RECONNECT_GRACE_S = 0.5  # for a request in flight while redis-server starts again


@pytest.fixture(
    params=[
        pytest.param(start_redis, id="redis", marks=pytest.mark.redis),
        pytest.param(start_memcached, id="memcached", marks=pytest.mark.memcached),
    ]
)
def storage_server(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[BackgroundServer, str]]:
    server, url = request.param()
    try:
        yield server, url
    finally:
        server.stop()


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
def test_storage_killed_under_load_and_restarted(
    tmp_path: Path, storage_server: tuple[BackgroundServer, str], fail_open: bool
) -> None:
    """SIGKILL redis-server or memcached mid-run, start it again on its port: with
    fail_open every request is answered 200; without, 503 faults exactly while it is
    down. Either way nothing is lost, nothing waits much past storage_timeout, and
    counting resumes."""
    storage_process, url = storage_server
    ratelimit = ratelimit_options(url, storage_timeout=str(STORAGE_TIMEOUT_S))
    options = {**OPTIONS, "ratelimit": ratelimit}
    options["ratelimit"]["fail_open"] = str(fail_open).lower()
    ini = tmp_path / "storage.ini"
    ini.write_text(chain_ini(options=options))

    answers: list[tuple[int, float, float]] = []
    lock = threading.Lock()

    def on_answer(status: int, started: float, ended: float) -> None:
        with lock:
            answers.append((status, started, ended))

    def fresh_user(worker: int, n: int) -> tuple[str, str, dict[str, str], None]:
        # A new user each time: GET /dogs is counted in Redis, never over its limit.
        return "GET", "/dogs", {"X-Auth-Token": f"w{worker}n{n}:p"}, None

    with served(ini) as server:
        outage: dict[str, float] = {}

        def kill_and_restart() -> None:
            # The outage for sure: from SIGKILL reaped to the restart begun; the edges
            # are either way ("before", "after" and "during" below leave them out).
            time.sleep(OUTAGE_AT_S)
            outage["killing"] = time.monotonic()
            storage_process.stop()
            outage["dead"] = time.monotonic()
            time.sleep(OUTAGE_S)
            outage["restarting"] = time.monotonic()
            storage_process.start()
            outage["up"] = time.monotonic()

        killer = threading.Thread(target=kill_and_restart)
        killer.start()
        result = run_load(
            server.port,
            fresh_user,
            connections=16,
            duration_s=OUTAGE_AT_S + OUTAGE_S + 1.5,
            max_requests=200_000,
            on_answer=on_answer,
        )
        killer.join()

        # Counting resumes: a new user's 6th GET /dogs within the hour is a 429 again.
        statuses = [
            server.request("/dogs", headers={"X-Auth-Token": "after:p"})[0]
            for _ in range(LIMITED_GETS + 1)
        ]
        server.stop()
        log = server.output()

    errors = [line for line in log.splitlines() if "Error" in line or "ERROR" in line]
    assert 500 not in result.statuses, "\n".join(errors[:20])
    assert result.errors == 0 and result.answered == result.sent == len(answers)
    assert statuses == [200] * LIMITED_GETS + [429]
    before = [s for s, _, ended in answers if ended < outage["killing"]]
    during = [
        s
        for s, started, ended in answers
        if started > outage["dead"] and ended < outage["restarting"]
    ]
    after = [s for s, started, _ in answers if started > outage["up"] + RECONNECT_GRACE_S]
    assert before and during and after
    assert set(before) == set(after) == {200}
    if fail_open:
        assert set(during) == {200}
        assert "WARNING middleware_kit.ratelimit" in log
    else:
        assert set(during) == {503}
        assert set(result.statuses) == {200, 503}
    # Nobody hung on the dead storage: a bound far below any socket default.
    slowest = max(ended - started for _, started, ended in answers)
    assert slowest < STORAGE_TIMEOUT_S + 2.0
    print(
        f"\nfail_open={fail_open}: {result.sent} requests, {dict(result.statuses)}, "
        f"{len(during)} during the outage, slowest {slowest:.3f} s"
    )


@pytest.mark.keystone
def test_keystone_stopped_under_load_and_restarted(
    keystone: KeystoneServer, tmp_path: Path
) -> None:
    """The keystone chain under load while Keystone stops and starts again: a token
    authtoken has validated goes on being served from its cache (every request 200), a
    token never seen is a 503 fault while Keystone is down and a 200 once it is back,
    without restarting the API."""
    ini = tmp_path / "keystone.ini"
    ini.write_text(
        chain_ini(chain=KEYSTONE_CHAIN, options=keystone_options(keystone.authtoken_settings()))
    )
    user = (keystone.member_username, keystone.member_password, keystone.project_name)
    cached, _ = keystone.issue_token(*user)
    unseen = [keystone.issue_token(*user)[0] for _ in range(2)]  # issued while it is up

    def cached_token(worker: int, n: int) -> tuple[str, str, dict[str, str], None]:
        return "GET", "/cats", {"X-Auth-Token": cached}, None

    with served(ini) as server:
        assert server.request("/cats", headers={"X-Auth-Token": cached})[0] == 200
        outcome: dict[str, int] = {}
        seen_down: list[float] = []

        def stop_and_start() -> None:
            time.sleep(OUTAGE_AT_S)
            try:
                keystone.stop()
                outcome["down"] = server.request("/cats", headers={"X-Auth-Token": unseen[0]})[0]
                seen_down.append(time.monotonic())
            finally:
                keystone.start()
            outcome["up"] = server.request("/cats", headers={"X-Auth-Token": unseen[1]})[0]

        outage = threading.Thread(target=stop_and_start)
        outage.start()
        result = run_load(
            server.port, cached_token, connections=16, duration_s=4.0, max_requests=200_000
        )
        load_ended = time.monotonic()
        outage.join()

    assert outcome == {"down": 503, "up": 200}
    assert seen_down[0] < load_ended  # the load ran on while Keystone was down
    assert result.errors == 0 and result.answered == result.sent > 0
    assert set(result.statuses) == {200}
    print(f"\nkeystone outage: {result.sent} requests with a cached token, all 200")
