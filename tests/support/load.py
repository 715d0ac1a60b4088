"""A bounded load generator over loopback, and readings of a server process.

``run_load`` keeps ``connections`` keep-alive HTTP/1.1 connections busy until
``duration_s`` passes or ``max_requests`` have been sent, whichever comes first, and
counts on the client side what was sent and what came back. Each connection is a
thread with its own ``http.client`` connection; nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import collections
import http.client
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.servers import LOOPBACK

# (method, path, headers, body) for the n-th request of a connection.
RequestFactory = Callable[[int, int], tuple[str, str, dict[str, str], bytes | None]]


@dataclass
class LoadResult:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    error_kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    elapsed_s: float = 0.0
    max_latency_s: float = 0.0

    def count(self, low: int, high: int) -> int:
        return sum(n for status, n in self.statuses.items() if low <= status <= high)


def run_load(
    port: int,
    make_request: RequestFactory,
    *,
    connections: int,
    duration_s: float,
    max_requests: int,
    timeout_s: float = 10.0,
    on_answer: Callable[[int, float, float], None] | None = None,
) -> LoadResult:
    """``on_answer(status, started, ended)`` (monotonic seconds) sees every answer."""
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s
    budget = iter(range(max_requests))

    def worker(worker_id: int) -> None:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
        n = 0
        try:
            while time.monotonic() < deadline:
                with lock:
                    if next(budget, None) is None:
                        return
                    result.sent += 1
                method, path, headers, body = make_request(worker_id, n)
                n += 1
                started = time.monotonic()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    ended = time.monotonic()
                    latency = ended - started
                    if on_answer is not None:
                        on_answer(response.status, started, ended)
                    with lock:
                        result.answered += 1
                        result.statuses[response.status] += 1
                        result.max_latency_s = max(result.max_latency_s, latency)
                    if response.will_close:
                        conn.close()
                        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        result.errors += 1
                        result.error_kinds[type(exc).__name__] += 1
                    conn.close()
                    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration_s + timeout_s + 5)
    result.elapsed_s = time.monotonic() - started
    return result


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def tcp_peer_ports(pid: int) -> collections.Counter[int]:
    """How many TCP sockets of a process are connected to each remote port."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    ports: collections.Counter[int] = collections.Counter()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as sockets:
            next(sockets)  # the header line
            for line in sockets:
                fields = line.split()
                if fields[9] in inodes:
                    ports[int(fields[2].rsplit(":", 1)[1], 16)] += 1
    return ports
