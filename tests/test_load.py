"""Bounded load on the served chain: nothing lost, no 5xx but the provoked, no growth.

``CONNECTIONS`` keep-alive clients on loopback (``tests/support/load.py``) send a fixed
mix through ``chains.CHAIN`` for a warm-up, then for the measured run: ``ci`` (12 s,
every run) or ``soak`` (60 s, ``make soak``; excluded by default). Every request is
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

from tests.support.chains import CLIENT_HEADERS, chain_ini
from tests.support.load import LoadResult, open_fds, rss_kib, run_load
from tests.support.servers import ServedApp, served

pytestmark = pytest.mark.server

CONNECTIONS = 64
WARMUP_S = 3.0
MAX_REQUESTS = 1_000_000  # a bound in count beside the one in time
SETTLE_S = 10.0  # at most, for closed connections to leave the server
RSS_TOLERANCE = 0.10
STATS = "/_stats"
ACCESS = re.compile(
    r'middleware_kit\.server\.access \[[^]]*\] 127\.0\.0\.1 "(\w+) (\S+) HTTP/1\.1" (\d{3}) '
)


@dataclass(frozen=True)
class Kind:
    method: str
    path: str
    body: bytes | None
    status: int  # what the chain must answer


# 32 requests in every 32: one provoked 500 (the demo's /boom) among 2xx and 4xx.
MIX = (
    [Kind("GET", "/cats", None, 200)] * 12
    + [Kind("GET", "/", None, 200)] * 4
    + [Kind("GET", "/whoami", None, 200)] * 4
    + [Kind("HEAD", "/cats", None, 200)] * 4
    + [Kind("POST", "/cats", b'{"cat": not json', 400)] * 3
    + [Kind("GET", "/nowhere", None, 404)] * 4
    + [Kind("GET", "/boom", None, 500)]
)


class Mix:
    """The request factory of ``run_load``; counts the statuses it asks for."""

    def __init__(self) -> None:
        self.expected: collections.Counter[int] = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, worker: int, n: int) -> tuple[str, str, dict[str, str], bytes | None]:
        kind = MIX[(worker * 7 + n) % len(MIX)]
        with self.lock:
            self.expected[kind.status] += 1
        headers = dict(CLIENT_HEADERS)
        if kind.body is not None:
            headers["Content-Type"] = "application/json"
        return kind.method, kind.path, headers, kind.body


@dataclass
class Reading:
    rss_kib: int
    fds: int
    greenlets: int


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServedApp]:
    ini = tmp_path / "load.ini"
    stats_app = "call:tests.support.hostile_apps:stats_factory"
    ini.write_text(chain_ini(mounts={STATS: stats_app}))
    with served(ini) as app:
        yield app


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def settled_reading(server: ServedApp, idle_fds: int) -> Reading:
    """Readings once the load's connections have left (bounded wait)."""
    pid = server.process.pid
    wait_until(lambda: open_fds(pid) <= idle_fds, SETTLE_S)
    fds, rss = open_fds(pid), rss_kib(pid)  # before /_stats opens a connection of its own
    status, _, body = server.request(STATS)
    assert status == 200
    return Reading(rss, fds, json.loads(body)["greenlets"])


def access_counts(server: ServedApp, total: int) -> collections.Counter[int]:
    """Statuses in the access log, /_stats excluded, once ``total`` lines are there."""

    def counted() -> collections.Counter[int]:
        found: collections.Counter[int] = collections.Counter()
        for _method, path, status in ACCESS.findall(server.output()):
            if path != STATS:
                found[int(status)] += 1
        return found

    wait_until(lambda: counted().total() >= total, SETTLE_S)
    return counted()


def assert_all_answered(result: LoadResult, mix: Mix) -> None:
    assert result.errors == 0, result.error_kinds
    assert result.answered == result.sent > 0
    assert result.statuses == mix.expected


@pytest.mark.parametrize(
    "run_s",
    [
        pytest.param(12.0, id="ci"),
        pytest.param(60.0, id="soak", marks=pytest.mark.soak),
    ],
)
def test_bounded_load_loses_nothing_and_grows_nothing(server: ServedApp, run_s: float) -> None:
    pid = server.process.pid
    idle_fds = open_fds(pid)

    warm_mix = Mix()
    warm = run_load(
        server.port,
        warm_mix,
        connections=CONNECTIONS,
        duration_s=WARMUP_S,
        max_requests=MAX_REQUESTS,
    )
    assert_all_answered(warm, warm_mix)
    before = settled_reading(server, idle_fds)

    mix = Mix()
    result = run_load(
        server.port, mix, connections=CONNECTIONS, duration_s=run_s, max_requests=MAX_REQUESTS
    )
    after = settled_reading(server, idle_fds)

    # Every request answered, each with the status the mix asked for: no 5xx but /boom.
    assert_all_answered(result, mix)
    # The server saw and logged as many requests, with the same statuses.
    assert access_counts(server, warm.sent + result.sent) == warm_mix.expected + mix.expected
    # Nothing kept: memory within 10 %, no descriptor or green thread left behind.
    assert abs(after.rss_kib - before.rss_kib) <= RSS_TOLERANCE * before.rss_kib, (before, after)
    assert after.fds <= before.fds == idle_fds, (before, after)
    assert after.greenlets <= before.greenlets, (before, after)
    print(
        f"\n{run_s:.0f} s x {CONNECTIONS} connections: {result.sent} requests "
        f"({result.sent / result.elapsed_s:.0f}/s), statuses {dict(result.statuses)}, "
        f"max latency {result.max_latency_s:.3f} s; RSS {before.rss_kib} -> "
        f"{after.rss_kib} KiB, fds {before.fds} -> {after.fds}, "
        f"greenlets {before.greenlets} -> {after.greenlets}"
    )

    server.stop()
    assert "stopping: 0 request(s) in flight" in server.output()
