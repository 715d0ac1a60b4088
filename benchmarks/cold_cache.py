"""Why a filter costs more served than in process: the same loop, caches warm and cold.

``python -m benchmarks.cold_cache`` times the full noauth chain over the bare app in
process twice: as the in-process part does (the loop keeps the chain's code and data in
the CPU caches), and with what a server does between two requests run in between
(reading a request head with ``http.client.parse_headers``, as eventlet.wsgi does). The
second overhead is part of what the served numbers show; the rest is the server's work
on the response headers the chain adds, which no in-process loop sees (NOTES.md).
"""

from __future__ import annotations

import http.client
import io
import sys
import time
from collections.abc import Callable

from benchmarks import PIPELINES_INI, base_environ, call_once, environ_factory

REQUEST_HEAD = (
    b"GET /v1/cats HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
    b"X-Auth-Token: bench-user:bench-project\r\nConnection: keep-alive\r\n\r\n"
)


def server_work() -> None:
    """Roughly what eventlet.wsgi does with a request head before calling the app."""
    head = io.BytesIO(REQUEST_HEAD)
    head.readline()
    http.client.parse_headers(head)


def overhead_ns(cold: bool, calls: int, repeats: int) -> float:
    """Best ns per request of the full chain minus the bare app's."""
    from paste.deploy import loadapp

    best: dict[str, float] = {}
    for section in ("bare", "ours_full_noauth"):
        app = loadapp(f"config:{PIPELINES_INI}", name=section)
        fresh = environ_factory(base_environ("GET"))
        call_once(app, fresh())
        best[section] = min(_loop(app, fresh, cold, calls) for _ in range(repeats))
    return best["ours_full_noauth"] - best["bare"]


def _loop(
    app: Callable[..., object], fresh: Callable[[], dict[str, object]], cold: bool, calls: int
) -> float:
    def start_response(status: str, headers: object, exc_info: object = None) -> None:
        return None

    started = time.perf_counter_ns()
    for _ in range(calls):
        if cold:
            server_work()
        body = app(fresh(), start_response)
        for _chunk in body:  # type: ignore[attr-defined]
            pass
    return (time.perf_counter_ns() - started) / calls


def main(calls: int = 20_000, repeats: int = 5) -> int:
    warm = overhead_ns(False, calls, repeats)
    cold = overhead_ns(True, calls, repeats)
    print("the full noauth chain over the bare app, in process:")
    print(f"  {warm / 1000:.1f} µs per request with warm caches")
    print(f"  {cold / 1000:.1f} µs per request with a request head parsed between calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
