"""Smoke test of benchmarks/bench_ratelimit.py: every row, round trips as documented."""

from __future__ import annotations

import pytest

from benchmarks import bench_ratelimit, markdown_table


@pytest.mark.redis
@pytest.mark.memcached
def test_quick_run_reports_every_storage_and_round_trips() -> None:
    rows = bench_ratelimit.run(quick=True)

    timed = {(row["storage"], row["implementation"]): row for row in rows if "decisions/s" in row}
    names = {
        "middleware_kit filter (WSGI call)",
        "middleware_kit storage.hit",
        "limits sliding-window-counter",
        "bare client floor",
    }
    for storage in ("memory", "memcached", "redis"):
        expected = names | ({"limits moving-window"} if storage != "memcached" else set())
        if storage != "memory":
            expected.add("middleware_kit storage.hit, 2 clients in turn")
        assert {name for s, name in timed if s == storage} == expected, markdown_table(rows)
    trips = {key: row["round trips/request"] for key, row in timed.items()}
    assert trips["redis", "middleware_kit storage.hit"] == 1.0
    assert trips["redis", "middleware_kit filter (WSGI call)"] == 1.0
    assert trips["redis", "middleware_kit storage.hit, 2 clients in turn"] == 1.0
    # memcached: 1 whoever wrote the log last (an append never loses a race).
    assert trips["memcached", "middleware_kit storage.hit"] == 1.0
    assert trips["memcached", "middleware_kit filter (WSGI call)"] == 1.0
    assert trips["memcached", "middleware_kit storage.hit, 2 clients in turn"] == 1.0
    assert trips["memory", "middleware_kit storage.hit"] == 0.0
    assert trips["redis", "bare client floor"] == 1.0
    memory = [row for row in rows if "bytes/key" in row]
    assert len(memory) == 3
    assert all(isinstance(row["MB"], float) and row["MB"] > 0 for row in memory)
    bars = bench_ratelimit.bars(rows)
    assert len(bars) == 7
    assert {bar["result"] for bar in bars} <= {"PASS", "FAIL"}
