"""An append-only request log that every process decides alike, by replaying it.

The memcached storage keeps one log per counted key (user, project or address), shared
by all the rules of that key. A request appends one entry and reads the log back in
the same round trip; memcached orders the appends, so every process that replays the
log sees the same entries in the same order and reaches the same decision for each:

- entry: ``<time ms, hex>,<nonce>,<rule>+<rule>...``, a rule being
  ``<id>.<limit>.<window ms>`` (an entry carries what is needed to judge it, so a
  process replays entries of rules it was not asked about);
- replay: an entry's time is raised to the newest time before it (clocks differ a
  little between hosts); it is admitted when each of its rules has fewer than
  ``limit`` admitted times in the window before it, and then counts in every one of
  them. A denied entry counts nowhere: exactly the sliding log of :mod:`.algorithm`.

A log starts with ``#<generation>``. Denied and expired entries are dropped by a
compaction, which writes a new generation holding only the admitted entries still in
a window and the newest time (as an entry with no rules): the decisions of every later
entry are unchanged. Within a generation the log only grows, so a process replays only
what was appended since it last read.
"""

from __future__ import annotations

import os
from collections import deque

COMPACT_SLACK = 64  # entries beyond twice the live ones that make a log worth compacting
MAX_LOG_BYTES = 256 * 1024  # past this a log is compacted at once (memcached takes 1 MiB)

# (admitted, [(count, free_at) per rule of the entry]): see algorithm.state.
Decision = tuple[bool, list[tuple[int, int]]]


class _Rule:
    __slots__ = ("limit", "times", "window_ms")

    def __init__(self, token: bytes) -> None:
        _id, limit, window = token.rsplit(b".", 2)
        self.limit, self.window_ms = int(limit), int(window)
        if self.limit < 1 or self.window_ms < 1:
            raise ValueError(token)
        self.times: deque[int] = deque()  # admitted, ascending, within the window

    def state(self, now_ms: int) -> tuple[int, int]:
        """``(count, free_at)`` at ``now_ms`` (see algorithm.state); changes nothing, as
        entries of other processes may still be replayed at an earlier time."""
        times, horizon = self.times, now_ms - self.window_ms
        start = 0
        for time in times:
            if time > horizon:
                break
            start += 1
        count = len(times) - start
        if count == 0:
            return 0, now_ms
        return count, times[start + count - self.limit] if count >= self.limit else times[start]


def rule_token(tag: str, limit: int, window_ms: int) -> bytes:
    return f"{tag}.{limit}.{window_ms}".encode()


def new_head() -> bytes:
    """The first entry of a new log or a new generation."""
    return b"#" + os.urandom(8).hex().encode()


class Replay:
    """One log as replayed so far: the admitted times per rule, the live entries."""

    __slots__ = ("entries", "head", "kept", "longest_ms", "newest", "offset", "rules")

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.offset = 0  # bytes of the value replayed
        self.entries = 0
        self.newest = 0
        self.longest_ms = 0
        self.rules: dict[bytes, _Rule] = {}
        # Admitted entries, oldest first: (time, nonce, rules, longest window).
        self.kept: deque[tuple[int, bytes, bytes, int]] = deque()

    def continues(self, value: bytes) -> bool:
        """Whether ``value`` is this log grown (same generation), not a new one."""
        return len(value) >= self.offset and value.startswith(self.head)

    def feed(self, value: bytes, waiting: dict[bytes, Decision | None]) -> None:
        """Replay what ``value`` holds past ``offset``; decide the entries in ``waiting``."""
        rules, kept = self.rules, self.kept
        newest = self.newest
        for entry in value[self.offset :].split():
            parts = entry.split(b",")
            if len(parts) != 3:
                continue  # the head, or nothing of ours
            try:
                time = int(parts[0], 16)
                names = parts[2].split(b"+") if parts[2] else []
                chosen = [rules.get(name) or rules.setdefault(name, _Rule(name)) for name in names]
            except ValueError:
                continue
            self.entries += 1
            newest = time = max(time, newest)
            admitted = True
            for rule in chosen:
                times, horizon = rule.times, time - rule.window_ms
                while times and times[0] <= horizon:
                    times.popleft()
                if len(times) >= rule.limit:
                    admitted = False
            if admitted and chosen:
                for rule in chosen:
                    rule.times.append(time)
                kept.append((time, parts[1], parts[2], max(r.window_ms for r in chosen)))
            if parts[1] in waiting:
                waiting[parts[1]] = admitted, [rule.state(time) for rule in chosen]
        self.newest = newest
        self.offset = len(value)
        self.longest_ms = longest = max((rule.window_ms for rule in rules.values()), default=0)
        while kept and kept[0][0] <= newest - longest:
            kept.popleft()

    def denies(self, names: list[bytes], now_ms: int) -> Decision | None:
        """The denial of a request of ``names`` at ``now_ms`` when what was replayed
        already fills one of its rules (admitted times never leave a window early)."""
        states = self.states(names, now_ms)
        for name, (count, _free_at) in zip(names, states, strict=True):
            rule = self.rules.get(name)
            if rule is not None and count >= rule.limit:
                return False, states
        return None

    def states(self, names: list[bytes], now_ms: int) -> list[tuple[int, int]]:
        time = max(now_ms, self.newest)
        return [rule.state(time) if (rule := self.rules.get(n)) else (0, time) for n in names]

    def held(self) -> int:
        """Entries held in memory (admitted times of every rule, live entries)."""
        return len(self.kept) + sum(len(rule.times) for rule in self.rules.values())

    def wasteful(self) -> bool:
        """Whether compacting would at least halve the log."""
        return self.entries > 2 * len(self.kept) + COMPACT_SLACK

    def overdue(self) -> bool:
        """Whether compactions sent along with requests keep losing to other writers."""
        return self.entries > 4 * (len(self.kept) + COMPACT_SLACK) or self.offset > MAX_LOG_BYTES

    def compacted(self) -> bytes:
        """A new generation with the same future: live admitted entries, the newest time."""
        live = [
            b"%x,%s,%s" % (time, nonce, names)
            for time, nonce, names, window in self.kept
            if time > self.newest - window
        ]
        if not live or self.kept[-1][0] < self.newest:
            live.append(b"%x,," % self.newest)
        return b" ".join([new_head(), *live])
