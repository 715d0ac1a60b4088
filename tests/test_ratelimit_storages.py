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
from urllib.parse import urlsplit

import pytest
import redis
import webob
from pymemcache.client.base import Client

from benchmarks.bench_ratelimit import counted_sends
from middleware_kit._wsgi import Environ, StartResponse
from middleware_kit.ratelimit import RateLimit, filter_factory, memcached_storage
from middleware_kit.ratelimit.memcached_storage import MemcachedStorage
from middleware_kit.ratelimit.memory import MemoryStorage
from middleware_kit.ratelimit.rules import parse_rules
from middleware_kit.ratelimit.shared_log import COMPACT_SLACK, Replay, new_head, rule_token
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
    # One round trip per admitted request: append and gats pipelined (and an add first,
    # while the log may not exist yet). The denials need none: this process replayed
    # the five times that fill the window.
    assert sends[0] == 5
    assert {k: after[k] - before[k] for k in after} == {
        "cmd_get": 0,
        "cmd_set": 6,
        "cmd_touch": 5,
    }


@pytest.mark.memcached
def test_memcached_one_round_trip_whoever_wrote_last(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    _server, url = memcached_server
    ours, theirs = from_url(url, 1.0), from_url(url, 1.0)
    now = int(T0 * 1000)
    try:
        with counted_sends() as sends:
            for i in range(6):  # alternate, as a round-robin load balancer would
                assert (ours if i % 2 else theirs).hit(["mkrl:lb:k"], [10], [60_000], now + i)[0]
        assert sends[0] == 6
        assert ours.hit(["mkrl:lb:k"], [10], [60_000], now + 9) == (True, [(7, now)])
    finally:
        ours.close()
        theirs.close()


@pytest.mark.memcached
def test_memcached_a_rule_full_elsewhere_denies_without_counting_the_others(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    _server, url = memcached_server
    now = int(T0 * 1000)
    ours, rival = from_url(url, 1.0), from_url(url, 1.0)
    try:
        assert rival.hit(["mkrl:two:k"], [1], [60_000], now)[0]
        outcome = ours.hit(["mkrl:one:k", "mkrl:two:k"], [5, 1], [60_000, 60_000], now)
        assert outcome == (False, [(0, now), (1, now)])
        again = [rival.hit(["mkrl:one:k"], [5], [60_000], now)[0] for _ in range(6)]
        assert again == [True] * 5 + [False]
    finally:
        ours.close()
        rival.close()


@pytest.mark.memcached
def test_memcached_processes_in_threads_agree_on_every_decision(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    """Four storages (as four processes), eight threads, requests of two rule sets
    on one key: the rule all requests share admits exactly its limit, the other at most
    its own, and a fresh replay of the log admits what the callers were told."""
    server, url = memcached_server
    now = int(T0 * 1000)
    storages = [from_url(url, 1.0) for _ in range(4)]
    requests = [
        (["mkrl:a:k", "mkrl:b:k"], [7, 11]) if i % 3 else (["mkrl:b:k"], [11]) for i in range(90)
    ]

    def one(i: int) -> bool:
        keys, limits = requests[i]
        return storages[i % 4].hit(keys, limits, [60_000] * len(keys), now + i // 10)[0]

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            admitted = list(pool.map(one, range(90)))
        probe = Client(("127.0.0.1", server.port))
        log = probe.get("mkrl:log:k")
        probe.close()
    finally:
        for storage in storages:
            storage.close()
    with_a = sum(
        ok for ok, (keys, _limits) in zip(admitted, requests, strict=True) if len(keys) == 2
    )
    assert with_a <= 7  # b may fill up first: then a never reaches its limit
    assert sum(admitted) == 11
    replay = Replay(log.split(b" ", 1)[0])
    replay.feed(log, {})
    assert len(replay.kept) == 11
    assert sum(b"a." in names for _time, _nonce, names, _window in replay.kept) == with_a


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
        assert sum(items) == 40  # one log per user, for both rules
        assert min(items) > 5  # both servers hold a share
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
        # alice is still known to be over her limit (memcached: this process replayed
        # it); anyone else goes through, and so does alice once her window has passed.
        assert post(app).status_int == (429 if shared.name == "memcached" else 200)
        through = [post(app, user="bob") for _ in range(5)]
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
    assert "is not usable now" in caplog.text  # the load-time ping timed out too
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
        assert len(storage.logs) == 10
        assert set(storage.logs) == {f"mkrl:log:{i}" for i in range(40, 50)}
        assert not storage.hit(["mkrl:b:0"], [1], [60_000], now)[0]  # forgotten, still counted
    finally:
        storage.close()


@pytest.mark.memcached
def test_memcached_foreign_values_start_afresh(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    server, url = memcached_server
    probe = Client(("127.0.0.1", server.port))
    probe.set("mkrl:log:k", b"not a log", expire=60)
    probe.close()
    storage = from_url(url, 1.0)
    try:
        now = int(T0 * 1000)
        assert storage.hit(["mkrl:f:k"], [1], [60_000], now) == (True, [(1, now)])
        assert storage.hit(["mkrl:f:k"], [1], [60_000], now)[0] is False
    finally:
        storage.close()


@pytest.mark.memcached
def test_memcached_a_rival_writing_before_every_request_costs_nothing(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    """Where a cas would lose every time, an append cannot: still one round trip each,
    and the rival's requests count."""
    server, url = memcached_server
    rival = from_url(url, 1.0)
    now = int(T0 * 1000)

    class Contended(MemcachedStorage):
        def _pipelined(
            self, server: str, command: bytes, statuses: int, *, read: bool = True
        ) -> tuple[list[bytes], bytes | None, bytes]:
            assert rival.hit(["mkrl:r:k"], [10], [60_000], now)[0]
            return super()._pipelined(server, command, statuses, read=read)

    contended = Contended([("127.0.0.1", server.port)], timeout_s=1.0)
    try:
        with counted_sends() as sends:
            outcomes = [contended.hit(["mkrl:r:k"], [10], [60_000], now) for _ in range(5)]
        assert [o[0] for o in outcomes] == [True] * 5
        assert [o[1][0][0] for o in outcomes] == [2, 4, 6, 8, 10]
        assert sends[0] == 2 * 5  # ours and the rival's, one each
    finally:
        contended.close()
        rival.close()


@pytest.mark.memcached
def test_memcached_a_log_that_keeps_vanishing_is_a_storage_error(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    server, _url = memcached_server

    flusher = Client(("127.0.0.1", server.port))

    class Flushed(MemcachedStorage):
        def _pipelined(
            self, server: str, command: bytes, statuses: int, *, read: bool = True
        ) -> tuple[list[bytes], bytes | None, bytes]:
            flusher.flush_all()
            command = command.replace(b"add ", b"replace ")
            return super()._pipelined(server, command, statuses, read=read)

    flushed = Flushed([("127.0.0.1", server.port)], timeout_s=1.0)
    try:
        with pytest.raises(StorageError, match="vanished"):
            flushed.hit(["mkrl:v:k"], [1], [60_000], int(T0 * 1000))
    finally:
        flushed.close()
        flusher.close()


@pytest.mark.memcached
@pytest.mark.parametrize("clients", [1, 2])
def test_memcached_compaction_bounds_the_log_and_changes_no_decision(
    memcached_server: tuple[BackgroundServer, str], clients: int
) -> None:
    """1500 requests over ~3 minutes on a rule of 3 per second: every decision is the
    memory storage's, the log stays short (it would reach ~1000 entries), and the
    compactions ride along with requests (one client) or cost an extra round trip now
    and then (two in turn, each spoiling the other's cas)."""
    server, url = memcached_server
    storages = [from_url(url, 1.0) for _ in range(clients)]
    reference = MemoryStorage()
    rng = random.Random(7)
    now = int(T0 * 1000)
    probe = Client(("127.0.0.1", server.port))
    longest = 0
    try:
        with counted_sends() as sends:
            for i in range(1500):
                now += rng.choice((0, 50, 100, 400))
                args = (["mkrl:c:k"], [3], [1000], now)
                assert storages[i % clients].hit(*args) == reference.hit(*args)
                if i % 50 == 49:
                    longest = max(longest, len(probe.get("mkrl:log:k").split()))
        round_trips = sends[0] - 30  # the probe's gets
    finally:
        probe.close()
        for storage in storages:
            storage.close()
    if clients == 1:  # every compaction rode along: at most one round trip a request
        assert longest <= 2 * 3 + COMPACT_SLACK + 2
        assert round_trips <= 1500
    else:
        assert longest <= 4 * (3 + COMPACT_SLACK) + 2
        assert round_trips <= 1500 + 1500 // COMPACT_SLACK


def test_memcached_one_request_counts_under_one_key() -> None:
    storage = MemcachedStorage([("127.0.0.1", 1)], timeout_s=0.1)
    with pytest.raises(ValueError, match="one key"):
        storage.hit(["mkrl:a:alice", "mkrl:b:bob"], [1, 1], [1000, 1000], 0)


@pytest.mark.memcached
def test_memcached_compacts_at_once_when_every_cas_along_is_spoiled(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    """Two clients in strict turns, every request appended (a rule never full, a
    window of 2 ms): a compaction sent along with a request always finds the other
    client's entry since, so past the overdue mark one extra round trip compacts."""
    server, url = memcached_server
    clients = [from_url(url, 1.0), from_url(url, 1.0)]
    probe = Client(("127.0.0.1", server.port))
    now, longest = int(T0 * 1000), 0
    try:
        with counted_sends() as sends:
            for i in range(1200):
                now += 1
                assert clients[i % 2].hit(["mkrl:o:k"], [1000], [2], now)[0]
                if i % 40 == 39:
                    longest = max(longest, len(probe.get("mkrl:log:k").split()))
        round_trips = sends[0] - 30  # the probe's gets
    finally:
        probe.close()
        for client in clients:
            client.close()
    assert longest <= 4 * (2 + COMPACT_SLACK) + 2 + 40
    assert 1200 < round_trips <= 1200 + 1200 // (4 * COMPACT_SLACK) + 2


@pytest.mark.memcached
def test_memcached_an_entry_compacted_away_was_denied(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    """Another process compacted the log between our append and our read: our entry is
    gone, which only a denied (or long expired) entry can be."""
    server, _url = memcached_server
    storage = MemcachedStorage([("127.0.0.1", server.port)], timeout_s=1.0)
    rule = rule_token("r", 1, 60_000)
    compacted = new_head() + b" %x,%s,%s" % (1000, b"0" * 12, rule)
    try:
        decision = storage._decide("mkrl:log:k", (compacted, b"1"), b"f" * 12, [rule], 1500)
    finally:
        storage.close()
    assert decision == (False, [(1, 1000)])


@pytest.mark.memcached
def test_memcached_a_log_longer_than_a_read_chunk(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    """3000 requests in a window of a rule of 2999: a log of about 100 KB, read back
    whole on every request (in several chunks of the socket) and still exact."""
    _server, url = memcached_server
    ours, theirs = from_url(url, 1.0), from_url(url, 1.0)
    now = int(T0 * 1000)
    try:
        decisions = [
            (ours, theirs)[i % 2].hit(["mkrl:l:k"], [2999], [3_600_000], now + i)[0]
            for i in range(3000)
        ]
        assert decisions == [True] * 2999 + [False]
        assert theirs.hit(["mkrl:l:k"], [2999], [3_600_000], now + 3000) == (False, [(2999, now)])
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize(
    ("version", "older"),
    [(b"1.4.25", True), (b"1.5.2", True), (b"1.5.3", False), (b"1.6.18", False), (b"x", False)],
)
def test_memcached_too_old_for_gats(version: bytes, older: bool) -> None:
    assert memcached_storage._older(version, memcached_storage.MIN_VERSION) is older


@pytest.mark.memcached
def test_memcached_ping_reaches_a_recent_server(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    _server, url = memcached_server
    storage = from_url(url, 1.0)
    try:
        storage.ping()  # 1.6 here: no StorageError
    finally:
        storage.close()


@pytest.mark.memcached
def test_memcached_remembers_a_bounded_number_of_entries(
    memcached_server: tuple[BackgroundServer, str],
) -> None:
    """Ten users with ten requests each, a budget of 35 remembered entries: only the
    most recently used logs stay in memory, and a forgotten one still counts right."""
    server, _url = memcached_server
    storage = MemcachedStorage([("127.0.0.1", server.port)], timeout_s=1.0, remember_entries=35)
    now = int(T0 * 1000)
    try:
        for user in range(10):
            for i in range(10):
                assert storage.hit([f"mkrl:e:{user}"], [10], [60_000], now + i)[0]
        # Each log holds 20 entries (10 times of its rule, 10 live entries): one fits.
        assert list(storage.logs) == ["mkrl:log:9"]
        assert storage.held == storage.logs["mkrl:log:9"].held() == 20
        assert storage.hit(["mkrl:e:0"], [10], [60_000], now + 11) == (False, [(10, now)])
        assert list(storage.logs) == ["mkrl:log:0"]  # replayed whole, user 9's forgotten
    finally:
        storage.close()
