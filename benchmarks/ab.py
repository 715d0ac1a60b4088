"""Served A/B: a few pipelines side by side, alternating, the median of many rounds.

``python -m benchmarks.ab [--rounds 10] [--seconds 3] SECTION [SECTION ...]`` serves each
section of ``inis/pipelines.ini`` as the served part does (same server, pinning and load
generator), then loads them in turn, round after round, and prints the median server
CPU per request of each, its difference to the first section and the ratio to it.
Alternating cancels the machine's drift; the median of 10-12 rounds of 3 s separates
differences of about 1 µs (two identical bare servers agree within ±0.5 µs). The A/B
figures in NOTES.md come from such runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence

from benchmarks import Row, markdown_table, served

WARMUP_S = 1.0


def run(sections: Sequence[str], rounds: int, seconds: float) -> list[Row]:
    """One row per section, in order; the first section is the base."""
    saved_affinity = os.sched_getaffinity(0) if served.pinning() else None
    servers = {}
    try:
        if saved_affinity is not None and not served.wrk_path():
            os.sched_setaffinity(0, {served.CLIENT_CPU})
        for section in sections:
            servers[section] = served.start(section)
        for server in servers.values():
            served.drive(server, WARMUP_S)
        per_request: dict[str, list[float]] = {section: [] for section in sections}
        for _round in range(rounds):
            for section, server in servers.items():
                load = served.drive(server, seconds)
                per_request[section].append(load.cpu_s / max(load.requests, 1) * 1e6)
    finally:
        for server in servers.values():
            server.stop()
        if saved_affinity is not None:
            os.sched_setaffinity(0, saved_affinity)
    base = statistics.median(per_request[sections[0]])
    rows: list[Row] = []
    for section in sections:
        median = statistics.median(per_request[section])
        rows.append(
            {
                "pipeline": section,
                "server CPU µs/request (median)": median,
                f"over {sections[0]} µs": median - base,
                f"ratio {sections[0]} / this": base / median if median else None,
                "min": min(per_request[section]),
                "max": max(per_request[section]),
                "rounds": rounds,
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("sections", nargs="+", help="sections of inis/pipelines.ini")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    print(markdown_table(run(args.sections, args.rounds, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
