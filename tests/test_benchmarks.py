"""Smoke tests of the benchmark harness: every part runs with tiny counts and reports
the rows it should. No speed is asserted here; the numbers go to benchmarks/RESULTS.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import (
    Counts,
    bench_authtoken,
    bench_ip_blacklist,
    cold_cache,
    inprocess,
    markdown_table,
    ratio,
    served,
)
from benchmarks import __main__ as bench_main
from tests.support import keystone

TINY = Counts(warmup=2, repeats=2, repeat_s=0.0001, min_loops=2, max_loops=10)
VERDICTS = {"PASS", "FAIL", "N/A"}


def measured(row: dict[str, object]) -> bool:
    """A row has numbers and a 200 (every filter exists, so every pipeline loads)."""
    status = str(row.get("status", ""))
    number = row.get("median ns", row.get("req/s"))
    return status.startswith("200") and isinstance(number, float) and number > 0


def test_inprocess_reports_every_pipeline_and_request() -> None:
    rows = inprocess.run(counts=TINY)

    expected = {(p, r) for p in inprocess.PIPELINES for r in inprocess.REQUESTS}
    assert {(row["pipeline"], row["request"]) for row in rows} == expected
    assert all(measured(row) for row in rows), markdown_table(rows)
    oslo = [row for row in rows if str(row["pipeline"]).startswith(("oslo", "bare"))]
    assert all(str(row["status"]) == "200 OK" for row in oslo), markdown_table(oslo)
    bare = [row for row in rows if row["pipeline"] == "bare"]
    assert all(row["overhead ns"] == 0 for row in bare)


def test_inprocess_ratios_and_bars_name_every_comparison() -> None:
    rows = inprocess.run(counts=TINY)

    labels = [label for label, *_ in inprocess.COMPARISONS]
    summary = inprocess.summarize(rows)
    assert [row["comparison (overhead ours / oslo)"] for row in summary] == labels
    bars = inprocess.bars(rows)
    assert len(bars) == sum(bar is not None for *_, bar in inprocess.COMPARISONS)
    assert {bar["result"] for bar in bars} <= VERDICTS


def test_ratio_needs_two_numbers_and_a_positive_denominator() -> None:
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 4.0) is None
    assert ratio(1.0, "n/a") is None


def test_markdown_table_takes_the_union_of_columns() -> None:
    table = markdown_table([{"a": 1}, {"b": "x|y"}])

    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 |  |", "|  | x\\|y |"]


@pytest.mark.server
def test_served_reports_every_pipeline() -> None:
    rows = served.run(plan=served.Plan(duration_s=1.0, repeats=1, warmup_s=0.0))

    assert [row["pipeline"] for row in rows] == list(served.PIPELINES)
    assert all(measured(row) for row in rows), markdown_table(rows)
    for row in rows:
        if "req/s" in row:
            assert row["non-2xx"] == 0
            assert isinstance(row["server CPU µs/request"], float)
    assert {bar["result"] for bar in served.bars(rows)} <= VERDICTS


@pytest.mark.keystone
def test_authtoken_reports_both_filters_against_a_real_keystone() -> None:
    reason = keystone.keystone_available()
    if reason is not None:
        if keystone.in_ci():
            pytest.fail(f"CI=true but Keystone cannot run: {reason}")
        pytest.skip(f"Keystone cannot run: {reason}")

    rows = bench_authtoken.run(quick=True, counts=TINY)

    assert [row["pipeline"] for row in rows] == list(bench_authtoken.PIPELINES)
    assert all(measured(row) for row in rows), markdown_table(rows)
    assert str(rows[1]["status"]).startswith("200")  # keystonemiddleware validated the token
    assert {bar["result"] for bar in bench_authtoken.bars(rows)} <= VERDICTS


def test_ip_blacklist_reports_lookups_and_filter_calls_per_size() -> None:
    rows = bench_ip_blacklist.run(counts=TINY, sizes=(10, 1000))

    cases = {(row["entries"], row["case"]) for row in rows}
    assert len(cases) == len(rows) == 2 * (4 + 4)
    calls = [row for row in rows if str(row["case"]).startswith("filter call")]
    assert all("200 OK" in str(row["notes"]) for row in calls), markdown_table(rows)
    assert all(isinstance(row["median ns"], float) for row in rows)
    assert bench_ip_blacklist.bars(rows)[0]["result"] == "N/A"  # not run with 100k entries


def test_quick_command_writes_a_report(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"

    status = bench_main.main(["--quick", "--only", "inprocess", "--output", str(output)])

    assert status == 0
    report = output.read_text()
    for heading in ("## Machine", "## Commands", "## Bars", "## " + inprocess.TITLE):
        assert heading in report
    for pipeline in inprocess.PIPELINES:
        assert f"| {pipeline} | GET |" in report
    assert "PASS" in report or "N/A" in report or "FAIL" in report


def test_profile_command_prints_where_the_time_goes(capsys: pytest.CaptureFixture[str]) -> None:
    status = bench_main.main(["--profile", "oslo_request_id", "--profile-calls", "20"])

    out = capsys.readouterr().out
    assert status == 0
    assert "Profiled own time per request" in out
    assert "ncalls" in out


def test_cold_cache_runs_the_chain_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    assert cold_cache.main(calls=300, repeats=1) == 0
    out = capsys.readouterr().out
    assert "with warm caches" in out and "parsed between calls" in out
    assert cold_cache.overhead_ns(True, 300, 1) > 0  # the chain does cost something


def test_contract_floor_leaves_what_the_full_chain_leaves() -> None:
    """The floor is a lower bound only if it does the chain's required work: the same
    environ keys, context attributes, ratelimit state shape and response headers."""
    from oslo_context import context as oslo_context
    from paste.deploy import loadapp

    from benchmarks import PIPELINES_INI, base_environ

    def serve(section: str) -> tuple[dict[str, object], list[tuple[str, str]], object]:
        app = loadapp(f"config:{PIPELINES_INI}", name=section)
        environ = base_environ("GET")
        answered: list[tuple[str, str]] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> None:
            assert status == "200 OK"
            answered.extend(headers)

        assert b"".join(app(environ, start_response)) == b"{}"
        return environ, answered, oslo_context.get_current()

    chain_environ, chain_headers, chain_current = serve("ours_full_noauth")
    floor_environ, floor_headers, floor_current = serve("contract_floor")

    assert set(floor_environ) == set(chain_environ)
    assert sorted(n.lower() for n, _v in floor_headers) == sorted(
        n.lower() for n, _v in chain_headers
    )
    chain_context, floor_context = (
        chain_environ["openstack.context"],
        floor_environ["openstack.context"],
    )
    assert chain_current is chain_context and floor_current is floor_context
    different = {"request_id"}  # each made its own
    names = set(vars(chain_context)) | set(vars(floor_context))
    assert {n: getattr(floor_context, n) for n in names - different} == {
        n: getattr(chain_context, n) for n in names - different
    }
    [chain_state] = chain_environ["middleware_kit.ratelimit"]  # type: ignore[misc]
    [floor_state] = floor_environ["middleware_kit.ratelimit"]  # type: ignore[misc]
    assert floor_state.keys() == chain_state.keys()
    for key in ("HTTP_X_USER_ID", "HTTP_X_PROJECT_ID", "HTTP_X_ROLES", "HTTP_X_TENANT"):
        assert floor_environ[key] == chain_environ[key], key


def test_ab_serves_the_sections_in_turn_and_compares_to_the_first() -> None:
    from benchmarks import ab

    rows = ab.run(["bare", "ours_request_id"], rounds=1, seconds=1.0)

    assert [row["pipeline"] for row in rows] == ["bare", "ours_request_id"]
    assert rows[0]["over bare µs"] == 0 and rows[0]["ratio bare / this"] == 1
    for row in rows:
        cpu = row["server CPU µs/request (median)"]
        assert isinstance(cpu, float) and 0 < cpu < 100_000, row
