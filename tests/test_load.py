"""Bounded load on the served chain: nothing lost, no 5xx but the provoked, no growth.

``CONNECTIONS`` keep-alive clients on loopback (``tests/support/load.py``) send a fixed
mix through ``chains.CHAIN`` for a warm-up, then for the measured run: ``ci`` (12 s,
every run) or ``soak`` (60 s, ``make soak``; excluded by default); and with authtoken
against the real Keystone in noauth's place (6 s, 30 s in the soak). Every request is
counted on both sides: by status on the client, by the access log on the server; the
two agree exactly, and the statuses are the ones the mix asks for (``/boom`` is the
only 500). The server's RSS, open file descriptors and live greenlets after the run
are compared with their readings after the warm-up.
"""

from __future__ import annotations

import collections
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.chains import (
    CLIENT_HEADERS,
    KEYSTONE_CHAIN,
    LIMITED_GETS,
    OPTIONS,
    chain_ini,
    keystone_options,
    ratelimit_options,
)
from tests.support.keystone import KeystoneServer
from tests.support.load import LoadResult, open_fds, rss_kib, run_load, tcp_peer_ports
from tests.support.servers import BackgroundServer, ServedApp, served

pytestmark = pytest.mark.server

CONNECTIONS = 64
WARMUP_S = 3.0
MAX_REQUESTS = 1_000_000  # a bound in count beside the one in time
SETTLE_S = 10.0  # at most, for closed connections to leave the server
RSS_TOLERANCE = 0.10
STATS = "/_stats"
STATS_APP = "call:tests.support.hostile_apps:stats_factory"
# noauth reads "<user>:<project>"; an empty user is its 401.
NOAUTH = {
    "ok": CLIENT_HEADERS,
    "bad": {"X-Auth-Token": ":nobody"},
    "limited": {"X-Auth-Token": "limited:limited"},  # its own GET /dogs budget
}
LIMITED = 0  # a Kind's status: 200 while the user's budget lasts, then 429
ACCESS = re.compile(
    r'middleware_kit\.server\.access \[[^]]*\] 127\.0\.0\.1 "(\w+) (\S+) HTTP/1\.1" (\d{3}) '
)


@dataclass(frozen=True)
class Kind:
    method: str
    path: str
    body: bytes | None
    status: int  # what the chain must answer
    auth: str = "ok"  # which credentials: a key of Mix's ``auth``


# 32 requests in every 32: one provoked 500 (the demo's /boom) among 2xx and 4xx.
MIX = (
    [Kind("GET", "/cats", None, 200)] * 10
    + [Kind("GET", "/cats", None, 401, auth="bad")]
    + [Kind("GET", "/dogs", None, LIMITED, auth="limited")]
    + [Kind("GET", "/", None, 200)] * 4
    + [Kind("GET", "/whoami", None, 200)] * 4
    + [Kind("HEAD", "/cats", None, 200)] * 4
    + [Kind("POST", "/cats", b'{"cat": not json', 400)] * 3
    + [Kind("GET", "/nowhere", None, 404)] * 4
    + [Kind("GET", "/boom", None, 500)]
)


class Mix:
    """The request factory of ``run_load``; counts the statuses it asks for.

    Of the rate-limited requests, the first ``LIMITED_GETS`` of the whole test pass
    (``passes``, shared by the warm-up's mix and the run's) and the rest are 429s:
    which ones pass depends on the server's order, how many does not.
    """

    def __init__(self, auth: dict[str, dict[str, str]], passes: list[int]) -> None:
        self.auth = auth
        self.passes = passes
        self.expected: collections.Counter[int] = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, worker: int, n: int) -> tuple[str, str, dict[str, str], bytes | None]:
        kind = MIX[(worker * 7 + n) % len(MIX)]
        with self.lock:
            status = kind.status
            if status == LIMITED:
                status = 200 if self.passes[0] > 0 else 429
                self.passes[0] -= status == 200
            self.expected[status] += 1
        headers = dict(self.auth[kind.auth])
        if kind.body is not None:
            headers["Content-Type"] = "application/json"
        return kind.method, kind.path, headers, kind.body


