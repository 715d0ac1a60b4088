"""ip_blacklist: the cost of a check with 10 and 100,000 list entries.

The lists are made of random addresses and networks (IPv4 /8 to /32, IPv6 /32 to
/128; fixed seed), so the lookup meets many prefix lengths. Two tables: the bare
lookup (``address in NetworkSet``: the prefix lengths shorter than /16 or /32, then
those of the /16 or /32 holding the address) for an address that matches and one that
does not;
and the filter called like the in-process part calls a pipeline: with one
``REMOTE_ADDR`` (its verdict cached), with a new ``REMOTE_ADDR`` on every call (parsed
and looked up each time), and behind a trusted proxy with one ``X-Forwarded-For``
(cached) or a new one on every call (the walk each time). Overhead is over the bare
app of the same run.
"""

from __future__ import annotations

import gc
import ipaddress
import itertools
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import (
    FULL,
    QUICK,
    Counts,
    Row,
    Subject,
    bare_app,
    base_environ,
    environ_factory,
    measure,
    summary,
)
from middleware_kit.ip_blacklist import IpBlacklist
from middleware_kit.ip_blacklist._lists import CACHE_SIZE
from middleware_kit.ip_blacklist._networks import Address, NetworkSet

TITLE = "ip_blacklist: cost of a check (ns, median of repeats)"

SIZES = (10, 100_000)
SEED = 6
PROXY = "10.255.0.1"
BAR_NS = 5_000  # "a few microseconds" per check with 100k entries, uncached
BAR_SIZE = 100_000
KEPT_OUT = (ipaddress.IPv4Network("10.0.0.0/8"), ipaddress.IPv4Network("127.0.0.0/8"))


def make_list(size: int, rng: random.Random) -> list[str]:
    """``size`` entries: 60% IPv4 (half addresses), 40% IPv6 (half /128), none matching
    the benchmark client (127.0.0.1) or the misses (10/8)."""
    entries: list[str] = []
    while len(entries) < size:
        if rng.random() < 0.6:
            prefix = 32 if rng.random() < 0.5 else rng.randint(8, 31)
            value = rng.getrandbits(32) >> (32 - prefix) << (32 - prefix)
            network: Any = ipaddress.IPv4Network((value, prefix))
            if any(network.overlaps(net) for net in KEPT_OUT):
                continue
        else:
            prefix = 128 if rng.random() < 0.5 else rng.randint(32, 127)
            value = (0x2001 << 112 | rng.getrandbits(112)) >> (128 - prefix) << (128 - prefix)
            network = ipaddress.IPv6Network((value, prefix))
        entries.append(str(network))
    return entries


def probes(entries: Sequence[str], rng: random.Random, count: int) -> dict[str, list[Address]]:
    """Addresses inside list entries (hits) and in 10/8 or 2001:db8 (misses)."""
    nets = [ipaddress.ip_network(entry) for entry in entries]
    out: dict[str, list[Address]] = {"IPv4 hit": [], "IPv6 hit": []}
    while len(out["IPv4 hit"]) < count or len(out["IPv6 hit"]) < count:
        net = rng.choice(nets)
        address = net.network_address + rng.randrange(net.num_addresses)
        key = f"IPv{net.version} hit"
        if len(out[key]) < count:
            out[key].append((net.version, int(address)))
    out["IPv4 miss"] = [(4, 0x0A000000 | rng.getrandbits(24)) for _ in range(count)]
    out["IPv6 miss"] = [(6, 0x20010DB8 << 96 | rng.getrandbits(96)) for _ in range(count)]
    return out


def time_lookups(members: NetworkSet, addresses: list[Address], counts: Counts) -> list[float]:
    """ns per ``address in members`` (loop overhead included), one value per repeat."""
    loops = max(counts.min_loops, min(counts.max_loops, 20_000))
    cycle = list(itertools.islice(itertools.cycle(addresses), loops))
    samples = []
    for _ in range(counts.repeats):
        gc.disable()
        try:
            started = time.perf_counter_ns()
            for address in cycle:
                address in members  # noqa: B015 - the expression is what is timed
            samples.append((time.perf_counter_ns() - started) / loops)
        finally:
            gc.enable()
    return samples


