"""Served throughput: ``middleware-kit serve`` (eventlet) in a subprocess, under load.

Each pipeline of ``inis/pipelines.ini`` is served on its own loopback port
(``--log-level WARNING``: no access-log lines written). wrk, when installed, drives it
for a fixed time (``-t1 -c32``), else a bounded Python client (tests/support/load.py).
On a machine with two or more cores the servers are pinned to CPU 0 and the load
generator to CPU 1 (``sched_setaffinity`` / ``taskset``), so they do not compete.
Server CPU per request is the server's utime+stime (``/proc/<pid>/stat``) over the
requests answered. Runs alternate between the pipelines; the best run of each counts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks import BENCH_TOKEN, PIPELINES_INI, Row, first_line, ratio
from tests.support.servers import ServedApp

TITLE = "Served throughput (eventlet server in a subprocess, loopback)"

PIPELINES = ("bare", "oslo_three", "ours_four", "ours_full_noauth")
# Full runs only: what each filter alone costs served (context needs an identity).
PER_FILTER = (
    *("ours_request_id", "ours_catch_errors", "ours_faultwrap", "ours_sizelimit"),
    *("ours_ip_blacklist", "ours_noauth", "ours_noauth_context", "ours_ratelimit"),
    "contract_floor",  # benchmarks/floor.py: the least the full chain's contracts cost
    "ours_full_noauth_default_rules",  # ratelimit's default rules do not count GETs
)
PATH = "/v1/cats"
HEADERS = {"X-Auth-Token": BENCH_TOKEN, "Accept": "application/json"}
CONNECTIONS = 32
SERVER_CPU = 0
CLIENT_CPU = 1
BAR_FULL_CHAIN = 0.85


@dataclass(frozen=True)
class Plan:
    duration_s: float
    repeats: int
    warmup_s: float


FULL_PLAN = Plan(duration_s=5.0, repeats=2, warmup_s=1.0)
QUICK_PLAN = Plan(duration_s=1.0, repeats=1, warmup_s=0.0)


@dataclass
class Load:
    requests: int
    non_2xx: int
    elapsed_s: float
    cpu_s: float

    @property
    def per_second(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


def pinning() -> bool:
    return (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")


def wrk_path() -> str | None:
    return shutil.which("wrk") or ("/usr/bin/wrk" if os.access("/usr/bin/wrk", os.X_OK) else None)


def client_description() -> str:
    wrk = wrk_path()
    client = (
        f"wrk -t1 -c{CONNECTIONS} -d<duration>s"
        if wrk
        else (f"Python client (tests/support/load.py), {CONNECTIONS} connections")
    )
    if pinning():
        return f"{client}; server pinned to CPU {SERVER_CPU}, load generator to CPU {CLIENT_CPU}"
    return f"{client}; not pinned (fewer than 2 CPUs)"


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(port: int, duration_s: float) -> tuple[int, int, float]:
    wrk = wrk_path()
    assert wrk is not None
    argv = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(duration_s))}s"]
    for name, value in HEADERS.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{port}{PATH}")
    if pinning() and shutil.which("taskset"):
        argv = ["taskset", "-c", str(CLIENT_CPU), *argv]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + 30, check=True
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if total is None:
        raise RuntimeError(f"cannot read wrk output: {out!r}")
    elapsed = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(total.group(1)), int(non_2xx.group(1)) if non_2xx else 0, elapsed


def _python_client(port: int, duration_s: float) -> tuple[int, int, float]:
    from tests.support.load import run_load  # only without wrk

    result = run_load(
        port,
        lambda worker, n: ("GET", PATH, HEADERS, None),
        connections=CONNECTIONS,
        duration_s=duration_s,
        max_requests=200_000,
    )
    return result.answered, result.answered - result.count(200, 299), result.elapsed_s


def drive(server: ServedApp, duration_s: float) -> Load:
    """Load ``server`` for ``duration_s``; count what it answered and the CPU it used."""
    cpu_before = cpu_seconds(server.process.pid)
    if wrk_path():
        requests, non_2xx, elapsed = _wrk(server.port, duration_s)
    else:
        requests, non_2xx, elapsed = _python_client(server.port, duration_s)
    return Load(requests, non_2xx, elapsed, cpu_seconds(server.process.pid) - cpu_before)


def start(section: str) -> ServedApp:
    server = ServedApp(PIPELINES_INI, name=section, extra_args=["--log-level", "WARNING"])
    if pinning():
        os.sched_setaffinity(server.process.pid, {SERVER_CPU})
    return server


def run(quick: bool = False, *, plan: Plan | None = None) -> list[Row]:
    """Every pipeline; the filters one by one too in a full run (no ``plan`` given)."""
    sections = PIPELINES if quick or plan else (*PIPELINES, *PER_FILTER)
    plan = plan or (QUICK_PLAN if quick else FULL_PLAN)
    servers: dict[str, ServedApp] = {}
    problems: dict[str, str] = {}
    statuses: dict[str, int] = {}
    loads: dict[str, list[Load]] = {}
    saved_affinity = os.sched_getaffinity(0) if pinning() else None
    try:
        if saved_affinity is not None and not wrk_path():
            os.sched_setaffinity(0, {CLIENT_CPU})
        for section in sections:
            try:
                servers[section] = start(section)
                statuses[section] = servers[section].request(PATH, headers=HEADERS)[0]
            except (RuntimeError, OSError) as exc:
                problems[section] = _problem(exc)
        for section, server in servers.items():
            if plan.warmup_s > 0:
                drive(server, plan.warmup_s)
            loads[section] = []
        for _round in range(plan.repeats):
            for section, server in servers.items():
                loads[section].append(drive(server, plan.duration_s))
                time.sleep(0.2)
    finally:
        for server in servers.values():
            server.stop()
        if saved_affinity is not None:
            os.sched_setaffinity(0, saved_affinity)
    return _rows(loads, problems, statuses)


def _problem(exc: BaseException) -> str:
    return f"error: {first_line(exc)}"


def _rows(
    loads: dict[str, list[Load]], problems: dict[str, str], statuses: dict[str, int]
) -> list[Row]:
    best = {s: max(runs, key=lambda load: load.per_second) for s, runs in loads.items() if runs}
    bare = best.get("bare")
    bare_cpu = _cpu_per_request(bare) if bare else None
    rows: list[Row] = []
    for section in (*PIPELINES, *PER_FILTER):
        if section not in best and section in PER_FILTER:
            continue  # a quick run
        if section not in best:
            rows.append({"pipeline": section, "status": problems.get(section, "not run")})
            continue
        load = best[section]
        rows.append(
            {
                "pipeline": section,
                "req/s": load.per_second,
                "ratio to bare": ratio(load.per_second, bare.per_second if bare else None),
                "server CPU µs/request": _cpu_per_request(load),
                "over bare µs": _minus(_cpu_per_request(load), bare_cpu),
                "requests": load.requests,
                "non-2xx": load.non_2xx,
                "runs": len(loads[section]),
                "status": statuses.get(section, ""),
            }
        )
    return rows


def _cpu_per_request(load: Load) -> float | None:
    return load.cpu_s / load.requests * 1e6 if load.requests else None


def _minus(value: float | None, base: float | None) -> float | None:
    return value - base if value is not None and base is not None else None


def bars(rows: Sequence[Row]) -> list[Row]:
    by_name = {r["pipeline"]: r for r in rows}
    full = by_name.get("ours_full_noauth", {})
    value = full.get("ratio to bare")
    clean = full.get("non-2xx") == 0
    if not isinstance(value, float):
        verdict, measured = "N/A", str(full.get("status", "not run"))
    else:
        verdict = "PASS" if value >= BAR_FULL_CHAIN and clean else "FAIL"
        measured = f"{value:.3f}x bare req/s" + ("" if clean else " (non-2xx answers!)")
    oslo = by_name.get("oslo_three", {}).get("ratio to bare")
    if isinstance(oslo, float):
        measured += f"; oslo's three {oslo:.3f}x"
    floor = by_name.get("contract_floor", {}).get("ratio to bare")
    if isinstance(floor, float):
        measured += f"; the contract floor {floor:.3f}x"
    defaults = by_name.get("ours_full_noauth_default_rules", {}).get("ratio to bare")
    if isinstance(defaults, float):
        measured += f"; with ratelimit's default rules (GETs not counted) {defaults:.3f}x"
    return [
        {
            "bar": f"served: our full noauth chain >= {BAR_FULL_CHAIN}x bare req/s",
            "measured": measured,
            "result": verdict,
            "owner": "ours_full_noauth",
        }
    ]