@dataclass
class Reading:
    rss_kib: int
    fds: int  # open file descriptors, the pooled storage connections excluded
    pooled: int  # connections to the rate limiter's storage (a pool: it may grow)
    greenlets: int


@pytest.fixture
def storage_server(request: pytest.FixtureRequest) -> tuple[BackgroundServer, str]:
    """The Redis or memcached (the test's ``storage`` parameter) ratelimit counts in."""
    server: tuple[BackgroundServer, str] = request.getfixturevalue(
        f"{request.node.callspec.params['storage']}_server"
    )
    return server


@pytest.fixture
def noauth_server(
    tmp_path: Path, storage_server: tuple[BackgroundServer, str]
) -> Iterator[ServedApp]:
    """CHAIN in front of the demo app, /_stats beside it; ratelimit counts in a real
    Redis or memcached, and a storage failure would be a 503 (fail_open false), not a
    silent pass."""
    _, url = storage_server
    ratelimit = ratelimit_options(url, fail_open="false", storage_timeout="1")
    options = {**OPTIONS, "ratelimit": ratelimit}
    ini = tmp_path / "load.ini"
    ini.write_text(chain_ini(options=options, mounts={STATS: STATS_APP}))
    with served(ini) as app:
        yield app


@pytest.fixture
def keystone_server(tmp_path: Path, keystone: KeystoneServer) -> Iterator[ServedApp]:
    """CHAIN with authtoken (against the real Keystone) in noauth's place."""
    options = keystone_options(keystone.authtoken_settings())
    ini = tmp_path / "load.ini"
    ini.write_text(chain_ini(chain=KEYSTONE_CHAIN, options=options, mounts={STATS: STATS_APP}))
    with served(ini) as app:
        yield app


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def own_fds(pid: int, pool_port: int | None) -> tuple[int, int]:
    """(open descriptors but the storage connections, storage connections)."""
    pooled = tcp_peer_ports(pid)[pool_port] if pool_port else 0
    return open_fds(pid) - pooled, pooled


def settled_reading(server: ServedApp, idle_fds: int, pool_port: int | None) -> Reading:
    """Readings once the load's connections have left (bounded wait)."""
    pid = server.process.pid
    wait_until(lambda: own_fds(pid, pool_port)[0] <= idle_fds or settled(pid), SETTLE_S)
    fds, pooled = own_fds(pid, pool_port)  # before /_stats opens a connection of its own
    rss = rss_kib(pid)
    status, _, body = server.request(STATS)
    assert status == 200
    return Reading(rss, fds, pooled, json.loads(body)["greenlets"])


def settled(pid: int) -> bool:
    """No descriptor closed in the last half second."""
    before = open_fds(pid)
    time.sleep(0.5)
    return open_fds(pid) >= before


def access_counts(server: ServedApp) -> collections.Counter[int]:
    """Statuses in the access log so far, /_stats excluded."""
    found: collections.Counter[int] = collections.Counter()
    for _method, path, status in ACCESS.findall(server.output()):
        if path != STATS:
            found[int(status)] += 1
    return found


def assert_all_answered(result: LoadResult, mix: Mix) -> None:
    assert result.errors == 0, result.error_kinds
    assert result.answered == result.sent > 0
    assert result.statuses == mix.expected