def rotating(template: dict[str, Any], key: str, values: list[str]) -> Callable[[], Any]:
    """A fresh environ per call with the next of ``values`` under ``key``."""
    cycle = itertools.cycle(values)

    def fresh() -> dict[str, Any]:
        environ = template.copy()
        environ[key] = next(cycle)
        return environ

    return fresh


def run(
    quick: bool = False, *, counts: Counts | None = None, sizes: Sequence[int] = SIZES
) -> list[Row]:
    counts = counts or (QUICK if quick else FULL)
    rng = random.Random(SEED)
    rows: list[Row] = []
    subjects = [Subject("bare", "GET", bare_app, environ_factory(base_environ("GET")))]
    clients = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(2 * CACHE_SIZE)]
    for size in sizes:
        entries = make_list(size, rng)
        started = time.perf_counter()
        app = IpBlacklist(bare_app, blacklist=entries, trusted_proxies=[PROXY])
        load_ms = (time.perf_counter() - started) * 1e3
        members = app.lists.rules.blacklist
        lengths = members.lengths
        for case, addresses in probes(entries, rng, 1000).items():
            median, low, high = summary(time_lookups(members, addresses, counts))
            rows.append(
                {
                    "entries": size,
                    "case": f"lookup, {case}",
                    "median ns": median,
                    "min ns": low,
                    "max ns": high,
                    "notes": f"{lengths} prefix lengths; filter built in {load_ms:.0f} ms",
                }
            )
        template = base_environ("GET")
        proxied = {**template, "REMOTE_ADDR": PROXY}
        subjects += [
            Subject(f"{size}", "one REMOTE_ADDR (cached)", app, environ_factory(template)),
            Subject(
                f"{size}",
                "new REMOTE_ADDR each call",
                app,
                rotating(template, "REMOTE_ADDR", clients),
            ),
            Subject(
                f"{size}",
                "trusted proxy, one X-Forwarded-For (cached)",
                app,
                environ_factory({**proxied, "HTTP_X_FORWARDED_FOR": "10.1.2.3, 10.255.0.1"}),
            ),
            Subject(
                f"{size}",
                "trusted proxy, new X-Forwarded-For each call",
                app,
                rotating(proxied, "HTTP_X_FORWARDED_FOR", [f"{c}, 10.255.0.1" for c in clients]),
            ),
        ]
    samples = measure(subjects, counts)
    bare = statistics.median(samples["bare", "GET"])
    for subject in subjects[1:]:
        median, low, high = summary(samples[subject.name, subject.request])
        rows.append(
            {
                "entries": int(subject.name),
                "case": f"filter call, {subject.request}",
                "median ns": median,
                "overhead ns": median - bare,
                "min ns": low,
                "max ns": high,
                "notes": f"{subject.loops} x {counts.repeats}, {subject.status}",
            }
        )
    return rows


def bars(rows: Sequence[Row]) -> list[Row]:
    worst = [
        row
        for row in rows
        if row["entries"] == BAR_SIZE
        and str(row["case"]).startswith(("lookup", "filter call, new"))
    ]
    values = [float(row.get("overhead ns", row["median ns"])) for row in worst]  # type: ignore[arg-type]
    if not values:
        verdict, measured = "N/A", f"not run with {BAR_SIZE:,} entries"
    else:
        verdict = "PASS" if max(values) <= BAR_NS else "FAIL"
        measured = f"worst {max(values):,.0f} ns ({len(values)} cases)"
    return [
        {
            "bar": f"ip_blacklist: a check with {BAR_SIZE:,} entries <= {BAR_NS:,} ns (uncached)",
            "measured": measured,
            "result": verdict,
            "owner": "ip_blacklist",
        }
    ]
