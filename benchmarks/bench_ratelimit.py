"""Rate limiting: decisions per second and round trips per request, per storage.

One process, one thread. For each storage (memory, memcached, Redis; the servers are
started on loopback ports like the tests' fixtures) the same one-rule decision, 1000
per minute per key over 10,000 keys (users) in turn, so that nothing is denied and no
log grows long: our filter's full WSGI call and its storage's ``hit`` alone; the
``limits`` library (moving window where its storage has one, sliding-window counter)
on the same server; and the bare client's floor (redis-py ``INCR`` + ``EXPIRE`` in one
pipeline, pymemcache ``incr``, a dict increment). Round trips are the ``sendall``
calls on client sockets during 200 decisions, divided by 200. Each row is the median of
the repeats. "2 clients in turn" is two storage clients taking turns on every key, as
two API processes behind a round-robin balancer would: each sees the other's entries
in its reply (memcached) or runs the same script (Redis), still one round trip. The
bare floor is a counter, not an exact limit.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from benchmarks import Row, first_line

TITLE = "Rate limiting: decisions per second and round trips per request"

USERS = 10_000
LIMIT = 1000
RULE = f'(POST, "*", .*, {LIMIT}, MINUTE)'
ROUND_TRIP_CALLS = 200
WARM, WARM_QUICK = 2000, ROUND_TRIP_CALLS
# (repeats, seconds per repeat, max calls per repeat)
FULL = (25, 0.1, 200_000)
QUICK = (2, 0.01, 200)
FLOOR_BAR = 2.0


def _users() -> list[str]:
    return [f"user-{i}" for i in range(USERS)]


def _subjects(
    storage: str, url: str, closers: list[Callable[[], object]]
) -> list[tuple[str, Callable[[int], object]]]:
    """(implementation, one decision for call number i) on one storage; what to close
    afterwards is appended to ``closers``."""
    import limits
    import limits.storage
    import limits.strategies

    from middleware_kit.ratelimit import RateLimit
    from middleware_kit.ratelimit.rules import parse_rules
    from middleware_kit.ratelimit.storage import from_url

    users = _users()
    ours = from_url(url, 1.0)
    app = RateLimit(_ok, limits=parse_rules(RULE), storage=from_url(url, 1.0))
    closers += [ours.close, app.storage.close]
    environs = [
        {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/cats", "HTTP_X_USER_ID": u} for u in users
    ]

    def filter_call(i: int) -> object:
        return app(environs[i % USERS].copy(), _start_response)

    # Each subject counts under its own keys, so that none fills another's windows
    # (the filter's keys are mkrl:<rule id>:u:<user>).
    keys = [f"mkrl:bench-hit:u:{u}" for u in users]
    turn_keys = [f"mkrl:bench-turn:u:{u}" for u in users]

    def storage_hit(i: int) -> object:
        return ours.hit([keys[i % USERS]], [LIMIT], [60_000], int(time.time() * 1000))

    item = limits.RateLimitItemPerMinute(LIMIT)
    limits_url = {"memory": "memory://", "memcached": url, "redis": url}[storage]
    subjects: list[tuple[str, Callable[[int], object]]] = [
        ("middleware_kit filter (WSGI call)", filter_call),
        ("middleware_kit storage.hit", storage_hit),
    ]
    if storage != "memory":
        # Two clients taking turns on every key, as two processes behind a round-robin
        # balancer would: neither saw the other's last write.
        pair = (from_url(url, 1.0), from_url(url, 1.0))
        closers += [pair[0].close, pair[1].close]

        def alternating_hit(i: int) -> object:
            client = pair[(i // USERS) % 2]
            return client.hit([turn_keys[i % USERS]], [LIMIT], [60_000], int(time.time() * 1000))

        subjects.append(("middleware_kit storage.hit, 2 clients in turn", alternating_hit))
    strategies = [("sliding-window-counter", limits.strategies.SlidingWindowCounterRateLimiter)]
    if storage != "memcached":  # limits' memcached storage has no moving window
        strategies.insert(0, ("moving-window", limits.strategies.MovingWindowRateLimiter))
    for name, strategy in strategies:
        their_storage = limits.storage.storage_from_string(limits_url)
        limiter = strategy(their_storage)
        closers.append(lambda s=their_storage: _close_limits(s))

        def limits_hit(i: int, limiter: Any = limiter) -> object:
            return limiter.hit(item, "bench", users[i % USERS])

        subjects.append((f"limits {name}", limits_hit))
    subjects.append(("bare client floor", _floor(storage, url, users, closers)))
    return subjects


def _close_limits(storage: Any) -> None:
    """limits has no close(): close the client its storage made, if it made one."""
    client = getattr(getattr(storage, "local_storage", None), "storage", None)
    if client is None and hasattr(storage, "storage"):
        client = storage.storage
    close = getattr(client, "close", None)
    if close is not None:
        close()


def _floor(
    storage: str, url: str, users: Sequence[str], closers: list[Callable[[], object]]
) -> Callable[[int], object]:
    if storage == "redis":
        import redis

        client = redis.Redis.from_url(url)
        closers.append(client.close)

        def redis_floor(i: int) -> object:
            pipe = client.pipeline(transaction=False)
            pipe.incr(users[i % USERS])
            pipe.expire(users[i % USERS], 60)
            return pipe.execute()

        return redis_floor
    if storage == "memcached":
        from pymemcache.client.base import Client

        host, port = url.removeprefix("memcached://").split(":")
        mc = Client((host, int(port)), no_delay=True)
        closers.append(mc.close)
        for user in users:
            mc.set(user, b"0", expire=60, noreply=True)

        def memcached_floor(i: int) -> object:
            return mc.incr(users[i % USERS], 1)

        return memcached_floor
    counts: dict[str, int] = {}

    def dict_floor(i: int) -> object:
        user = users[i % USERS]
        counts[user] = counts.get(user, 0) + 1
        return counts[user]

    return dict_floor


def _ok(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "0")])
    return []


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


@contextlib.contextmanager
def counted_sends() -> Iterator[list[int]]:
    """Count ``sendall``/``send`` calls on every socket while inside."""
    count = [0]
    originals = socket.socket.sendall, socket.socket.send

    def sendall(self: socket.socket, *args: Any) -> Any:
        count[0] += 1
        return originals[0](self, *args)

    def send(self: socket.socket, *args: Any) -> Any:
        count[0] += 1
        return originals[1](self, *args)

    socket.socket.sendall, socket.socket.send = sendall, send  # type: ignore[method-assign]
    try:
        yield count
    finally:
        socket.socket.sendall, socket.socket.send = originals  # type: ignore[method-assign]


def _time(subjects: Sequence[Callable[[int], object]], quick: bool) -> list[float]:
    """Median ns per decision of each subject; the repeats go round-robin over the
    subjects, so that the load of a shared machine spreads over all of them alike."""
    repeats, seconds, max_calls = QUICK if quick else FULL
    samples: list[list[float]] = [[] for _ in subjects]
    start = 2 * USERS
    for _ in range(repeats):
        for fn, out in zip(subjects, samples, strict=True):
            calls = 0
            began = time.perf_counter_ns()
            deadline = began + int(seconds * 1e9)
            while calls < max_calls:
                for i in range(start, start + 50):
                    fn(i)
                start += 50
                calls += 50
                if time.perf_counter_ns() >= deadline:
                    break
            out.append((time.perf_counter_ns() - began) / calls)
    return [statistics.median(values) for values in samples]


def _servers() -> Iterator[tuple[str, str, Callable[[], None]]]:
    from tests.support.servers import start_memcached, start_redis

    yield "memory", "memory://", lambda: None
    # One worker thread, as Redis has: with memcached's default four, a connection's
    # round trip took 26 or 70 µs by the worker thread it landed on (whatever the
    # client), which decided the ratios more than the clients did.
    starts = (("memcached", lambda: start_memcached(threads=1)), ("redis", start_redis))
    for name, start in starts:
        try:
            server, url = start()
        except Exception as exc:  # a missing binary is a row, not a crash
            yield name, f"skipped: {first_line(exc)}", lambda: None
            continue
        yield name, url, server.stop


def memory_rows(quick: bool) -> list[Row]:
    """What one process holds for 100k active keys (keystone-like 32-hex user ids): the
    dict, the key strings and the logs, summed with ``sys.getsizeof`` (tracemalloc
    would take minutes for 12 million requests). The first request of each key goes
    through ``hit``; the others are appended as ``hit`` appends them."""
    import sys

    from middleware_kit.ratelimit.memory import MemoryStorage
    from middleware_kit.ratelimit.rules import DEFAULT_RULES

    prefix = f"mkrl:{DEFAULT_RULES[0].id}:u:"
    keys_count = 1000 if quick else 100_000
    rows: list[Row] = []
    for per_key in (1, 10, 120):
        storage = MemoryStorage()
        now = 1_700_000_000_000
        for i in range(keys_count):
            storage.hit([f"{prefix}{i:032x}"], [120], [60_000], now)
        (logs,) = storage._windows.values()
        for log in logs.by_key.values():
            for j in range(1, per_key):
                log.append(now + j)
        used = sys.getsizeof(logs.by_key) + sum(
            sys.getsizeof(key) + sys.getsizeof(log) for key, log in logs.by_key.items()
        )
        storage.close()
        rows.append(
            {
                "storage": "memory",
                "implementation": f"{keys_count:,} active keys x {per_key} request(s) in window",
                "MB": used / 1e6,
                "bytes/key": used / keys_count,
            }
        )
    return rows


def run(quick: bool = False) -> list[Row]:
    rows: list[Row] = memory_rows(quick)
    for storage, url, stop in _servers():
        closers: list[Callable[[], object]] = []
        try:
            if url.startswith("skipped"):
                rows.append({"storage": storage, "status": url})
                continue
            subjects = _subjects(storage, url, closers)
            trips = []
            for _name, fn in subjects:
                warm = WARM_QUICK if quick else WARM
                for i in range(warm):  # every counted key once
                    fn(i)
                for i in range(3 * USERS + warm, 3 * USERS + warm + 5):  # connect client 2
                    fn(i)
                with counted_sends() as sends:  # the same keys again
                    for i in range(USERS, USERS + ROUND_TRIP_CALLS):
                        fn(i)
                trips.append(sends[0] / ROUND_TRIP_CALLS)
            times = _time([fn for _name, fn in subjects], quick)
            for (name, _fn), ns, trip in zip(subjects, times, trips, strict=True):
                rows.append(
                    {
                        "storage": storage,
                        "implementation": name,
                        "decisions/s": 1e9 / ns,
                        "µs/decision": ns / 1000,
                        "round trips/request": trip,
                    }
                )
        finally:
            for close in closers:
                close()
            stop()
    return rows


def _by(rows: Sequence[Row], storage: str, prefix: str) -> list[Row]:
    return [
        r
        for r in rows
        if r.get("storage") == storage and str(r.get("implementation", "")).startswith(prefix)
    ]


def summarize(rows: Sequence[Row]) -> list[Row]:
    out: list[Row] = []
    for storage in ("memory", "memcached", "redis"):
        ours = _by(rows, storage, "middleware_kit storage.hit")
        theirs = _by(rows, storage, "limits")
        floor = _by(rows, storage, "bare client floor")
        if not ours:
            continue
        rates = [float(r["decisions/s"]) for r in ours]  # type: ignore[arg-type]
        best_limits = max((float(r["decisions/s"]) for r in theirs), default=None)  # type: ignore[arg-type]
        floor_rate = float(floor[0]["decisions/s"]) if floor else None  # type: ignore[arg-type]
        out.append(
            {
                "storage": storage,
                "ours / best limits (speed)": rates[0] / best_limits if best_limits else None,
                "floor / ours (time)": floor_rate / rates[0] if floor_rate else None,
                "floor / ours, 2 clients in turn (time)": (
                    floor_rate / rates[1] if floor_rate and len(rates) > 1 else None
                ),
                "our round trips": ours[0]["round trips/request"],
                "our round trips, 2 clients in turn": (
                    ours[1]["round trips/request"] if len(ours) > 1 else None
                ),
            }
        )
    return out


def _x(value: object) -> str:
    return f"{value:.2f}x" if isinstance(value, float) else "n/a"


def bars(rows: Sequence[Row]) -> list[Row]:
    """Speed beside limits; for shared storages one round trip and 2x of the bare
    client, both for one client and for two clients taking turns on every key."""
    out: list[Row] = []
    for line in summarize(rows):
        storage = line["storage"]
        speed = line["ours / best limits (speed)"]
        out.append(
            {
                "bar": f"ratelimit ({storage}): at least the speed of `limits`",
                "measured": _x(speed),
                "result": "PASS" if isinstance(speed, float) and speed >= 1 else "FAIL",
                "owner": "ratelimit",
            }
        )
        if storage == "memory":
            continue
        trips = (line["our round trips"], line["our round trips, 2 clients in turn"])
        out.append(
            {
                "bar": f"ratelimit ({storage}): one round trip per request",
                "measured": f"{trips[0]} (one client), {trips[1]} (2 clients in turn)",
                "result": "PASS" if trips == (1.0, 1.0) else "FAIL",
                "owner": "ratelimit",
            }
        )
        floors = (line["floor / ours (time)"], line["floor / ours, 2 clients in turn (time)"])
        good = all(isinstance(f, float) and f <= FLOOR_BAR for f in floors)
        out.append(
            {
                "bar": f"ratelimit ({storage}): within {FLOOR_BAR:.0f}x of the bare client",
                "measured": f"{_x(floors[0])} (one client), {_x(floors[1])} (2 clients in turn)",
                "result": "PASS" if good else "FAIL",
                "owner": "ratelimit",
            }
        )
    return out
