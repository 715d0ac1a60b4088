"""In-process overhead: each pipeline of ``inis/pipelines.ini`` called in a loop.

Every pipeline is built by ``paste.deploy.loadapp`` and ends in the same bare app; a
GET with a few headers and a POST with a 1 KiB JSON body are timed (warm-up, then
round-robin repeats with the garbage collector off). The overhead of a pipeline is its
median minus the bare app's median from the same run.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Sequence
from typing import Any

from paste.deploy import loadapp

from benchmarks import (
    FULL,
    PIPELINES_INI,
    QUICK,
    Counts,
    Row,
    Subject,
    WSGIApp,
    base_environ,
    environ_factory,
    first_line,
    measure,
    ratio,
    summary,
)

TITLE = "In-process overhead (ns per request, median of repeats)"

# What the noauth filter would have set: `context` alone needs an identity to build on.
IDENTITY = {
    "HTTP_X_IDENTITY_STATUS": "Confirmed",
    "HTTP_X_USER_ID": "bench-user",
    "HTTP_X_USER_NAME": "bench-user",
    "HTTP_X_USER_DOMAIN_ID": "default",
    "HTTP_X_USER_DOMAIN_NAME": "Default",
    "HTTP_X_PROJECT_ID": "bench-project",
    "HTTP_X_PROJECT_NAME": "bench-project",
    "HTTP_X_PROJECT_DOMAIN_ID": "default",
    "HTTP_X_PROJECT_DOMAIN_NAME": "Default",
    "HTTP_X_ROLES": "member,reader",
}

# Sections of pipelines.ini, in table order ("bare" is the app itself).
PIPELINES = (
    "bare",
    "ours_request_id",
    "ours_catch_errors",
    "ours_faultwrap",
    "ours_sizelimit",
    "ours_ip_blacklist",
    "ours_noauth",
    "ours_context",
    "ours_ratelimit",
    "oslo_request_id",
    "oslo_catch_errors",
    "oslo_sizelimit",
    "oslo_three",
    "ours_four",
    "ours_full_noauth",
    "contract_floor",
)
REQUESTS = ("GET", "POST")

# (label, ours, oslo, bar): our overhead over oslo's from the same run.
COMPARISONS = (
    ("request_id", "ours_request_id", "oslo_request_id", 0.1),
    ("catch_errors", "ours_catch_errors", "oslo_catch_errors", 0.1),
    ("sizelimit", "ours_sizelimit", "oslo_sizelimit", 0.1),
    ("our four vs oslo's three (same job)", "ours_four", "oslo_three", None),
    ("our full noauth chain (8) vs oslo's three", "ours_full_noauth", "oslo_three", 0.5),
)


def load(section: str) -> WSGIApp:
    app: WSGIApp = loadapp(f"config:{PIPELINES_INI}", name=section)
    return app


def load_problem(exc: BaseException) -> str:
    """The status of a pipeline that did not load."""
    return f"error: {first_line(exc)}"


def environ_for(section: str, request: str) -> dict[str, Any]:
    environ = base_environ(request)
    if section == "ours_context":
        environ.update(IDENTITY)
    return environ


def run(quick: bool = False, *, counts: Counts | None = None) -> list[Row]:
    counts = counts or (QUICK if quick else FULL)
    subjects: list[Subject] = []
    problems: dict[str, str] = {}
    for section in PIPELINES:
        try:
            app = load(section)
        except Exception as exc:  # any load failure becomes a row, the run goes on
            problems[section] = load_problem(exc)
            continue
        for request in REQUESTS:
            fresh = environ_factory(environ_for(section, request))
            subjects.append(Subject(section, request, app, fresh))
    samples = measure(subjects, counts)
    by_key = {(s.name, s.request): s for s in subjects}
    rows: list[Row] = []
    for section in PIPELINES:
        for request in REQUESTS:
            if section in problems:
                rows.append({"pipeline": section, "request": request, "status": problems[section]})
                continue
            subject = by_key[section, request]
            median, low, high = summary(samples[section, request])
            bare = samples.get(("bare", request))
            overhead = median - summary(bare)[0] if bare else None
            rows.append(
                {
                    "pipeline": section,
                    "request": request,
                    "median ns": median,
                    "overhead ns": overhead,
                    "min ns": low,
                    "max ns": high,
                    "loops x repeats": f"{subject.loops} x {counts.repeats}",
                    "status": subject.status,
                }
            )
    return rows


def _overheads(rows: Sequence[Row]) -> dict[tuple[object, object], object]:
    return {(r["pipeline"], r["request"]): r.get("overhead ns") for r in rows}


def summarize(rows: Sequence[Row]) -> list[Row]:
    """Ratios ours/oslo of the overheads, per request kind."""
    overhead = _overheads(rows)
    table: list[Row] = []
    for label, ours, oslo, bar in COMPARISONS:
        row: Row = {"comparison (overhead ours / oslo)": label}
        for request in REQUESTS:
            row[request] = ratio(overhead.get((ours, request)), overhead.get((oslo, request)))
        row["bar"] = f"<= {bar}x" if bar is not None else ""
        table.append(row)
    return table


def bars(rows: Sequence[Row]) -> list[Row]:
    overhead = _overheads(rows)
    results: list[Row] = []
    for label, ours, oslo, bar in COMPARISONS:
        if bar is None:
            continue
        measured = []
        verdict = "PASS"
        for request in REQUESTS:
            mine, theirs = overhead.get((ours, request)), overhead.get((oslo, request))
            value = ratio(mine, theirs)
            if not isinstance(mine, float) or value is None:
                verdict = "N/A"
                measured.append(f"{request} n/a")
                continue
            # An overhead at or below zero is within the noise: nothing measurable.
            if mine > 0 and value > bar and verdict == "PASS":
                verdict = "FAIL"
            measured.append(f"{request} {value:.3f}x")
        results.append(
            {
                "bar": f"{label}: ours <= {bar}x oslo (in-process overhead)",
                "measured": ", ".join(measured),
                "result": verdict,
                "owner": ours,
            }
        )
    return results


def profile(section: str, request: str = "GET", calls: int = 20_000, top: int = 12) -> str:
    """cProfile of ``calls`` requests through ``section``: a one-line reading (where the
    own time goes, by share) and the top functions by own time."""
    app = load(section)
    fresh = environ_factory(environ_for(section, request))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        body = app(fresh(), lambda status, headers, exc_info=None: None)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return reading(stats, calls) + "\n\n```\n" + "\n".join(lines[start:]) + "\n```"


def reading(stats: pstats.Stats, calls: int, top: int = 5) -> str:
    """'Own time per request: 1.2 µs; 31% in f (file:line), ...' from a profile."""
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values()) or 1e-12
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    shares = [
        f"{entry[2] / total:.0%} in `{func}` ({file}:{line}, {entry[1] / calls:g} calls/request)"
        for (file, line, func), entry in ranked
    ]
    return (
        f"Profiled own time per request: {total / calls * 1e6:.1f} µs (with cProfile's own "
        f"overhead); " + "; ".join(shares) + "."
    )
