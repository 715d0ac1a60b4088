"""The sliding log: exact "at most N in any window", all rules of a request together.

Each (rule, key) keeps the times (integer milliseconds, ascending) of the requests it
admitted in the last window, at most N of them. A request at ``now`` is admitted when
every matched log holds fewer than N times newer than ``now - window``; then, and only
then, ``now`` is appended to every one of them. A denied request is counted nowhere.

Every storage answers the same :data:`Outcome`: whether the request was admitted and,
per rule, ``(count, free_at)``: the times in the window after the decision, and the time
whose expiry lets one more request in (``count == 0``: ``now``). The memory storage runs
:func:`outcome` on its logs, Redis the same steps in Lua, and memcached replays a shared
log entry by entry with the same rule (:mod:`.shared_log`).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence

Outcome = tuple[bool, list[tuple[int, int]]]


def new_log() -> array[int]:
    return array("q")


def window_start(log: array[int], horizon: int) -> int:
    """Index of the first time in ``log`` newer than ``horizon``."""
    if not log or log[0] > horizon:
        return 0
    return bisect_right(log, horizon)


def decide(
    logs: Sequence[array[int]], limits: Sequence[int], windows_ms: Sequence[int], now_ms: int
) -> tuple[bool, list[int]]:
    """Whether every log admits ``now_ms``; the window start index of each log."""
    admitted = True
    starts = []
    for log, limit, window in zip(logs, limits, windows_ms, strict=True):
        start = window_start(log, now_ms - window)
        starts.append(start)
        if len(log) - start >= limit:
            admitted = False
    return admitted, starts


def stamp(log: array[int], now_ms: int) -> int:
    """The time to append for a request at ``now_ms``: never before the log's newest.

    Processes (and threads) read the clock before they reach the log, so a request can
    arrive after one that read the clock later. Counting it at the newer time keeps the
    log sorted and only keeps it in the window a few ms longer: never more than N.
    """
    return log[-1] if log and log[-1] > now_ms else now_ms


def commit(log: array[int], start: int, now_ms: int) -> int:
    """Append the request's :func:`stamp`; drop the expired head when it is at least
    half the log (so trimming is amortized O(1)). Returns the new window start index."""
    log.append(stamp(log, now_ms))
    if start and start * 2 >= len(log):
        del log[:start]
        return 0
    return start


def state(log: array[int], start: int, limit: int, now_ms: int) -> tuple[int, int]:
    """``(count, free_at)`` of a log whose window starts at ``start``."""
    count = len(log) - start
    if count == 0:
        return 0, now_ms
    if count >= limit:
        return count, log[start + count - limit]
    return count, log[start]


def outcome(
    logs: Sequence[array[int]], limits: Sequence[int], windows_ms: Sequence[int], now_ms: int
) -> Outcome:
    """Decide and commit in place (the caller holds whatever makes this atomic)."""
    admitted, starts = decide(logs, limits, windows_ms, now_ms)
    if admitted:
        starts = [commit(log, start, now_ms) for log, start in zip(logs, starts, strict=True)]
    return admitted, [
        state(log, start, limit, now_ms)
        for log, start, limit in zip(logs, starts, limits, strict=True)
    ]
