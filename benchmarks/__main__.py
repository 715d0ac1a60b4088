"""``python -m benchmarks [--quick] [--only PART ...] [--output FILE]``, or
``python -m benchmarks --profile PIPELINE`` (a section of inis/pipelines.ini).

The full run (``make bench``, under ten minutes) runs every part and writes
``benchmarks/RESULTS.md``: the machine, the versions, the commands, the bars with
PASS/FAIL, each part's table and, for a missed bar, what cProfile shows. ``--quick``
(``make bench-quick``, under a minute) is the smoke mode: tiny counts, no speed
asserted, nothing written unless ``--output`` is given. Exit status 1 when a part
crashed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType

from benchmarks import BENCH_DIR, Row, markdown_table

# (part name, module), in the order they run and appear in RESULTS.md.
PARTS = (
    ("inprocess", "benchmarks.inprocess"),
    ("served", "benchmarks.served"),
    ("ratelimit", "benchmarks.bench_ratelimit"),
    ("ip_blacklist", "benchmarks.bench_ip_blacklist"),
    ("authtoken", "benchmarks.bench_authtoken"),
)
PACKAGES = (
    "middleware_kit",
    "WebOb",
    "PasteDeploy",
    "eventlet",
    "oslo.middleware",
    "keystonemiddleware",
    "limits",
    "redis",
    "pymemcache",
)
DEFAULT_OUTPUT = BENCH_DIR / "RESULTS.md"
DEFAULT_NOTES = BENCH_DIR / "NOTES.md"  # what the numbers do not say by themselves
PROFILE_CALLS = 20_000


@dataclass
class PartResult:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    summary: list[Row] = field(default_factory=list)
    bars: list[Row] = field(default_factory=list)
    about: str = ""
    seconds: float = 0.0
    crashed: str = ""


def run_part(name: str, module: ModuleType, quick: bool) -> PartResult:
    result = PartResult(name, str(getattr(module, "TITLE", name)))
    doc = (module.__doc__ or "").strip()
    # The docstring minus its first line: how the part measures, for the report.
    result.about = " ".join(doc.split("\n\n", 1)[-1].split()) if "\n\n" in doc else ""
    print(f"== {name}: {result.title}", flush=True)
    started = time.monotonic()
    try:
        result.rows = list(module.run(quick=quick))
        if hasattr(module, "summarize"):
            result.summary = list(module.summarize(result.rows))
        if hasattr(module, "bars"):
            result.bars = list(module.bars(result.rows))
    except Exception:  # a crashed part is reported, the other parts still run
        result.crashed = traceback.format_exc()
        print(result.crashed, file=sys.stderr)
    result.seconds = time.monotonic() - started
    print(markdown_table(result.rows), flush=True)
    if result.summary:
        print(markdown_table(result.summary), flush=True)
    print(f"({result.seconds:.1f} s)\n", flush=True)
    return result


def machine() -> list[str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    wrk = shutil.which("wrk")
    wrk_version = "not installed"
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        wrk_version = (out.stdout or out.stderr).strip().splitlines()[0]
    return [
        f"- CPUs: {os.cpu_count()} (nproc), {cpu}",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- Packages: {', '.join(versions)}",
        f"- Load generator: {wrk_version}",
    ]


def profiles(results: Sequence[PartResult]) -> list[str]:
    """cProfile of our pipeline behind every missed in-process or served bar."""
    from benchmarks import inprocess

    lines: list[str] = []
    for result in results:
        for bar in result.bars:
            owner = str(bar.get("owner", ""))
            if bar.get("result") != "FAIL":
                continue
            lines.append(f"### {bar['bar']}\n")
            if owner not in inprocess.PIPELINES:
                lines.append(f"Not profiled automatically (`{owner}`); profile it by hand.\n")
                continue
            text = inprocess.profile(owner, "GET", PROFILE_CALLS)
            lines.append(f"`{owner}`, {PROFILE_CALLS:,} GET requests, by own time:\n")
            lines.append(text + "\n")
    return lines


def render(results: Sequence[PartResult], quick: bool, total_s: float, notes: str) -> str:
    command = "python -m benchmarks" + (" --quick" if quick else "")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Benchmark results\n",
        f"Generated by `{command}` on {now} in {total_s:.0f} s. Only ratios from the same run"
        " are compared; absolute numbers move with the machine and its load.\n",
        "## Machine\n",
        *machine(),
        "",
        "## Commands\n",
        "```sh",
        ".venv/bin/python -m benchmarks           # make bench: every part, writes this file",
        ".venv/bin/python -m benchmarks --quick   # make bench-quick: smoke, no speed asserted",
        ".venv/bin/python -m benchmarks --only inprocess --output /tmp/r.md   # one part",
        ".venv/bin/python -m benchmarks --profile ours_full_noauth   # cProfile, by own time",
        "```\n",
    ]
    if notes:
        out += [notes.strip(), ""]
    all_bars = [bar for result in results for bar in result.bars]
    out += ["## Bars\n", markdown_table([{k: v for k, v in b.items()} for b in all_bars])]
    for result in results:
        out += [f"## {result.title}\n", f"Part `{result.name}`, {result.seconds:.0f} s.\n"]
        if result.about:
            out += [result.about + "\n"]
        out.append(markdown_table(result.rows))
        if result.summary:
            out.append(markdown_table(result.summary))
        if result.crashed:
            out += ["Crashed:\n", "```", result.crashed.strip(), "```\n"]
    missed = profiles(results) if not quick else []
    if missed:
        out += ["## Profiles of missed bars\n", *missed]
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny counts")
    parser.add_argument(
        "--only", action="append", choices=[name for name, _ in PARTS], help="run only PART"
    )
    parser.add_argument("--output", type=Path, help="report file (full run: RESULTS.md)")
    parser.add_argument(
        "--notes", type=Path, help="Markdown file included after Commands (full run: NOTES.md)"
    )
    parser.add_argument(
        "--profile", metavar="PIPELINE", help="only print cProfile of one in-process pipeline"
    )
    parser.add_argument("--profile-calls", type=int, default=PROFILE_CALLS, metavar="N")
    args = parser.parse_args(argv)
    if args.profile:
        from benchmarks import inprocess

        print(inprocess.profile(args.profile, "GET", args.profile_calls))
        return 0
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    started = time.monotonic()
    results = []
    for name, module_name in PARTS:
        if args.only and name not in args.only:
            continue
        results.append(run_part(name, importlib.import_module(module_name), args.quick))
    notes_file = args.notes or (None if args.quick else DEFAULT_NOTES)
    notes = notes_file.read_text() if notes_file and notes_file.exists() else ""
    report = render(results, args.quick, time.monotonic() - started, notes)
    if output is not None:
        output.write_text(report)
        print(f"wrote {output}")
    all_bars = [bar for result in results for bar in result.bars]
    print(markdown_table(all_bars))
    return 1 if any(result.crashed for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