def load_and_check(
    server: ServedApp,
    auth: dict[str, dict[str, str]],
    warmup_s: float,
    run_s: float,
    pool_port: int | None = None,
) -> str:
    """Warm up, read, run, read, and check everything; returns a one-line summary."""
    pid = server.process.pid
    idle_fds = own_fds(pid, pool_port)[0]
    logged_before = access_counts(server)

    passes = [LIMITED_GETS]
    warm_mix = Mix(auth, passes)
    warm = run_load(
        server.port,
        warm_mix,
        connections=CONNECTIONS,
        duration_s=warmup_s,
        max_requests=MAX_REQUESTS,
    )
    assert_all_answered(warm, warm_mix)
    before = settled_reading(server, idle_fds, pool_port)

    mix = Mix(auth, passes)
    result = run_load(
        server.port, mix, connections=CONNECTIONS, duration_s=run_s, max_requests=MAX_REQUESTS
    )
    after = settled_reading(server, idle_fds, pool_port)

    # Every request answered, each with the status the mix asked for: no 5xx but /boom.
    assert_all_answered(result, mix)
    # The server saw and logged as many requests, with the same statuses.
    expected = logged_before + warm_mix.expected + mix.expected
    wait_until(lambda: access_counts(server).total() >= expected.total(), SETTLE_S)
    assert access_counts(server) == expected
    # Nothing kept: memory within 10 %, no descriptor or green thread left behind.
    assert abs(after.rss_kib - before.rss_kib) <= RSS_TOLERANCE * before.rss_kib, (before, after)
    assert after.fds <= before.fds == idle_fds, (before, after)
    assert after.pooled <= CONNECTIONS, (before, after)  # bounded by the concurrency
    assert after.greenlets <= before.greenlets, (before, after)

    server.stop()
    assert "stopping: 0 request(s) in flight" in server.output()
    return (
        f"{run_s:.0f} s x {CONNECTIONS} connections: {result.sent} requests "
        f"({result.sent / result.elapsed_s:.0f}/s), statuses {dict(result.statuses)}, "
        f"max latency {result.max_latency_s:.3f} s; RSS {before.rss_kib} -> "
        f"{after.rss_kib} KiB, fds {before.fds} -> {after.fds} "
        f"(+ {before.pooled} -> {after.pooled} storage connections), "
        f"greenlets {before.greenlets} -> {after.greenlets}"
    )


@pytest.mark.parametrize(
    ("storage", "run_s"),
    [
        pytest.param("redis", 12.0, id="redis-ci", marks=pytest.mark.redis),
        pytest.param("memcached", 6.0, id="memcached-ci", marks=pytest.mark.memcached),
        pytest.param("redis", 60.0, id="redis-soak", marks=[pytest.mark.redis, pytest.mark.soak]),
        pytest.param(
            "memcached", 60.0, id="memcached-soak", marks=[pytest.mark.memcached, pytest.mark.soak]
        ),
    ],
)
def test_bounded_load_loses_nothing_and_grows_nothing(
    noauth_server: ServedApp,
    storage_server: tuple[BackgroundServer, str],
    storage: str,
    run_s: float,
) -> None:
    server, _ = storage_server
    print("\n" + load_and_check(noauth_server, NOAUTH, WARMUP_S, run_s, server.port))


@pytest.mark.keystone
@pytest.mark.parametrize(
    "run_s",
    [
        pytest.param(6.0, id="ci"),
        pytest.param(30.0, id="soak", marks=pytest.mark.soak),
    ],
)
def test_keystone_chain_under_load_loses_nothing_and_grows_nothing(
    keystone: KeystoneServer, keystone_server: ServedApp, run_s: float
) -> None:
    """The same with a real token, validated by Keystone before the load and then taken
    from authtoken's cache; the 401s come from requests without a token (a bad token
    would cost one Keystone call, then be answered from authtoken's invalid-token
    cache: test_hostile's test_a_bad_token_costs_keystone_one_validation)."""
    token, _ = keystone.issue_token(
        keystone.member_username, keystone.member_password, keystone.project_name
    )
    auth = {"ok": {"X-Auth-Token": token}, "bad": {}, "limited": {"X-Auth-Token": token}}
    assert keystone_server.request("/cats", headers=auth["ok"])[0] == 200  # one validation
    wait_until(lambda: access_counts(keystone_server)[200] == 1, SETTLE_S)  # logged after
    print("\n" + load_and_check(keystone_server, auth, 2.0, run_s))
