"""``memory://``: the sliding logs in this process, bounded.

Correct within one process (every thread and green thread; one lock of the OS thread,
also under eventlet: :meth:`MemoryStorage.hit` never yields while it holds it, and
eventlet's green lock, a Python class, was a third of its cost; anything in it that
switched green threads would deadlock, so it stays pure computation). Logs are kept
per window length; a log whose newest time is older than its window is dead and is
reclaimed by a sweep of that window's logs, run when the number of logs doubled since
the last sweep or one window (at least ``SWEEP_MIN_S``) after it, so memory follows
the keys active in the last window, whatever passed before.
"""

from __future__ import annotations

import sys
import threading
from array import array
from bisect import bisect_right
from collections.abc import Sequence

from middleware_kit.ratelimit import algorithm
from middleware_kit.ratelimit.algorithm import Outcome

SWEEP_MIN_S = 10
SWEEP_MIN_KEYS = 4096


class _Logs:
    """The logs of one window length and when to sweep them next."""

    __slots__ = ("by_key", "next_sweep_ms", "sweep_above", "window_ms")

    def __init__(self, window_ms: int, now_ms: int) -> None:
        self.window_ms = window_ms
        self.by_key: dict[str, array[int]] = {}
        self.sweep_above = SWEEP_MIN_KEYS
        self.next_sweep_ms = now_ms + max(window_ms, SWEEP_MIN_S * 1000)

    def sweep(self, now_ms: int) -> None:
        horizon = now_ms - self.window_ms
        by_key = self.by_key
        for key in [k for k, log in by_key.items() if not log or log[-1] <= horizon]:
            del by_key[key]
        self.sweep_above = max(SWEEP_MIN_KEYS, 2 * len(by_key))
        self.next_sweep_ms = now_ms + max(self.window_ms, SWEEP_MIN_S * 1000)


def os_thread_lock() -> threading.Lock:
    """A lock of the OS thread even when eventlet has patched ``threading``."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is None:
        return threading.Lock()
    lock: threading.Lock = patcher.original("_thread").allocate_lock()
    return lock


class MemoryStorage:
    """The logs in a dict per window length, behind one lock."""

    max_rule_value: int | None = None

    def __init__(self) -> None:
        self._lock = os_thread_lock()
        self._windows: dict[int, _Logs] = {}

    def hit(
        self,
        keys: Sequence[str],
        limits: Sequence[int],
        windows_ms: Sequence[int],
        now_ms: int,
    ) -> Outcome:
        with self._lock:
            if len(keys) != 1:
                logs = [self._log(k, w, now_ms) for k, w in zip(keys, windows_ms, strict=True)]
                return algorithm.outcome(logs, limits, windows_ms, now_ms)
            # One rule (the common case), inlined: the same steps as algorithm.outcome.
            log, limit = self._log(keys[0], windows_ms[0], now_ms), limits[0]
            horizon = now_ms - windows_ms[0]
            start = 0 if not log or log[0] > horizon else bisect_right(log, horizon)
            count = len(log) - start
            if count >= limit:
                return False, [(count, log[start + count - limit])]
            log.append(log[-1] if log and log[-1] > now_ms else now_ms)
            if start and start * 2 >= len(log):
                del log[:start]
                start = 0
            count += 1
            return True, [(count, log[start + count - limit] if count >= limit else log[start])]

    def _log(self, key: str, window_ms: int, now_ms: int) -> array[int]:
        group = self._windows.get(window_ms)
        if group is None:
            group = self._windows[window_ms] = _Logs(window_ms, now_ms)
        by_key = group.by_key
        if now_ms >= group.next_sweep_ms or len(by_key) >= group.sweep_above:
            group.sweep(now_ms)
        log = by_key.get(key)
        if log is None:
            log = by_key[key] = algorithm.new_log()
        return log

    def __len__(self) -> int:
        """How many logs are held (live or not yet reclaimed)."""
        with self._lock:
            return sum(len(group.by_key) for group in self._windows.values())

    def ping(self) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            self._windows.clear()
