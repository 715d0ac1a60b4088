"""ratelimit: one contract suite run against memory://, redis:// and memcached://."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import random
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import webob
from pymemcache.client.base import Client

from benchmarks.bench_ratelimit import counted_sends
from middleware_kit._wsgi import Environ, StartResponse
from middleware_kit.ratelimit import RateLimit, filter_factory
from middleware_kit.ratelimit.memcached_storage import MemcachedStorage
from middleware_kit.ratelimit.memory import MemoryStorage
from middleware_kit.ratelimit.rules import parse_rules
from middleware_kit.ratelimit.storage import Storage, StorageError, from_url, hosts
from tests.support.servers import BackgroundServer, free_port, require_binary, start_memcached

T0 = 1_700_000_000.0
SCRIPT_COMMANDS = {"lindex", "llen", "lpush", "pexpire", "rpop"}


@dataclass
class Backend:
    name: str
    url: str
    server: BackgroundServer | None
    made: list[Storage]

    def storage(self, timeout_s: float = 1.0) -> Storage:
        storage = from_url(self.url, timeout_s)
        self.made.append(storage)
        return storage

    def close(self) -> None:
        for storage in self.made:
            storage.close()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("memcached", marks=pytest.mark.memcached),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        made = Backend("memory", "memory://", None, [])
    else:
        server, url = request.getfixturevalue(f"{request.param}_server")
        made = Backend(request.param, url, server, [])
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("memcached", marks=pytest.mark.memcached),
    ]
)
def shared(request: pytest.FixtureRequest) -> Iterator[Backend]:
    server, url = request.getfixturevalue(f"{request.param}_server")
    made = Backend(request.param, url, server, [])
    try:
        yield made
    finally:
        made.close()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def ok_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def post(app: object, path: str = "/servers", user: str = "alice") -> webob.Response:
    request = webob.Request.blank(path, method="POST", headers={"X-User-Id": user})
    return request.get_response(app)


# --- the contract ------------------------------------------------------------------------------


def test_same_outcomes_as_the_reference(backend: Backend) -> None:
    """Two rules on one key and one on another, 400 requests at random times: every
    storage answers exactly what the memory storage (property-tested) answers."""
    rng = random.Random(5)
    reference, storage = MemoryStorage(), backend.storage()
    now = int(T0 * 1000)
    for _ in range(400):
        now += rng.choice((0, 1, 7, 50, 120, 400, 999))
        user = rng.choice(("a", "b"))
        keys = [f"mkrl:t1:{user}", f"mkrl:t2:{user}"]
        limits, windows = [3, 5], [1000, 3000]
        assert storage.hit(keys, limits, windows, now) == reference.hit(keys, limits, windows, now)


def test_a_request_that_read_the_clock_early_is_counted_at_the_newest_time(
    backend: Backend,
) -> None:
    """Processes read the clock before they reach the storage, so a request can arrive
    after one that read it later. It is counted at the newer time (the log stays
    sorted), and a denial never asks for more than one window."""
    clock = Clock()
    storage = backend.storage()
    app = RateLimit(
        ok_app, limits=parse_rules('(POST, "*", .*, 2, MINUTE)'), storage=storage, clock=clock
    )
    clock.now = T0 + 0.5
    assert post(app).status_int == 200
    clock.now = T0  # read 500 ms earlier, arrives later
    assert post(app).status_int == 200
    denied = post(app)
    assert denied.status_int == 429
    assert denied.headers["Retry-After"] == "60"  # not 61: at most one window
    clock.now = T0 + 60.4  # a minute after T0, not yet after T0 + 0.5: both still count
    assert post(app).status_int == 429
    clock.now = T0 + 60.5
    assert [post(app).status_int for _ in range(3)] == [200, 200, 429]


def test_limit_then_429_then_window_passes(backend: Backend) -> None:
    clock = Clock()
    storage = backend.storage()
    app = RateLimit(
        ok_app, limits=parse_rules('(POST, "*", .*, 3, MINUTE)'), storage=storage, clock=clock
    )
    assert [post(app).status_int for _ in range(3)] == [200, 200, 200]
    clock.now += 30
    denied = post(app)
    assert denied.status_int == 429
    assert denied.headers["Retry-After"] == "30"
    assert json.loads(denied.body)["overLimit"]["retryAfter"] == "30"
    assert denied.headers["RateLimit"] == '"post-minute";r=0;t=30'
    assert post(app, user="bob").status_int == 200  # another key
    clock.now += 30
    admitted = post(app)
    assert admitted.status_int == 200
    assert admitted.headers["RateLimit"] == '"post-minute";r=2;t=60'  # all three expired


def test_rules_together_and_denials_not_counted(backend: Backend) -> None:
    clock = Clock()
    rules = parse_rules('(POST, "*", .*, 2, MINUTE);(POST, "/x", ^/x, 1, HOUR)')
    app = RateLimit(ok_app, limits=rules, storage=backend.storage(), clock=clock)
    assert post(app, "/x").status_int == 200
    assert post(app, "/x").status_int == 429
    assert post(app, "/y").status_int == 200
    third = post(app, "/y")
    assert third.status_int == 429
    assert third.headers["Retry-After"] == "60"
    clock.now += 60
    denied = post(app, "/x")
    assert denied.status_int == 429
    assert denied.headers["Retry-After"] == "3540"
    assert denied.headers["RateLimit"] == '"post-minute";r=2;t=0, "post-hour";r=0;t=3540'


def test_concurrent_clients_admit_exactly_n(backend: Backend) -> None:
    """Eight threads, each with its own storage client (as separate processes would
    have), 80 requests of one key against a limit of 20 at one instant."""
    storages = (
        [backend.storage() for _ in range(8)]
        if backend.name != "memory"
        else [backend.storage()] * 8
    )
    now = int(T0 * 1000)

    def one(i: int) -> bool:
        return storages[i % 8].hit(["mkrl:c:k"], [20], [60_000], now)[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        decisions = list(pool.map(one, range(80)))
    assert decisions.count(True) == 20
    assert storages[0].hit(["mkrl:c:k"], [20], [60_000], now + 60_000)[0]


def test_odd_user_ids_are_counted(backend: Backend) -> None:
    app = RateLimit(
        ok_app,
        limits=parse_rules('(POST, "*", .*, 1, MINUTE)'),
        storage=backend.storage(),
        clock=Clock(),
    )
    for user in ("with space", "é" * 300, "x" * 400):
        assert post(app, user=user).status_int == 200
        assert post(app, user=user).status_int == 429


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_one_round_trip_per_request_for_all_rules(
    redis_server: tuple[BackgroundServer, str],
) -> None:
    _server, url = redis_server
    clock = Clock()
    rules = parse_rules(
        '(POST, "*", .*, 5, MINUTE);(*, "*", .*, 100, HOUR);(POST, "/s", ^/s, 9, DAY)'
    )
    storage = from_url(url, 1.0)
    app = RateLimit(ok_app, limits=rules, storage=storage, clock=clock)
    post(app)  # loads the script once
    with redis.Redis.from_url(url) as probe:
        before = probe.info("commandstats")
        statuses = [post(app).status_int for _ in range(10)]
        after = probe.info("commandstats")
    storage.close()
    assert statuses == [200] * 4 + [429] * 6
    calls = {
        name.removeprefix("cmdstat_"): after[name]["calls"]
        - before.get(name, {"calls": 0})["calls"]
        for name in after
    }
    # Commands a script runs are counted too: only EVALSHA (and our INFO) came from a client.
    from_clients = {name: n for name, n in calls.items() if n and name not in SCRIPT_COMMANDS}
    assert from_clients == {"evalsha": 10, "info": 1}


@pytest.mark.memcached
def test_memcached_round_trips(memcached_server: tuple[BackgroundServer, str]) -> None:
    server, url = memcached_server
    clock = Clock()
    app = RateLimit(
        ok_app,
        limits=parse_rules('(POST, "*", .*, 5, MINUTE)'),
        storage=from_url(url, 1.0),
        clock=clock,
    )
    probe = Client(("127.0.0.1", server.port))

    def stats() -> dict[str, int]:
        raw = probe.stats()
        return {k.decode(): int(raw[k]) for k in (b"cmd_get", b"cmd_set", b"cmd_touch")}

    before = stats()
    with counted_sends() as sends:
        statuses = [post(app).status_int for _ in range(8)]
    after = stats()
    probe.close()
    app.storage.close()
    assert statuses == [200] * 5 + [429] * 3
    # Round trips: the first request reads the unknown log, then writes (2); the next
    # four write to the log they remember, each write pipelined with a gets (1 each);
    # each denial reads the log before answering (1 each).
    assert sends[0] == 2 + 4 + 3
    assert {k: after[k] - before[k] for k in after} == {"cmd_get": 9, "cmd_set": 5, "cmd_touch": 0}


@pytest.mark.memcached
def test_memcached_two_round_trips_when_another_process_wrote_last(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    _server, url = memcached_server
    ours, theirs = from_url(url, 1.0), from_url(url, 1.0)
    now = int(T0 * 1000)
    try:
        with counted_sends() as sends:
            for i in range(6):  # alternate, as a round-robin load balancer would
                assert (ours if i % 2 else theirs).hit(["mkrl:lb:k"], [10], [60_000], now + i)[0]
        assert sends[0] == 2 * 6
    finally:
        ours.close()
        theirs.close()


@pytest.mark.memcached
def test_memcached_spreads_keys_over_servers(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    first, _url = memcached_server
    second, _url2 = start_memcached()
    try:
        url = f"memcached://127.0.0.1:{first.port},127.0.0.1:{second.port}"
        storage = from_url(url, 1.0)
        assert isinstance(storage, MemcachedStorage)
        now = int(T0 * 1000)
        for i in range(40):
            keys = [f"mkrl:a:u{i}", f"mkrl:b:u{i}"]
            assert storage.hit(keys, [1, 1], [60_000, 60_000], now)[0]
            assert not storage.hit(keys, [1, 1], [60_000, 60_000], now)[0]
        storage.close()
        items = []
        for each in (first, second):
            probe = Client(("127.0.0.1", each.port))
            items.append(int(probe.stats()[b"curr_items"]))
            probe.close()
        assert sum(items) == 80
        assert min(items) > 10  # both servers hold a share
    finally:
        second.stop()


def test_hosts_parsing() -> None:
    assert hosts("a:1,b:2", 11211) == [("a", 1), ("b", 2)]
    assert hosts("user:pw@a", 6379) == [("a", 6379)]


# --- storage down: fail open, fail closed, recovery ----------------------------------------


def stopped_storage_app(backend: Backend, fail_open: str) -> tuple[object, Clock]:
    clock = Clock()
    factory = filter_factory(
        {},
        limits='(POST, "*", .*, 2, MINUTE)',
        storage_url=backend.url,
        storage_timeout="0.5",
        fail_open=fail_open,
    )
    app = factory(ok_app)
    app.clock = clock  # type: ignore[attr-defined]
    backend.made.append(app.storage)  # type: ignore[attr-defined]
    return app, clock


def test_fail_open_lets_requests_through_and_warns_once_a_minute(
    shared: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    assert shared.server is not None
    app, clock = stopped_storage_app(shared, "true")
    assert [post(app).status_int for _ in range(3)] == [200, 200, 429]
    shared.server.stop()
    with caplog.at_level(logging.WARNING, logger="middleware_kit.ratelimit"):
        through = [post(app) for _ in range(5)]
        clock.now += 61
        through.append(post(app))
    assert [r.status_int for r in through] == [200] * 6
    assert not any("RateLimit" in r.headers for r in through)
    warnings = [r for r in caplog.records if "storage unavailable" in r.getMessage()]
    assert len(warnings) == 2
    assert "letting requests through" in warnings[0].getMessage()
    shared.server.start()  # empty again: counting resumes from zero
    assert [post(app).status_int for _ in range(3)] == [200, 200, 429]


def test_fail_closed_answers_503_until_the_storage_returns(shared: Backend) -> None:
    assert shared.server is not None
    app, _clock = stopped_storage_app(shared, "false")
    assert post(app).status_int == 200
    shared.server.stop()
    down = post(app)
    assert down.status_int == 503
    assert json.loads(down.body)["serviceUnavailable"]["code"] == 503
    shared.server.start()
    assert [post(app).status_int for _ in range(3)] == [200, 200, 429]


def test_memory_never_fails() -> None:
    app = filter_factory({}, limits='(POST, "*", .*, 1, MINUTE)', fail_open="false")(ok_app)
    assert [post(app).status_int for _ in range(2)] == [200, 429]


@pytest.mark.memcached
def test_memcached_gives_back_when_a_later_rule_loses_a_race(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    """Rule one is written, then a rival process takes rule two's last slot before our
    cas: the request is denied after all, and rule one gets its time back."""
    server, url = memcached_server
    now = int(T0 * 1000)
    rival = from_url(url, 1.0)

    class Racing(MemcachedStorage):
        def _write(self, writes: Any, now_ms: int) -> Any:
            if any(key.startswith("mkrl:two") for key, *_rest in writes):
                assert rival.hit(["mkrl:two:k"], [1], [60_000], now)[0]
            return super()._write(writes, now_ms)

    racing = Racing([("127.0.0.1", server.port)], timeout_s=1.0)
    try:
        outcome = racing.hit(["mkrl:one:k", "mkrl:two:k"], [5, 1], [60_000, 60_000], now)
        assert outcome == (False, [(0, now), (1, now)])
        again = [rival.hit(["mkrl:one:k"], [5], [60_000], now)[0] for _ in range(6)]
        assert again == [True] * 5 + [False]
    finally:
        racing.close()
        rival.close()


@pytest.mark.redis
def test_redis_sentinel_finds_the_master(
    redis_server: tuple[BackgroundServer, str], tmp_path: Path
) -> None:
    _master, url = redis_server
    port = urlsplit(url).port
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {port} 1\n"
    )
    sentinel = BackgroundServer(
        [require_binary("redis-server"), str(conf), "--sentinel"], sentinel_port
    )
    storage = from_url(f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster/0", 1.0)
    try:
        storage.ping()
        now = int(T0 * 1000)
        decisions = [storage.hit(["mkrl:s:k"], [2], [60_000], now + i)[0] for i in range(3)]
        assert decisions == [True, True, False]
        with redis.Redis.from_url(url) as direct:  # counted on the master itself
            assert direct.llen("mkrl:s:k") == 2
    finally:
        storage.close()
        sentinel.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel does) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("scheme", ["redis", "memcached"])
@pytest.mark.parametrize(("fail_open", "status"), [("true", 200), ("false", 503)])
def test_a_storage_that_never_answers_is_bounded_by_the_timeout(
    silent_port: int, scheme: str, fail_open: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{scheme}://127.0.0.1:{silent_port}" + ("/0" if scheme == "redis" else "")
    with caplog.at_level(logging.WARNING, logger="middleware_kit.ratelimit"):
        app = filter_factory(
            {},
            limits='(POST, "*", .*, 1, MINUTE)',
            storage_url=url,
            storage_timeout="0.05",
            fail_open=fail_open,
        )(ok_app)
        try:
            assert [post(app).status_int for _ in range(2)] == [status, status]
        finally:
            app.storage.close()  # type: ignore[attr-defined]
    assert "is not reachable now" in caplog.text  # the load-time ping timed out too
    assert "storage unavailable" in caplog.text


@pytest.mark.redis
def test_rediss_over_tls(tmp_path: Path) -> None:
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_cert = f"req -x509 -newkey rsa:2048 -nodes -days 1 -keyout {key} -out {cert}"
    subprocess.run(
        [openssl, *make_cert.split(), "-subj", "/CN=127.0.0.1"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    tls = f"--port 0 --tls-port {port} --tls-auth-clients no --tls-cert-file {cert}"
    tls += f" --tls-key-file {key} --tls-ca-cert-file {cert} --bind 127.0.0.1"
    server = BackgroundServer(
        [require_binary("redis-server"), *tls.split(), "--save", "", "--appendonly", "no"], port
    )
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}&ssl_check_hostname=false"
    app = filter_factory({}, limits='(POST, "*", .*, 1, MINUTE)', storage_url=url)(ok_app)
    try:
        assert [post(app).status_int for _ in range(2)] == [200, 429]
    finally:
        app.storage.close()  # type: ignore[attr-defined]
        server.stop()


@pytest.mark.memcached
def test_memcached_remembers_a_bounded_number_of_logs(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    server, _url = memcached_server
    storage = MemcachedStorage([("127.0.0.1", server.port)], timeout_s=1.0, remember=10)
    try:
        now = int(T0 * 1000)
        for i in range(50):
            assert storage.hit([f"mkrl:b:{i}"], [1], [60_000], now)[0]
        assert len(storage.seen) == 10
        assert set(storage.seen) == {f"mkrl:b:{i}" for i in range(40, 50)}
        assert not storage.hit(["mkrl:b:0"], [1], [60_000], now)[0]  # forgotten, still counted
    finally:
        storage.close()


@pytest.mark.memcached
def test_memcached_foreign_values_start_afresh(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    server, url = memcached_server
    probe = Client(("127.0.0.1", server.port))
    probe.set("mkrl:f:k", b"not a log", expire=60)
    probe.close()
    storage = from_url(url, 1.0)
    try:
        now = int(T0 * 1000)
        assert storage.hit(["mkrl:f:k"], [1], [60_000], now) == (True, [(1, now)])
        assert storage.hit(["mkrl:f:k"], [1], [60_000], now)[0] is False
    finally:
        storage.close()


@pytest.mark.memcached
def test_memcached_endless_races_are_a_storage_error(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    """A rival that writes before every one of our writes: we give up (a storage error,
    which fail_open turns into a pass) instead of looping."""
    server, url = memcached_server
    rival = from_url(url, 1.0)
    now = int(T0 * 1000)

    class Contended(MemcachedStorage):
        def _write(self, writes: Any, now_ms: int) -> Any:
            rival.hit(["mkrl:r:k"], [10_000], [60_000], now)
            return super()._write(writes, now_ms)

        def _pipelined(self, server: str, command: bytes) -> list[bytes]:
            rival.hit(["mkrl:r:k"], [10_000], [60_000], now)
            return super()._pipelined(server, command)

    for multi in (False, True):
        contended = Contended([("127.0.0.1", server.port)], timeout_s=1.0)
        keys = ["mkrl:r:k", "mkrl:r:other"] if multi else ["mkrl:r:k"]
        try:
            with pytest.raises(StorageError, match="kept changing"):
                contended.hit(keys, [10_000] * len(keys), [60_000] * len(keys), now)
        finally:
            contended.close()
    # The key that was written before the other kept losing got its time back.
    assert rival.hit(["mkrl:r:other"], [1], [60_000], now)[0]
    rival.close()
