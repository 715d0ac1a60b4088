"""Performance harness: middleware_kit beside oslo.middleware, keystonemiddleware and `limits`.

``python -m benchmarks`` runs every part and writes ``benchmarks/RESULTS.md``;
``python -m benchmarks --quick`` is the smoke mode (tiny counts, no speed asserted).

Each part is a module exposing ``TITLE: str`` and
``run(quick: bool = False) -> list[dict[str, object]]`` (one dict per table row). This
package holds what the parts share: the bare app every pipeline ends in, the timed loop,
the request environs and the table renderer.
"""

from __future__ import annotations

import gc
import io
import json
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, object]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

BENCH_DIR = Path(__file__).resolve().parent
INIS = BENCH_DIR / "inis"
PIPELINES_INI = INIS / "pipelines.ini"

# The identity the noauth chain sees: a fixed user, so ratelimit counts one key.
BENCH_TOKEN = "bench-user:bench-project"
POST_BODY = json.dumps({"cat": {"name": "x" * (1024 - 31), "age": 3}}).encode()  # 1 KiB
CLIENT_ADDR = "127.0.0.1"


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The app every benchmarked pipeline ends in: reads the body, answers 200 ``{}``."""
    length = environ.get("CONTENT_LENGTH")
    if length:
        environ["wsgi.input"].read(int(length))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def app_factory(global_conf: Mapping[str, str], **local_conf: str) -> WSGIApp:
    """``paste.app_factory = benchmarks:app_factory``."""
    return bare_app


def base_environ(method: str, *, token: str | None = BENCH_TOKEN) -> dict[str, Any]:
    """A realistic environ as eventlet.wsgi builds it: GET with a few headers, or a POST
    carrying a 1 KiB JSON body (``wsgi.input`` is replaced on every call)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": "/v1/cats",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": CLIENT_ADDR,
        "REMOTE_PORT": "50000",
        "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_USER_AGENT": "python-novaclient",
        "HTTP_ACCEPT": "application/json",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "HTTP_CONNECTION": "keep-alive",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if token is not None:
        environ["HTTP_X_AUTH_TOKEN"] = token
    if method == "POST":
        environ["CONTENT_TYPE"] = "application/json"
        environ["CONTENT_LENGTH"] = str(len(POST_BODY))
    return environ


def environ_factory(template: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """A fresh copy of ``template`` per call (filters write to the environ)."""
    if template["REQUEST_METHOD"] == "POST":

        def fresh_post() -> dict[str, Any]:
            environ = template.copy()
            environ["wsgi.input"] = io.BytesIO(POST_BODY)
            return environ

        return fresh_post
    return template.copy


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def call_once(app: WSGIApp, environ: dict[str, Any]) -> str:
    """One request outside any timing; returns the status line the app answered."""
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.append(status)

    body = app(environ, start_response)
    try:
        for _chunk in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return seen[-1] if seen else "(no start_response)"


def time_loop(app: WSGIApp, fresh_environ: Callable[[], dict[str, Any]], loops: int) -> float:
    """ns per request over ``loops`` calls, the garbage collector off while timing."""
    start_response = _start_response
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter_ns()
        for _ in range(loops):
            body = app(fresh_environ(), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        elapsed = time.perf_counter_ns() - started
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / loops


@dataclass(frozen=True)
class Counts:
    """How long to time: each repeat aims at ``repeat_s``; loops stay within bounds."""

    warmup: int
    repeats: int
    repeat_s: float
    min_loops: int
    max_loops: int

    def loops_for(self, ns_per_call: float) -> int:
        wanted = int(self.repeat_s * 1e9 / max(ns_per_call, 1.0))
        return max(self.min_loops, min(self.max_loops, wanted))


FULL = Counts(warmup=300, repeats=15, repeat_s=0.04, min_loops=50, max_loops=200_000)
QUICK = Counts(warmup=5, repeats=3, repeat_s=0.002, min_loops=5, max_loops=500)


@dataclass
class Subject:
    """One app under timing, with the environ it is called with."""

    name: str
    request: str
    app: WSGIApp
    fresh_environ: Callable[[], dict[str, Any]]
    loops: int = 0
    status: str = ""


def measure(subjects: Sequence[Subject], counts: Counts) -> dict[tuple[str, str], list[float]]:
    """Warm each subject up, size its loop, then time every subject once per round
    (round-robin, so drift on a busy machine spreads over all of them alike)."""
    samples: dict[tuple[str, str], list[float]] = {}
    for subject in subjects:
        subject.status = call_once(subject.app, subject.fresh_environ())
        warm_ns = time_loop(subject.app, subject.fresh_environ, counts.warmup)
        subject.loops = counts.loops_for(warm_ns)
        samples[subject.name, subject.request] = []
    for _round in range(counts.repeats):
        for subject in subjects:
            ns = time_loop(subject.app, subject.fresh_environ, subject.loops)
            samples[subject.name, subject.request].append(ns)
    return samples


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def ratio(numerator: object, denominator: object) -> float | None:
    """numerator / denominator for two positive numbers, else None."""
    if not isinstance(numerator, int | float) or not isinstance(denominator, int | float):
        return None
    if denominator <= 0:
        return None
    return float(numerator) / float(denominator)


def format_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Row]) -> str:
    """A Markdown table of ``rows``; columns in first-seen order over all rows."""
    if not rows:
        return "(no rows)\n"
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
