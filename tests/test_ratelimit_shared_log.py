"""The shared log the memcached storage replays: decisions, incremental replay, compaction."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from middleware_kit.ratelimit.memory import MemoryStorage
from middleware_kit.ratelimit.shared_log import Decision, Replay, new_head, rule_token

RULES = [rule_token("a", 2, 1000), rule_token("b", 3, 5000), rule_token("c", 1, 300)]
# (ms since the previous entry, possibly negative: another host's clock; rules used)
ENTRIES = st.lists(
    st.tuples(
        st.integers(min_value=-40, max_value=900),
        st.lists(st.sampled_from(RULES), min_size=1, max_size=3, unique=True),
    ),
    max_size=120,
)


def entries(spec: list[tuple[int, list[bytes]]], start: int = 0) -> list[tuple[bytes, bytes]]:
    """(nonce, appended bytes) per entry."""
    out, now = [], 1_000_000
    for i, (step, rules) in enumerate(spec):
        now += step
        nonce = b"%012x" % (start + i)
        out.append((nonce, b" %x,%s,%s" % (now, nonce, b"+".join(rules))))
    return out


def decide_all(value: bytes, replay: Replay | None = None) -> dict[bytes, Decision | None]:
    replay = replay or Replay(value.split(b" ", 1)[0])
    waiting: dict[bytes, Decision | None] = dict.fromkeys(
        entry.split(b",")[1] for entry in value.split()[1:] if entry.count(b",") == 2
    )
    replay.feed(value, waiting)
    return waiting


@given(ENTRIES, st.integers(min_value=0, max_value=120))
def test_replay_in_pieces_decides_as_in_one_go(
    spec: list[tuple[int, list[bytes]]], cut: int
) -> None:
    head, log = new_head(), entries(spec)
    value = head + b"".join(data for _nonce, data in log)
    whole = decide_all(value)
    replay = Replay(head)
    first = head + b"".join(data for _nonce, data in log[:cut])
    waiting: dict[bytes, Decision | None] = {nonce: None for nonce, _data in log}
    replay.feed(first, waiting)
    assert replay.continues(value)
    replay.feed(value, waiting)
    assert waiting == whole


@given(ENTRIES, ENTRIES)
def test_compaction_changes_no_later_decision(
    before: list[tuple[int, list[bytes]]], after: list[tuple[int, list[bytes]]]
) -> None:
    # The entries after the compaction start at the same clock as those before it: a
    # host far behind, whose times the newest one before must still raise.
    head, old, new = new_head(), entries(before), entries(after, start=10_000)
    prefix = head + b"".join(d for _n, d in old)
    suffix = b"".join(d for _n, d in new)
    uncompacted = decide_all(prefix + suffix)

    replay = Replay(head)
    replay.feed(prefix, {})
    compacted = replay.compacted()
    assert not replay.continues(compacted)  # a new generation
    again = decide_all(compacted + suffix)
    for nonce, _data in new:
        assert again[nonce] == uncompacted[nonce]
    # Only admitted entries survive, each at most once.
    kept = [e.split(b",")[1] for e in compacted.split()[1:] if e.split(b",")[1]]
    assert len(kept) == len(set(kept))
    assert all(uncompacted[nonce] is not None and uncompacted[nonce][0] for nonce in kept)  # type: ignore[index]


@given(st.lists(st.integers(min_value=0, max_value=700), max_size=150))
def test_one_rule_decides_as_the_memory_storage(steps: list[int]) -> None:
    rule = rule_token("r", 3, 1000)
    reference, value, now = MemoryStorage(), new_head(), 5_000_000
    expected, nonces = {}, []
    for i, step in enumerate(steps):
        now += step
        nonce = b"%012x" % i
        nonces.append(nonce)
        value += b" %x,%s,%s" % (now, nonce, rule)
        expected[nonce] = reference.hit(["r"], [3], [1000], now)
    assert decide_all(value) == {nonce: expected[nonce] for nonce in nonces}


def test_a_full_rule_is_denied_without_the_storage() -> None:
    rule = rule_token("r", 2, 1000)
    value = new_head() + b" 3e8,n1,%s 3e9,n2,%s" % (rule, rule)
    replay = Replay(value.split(b" ", 1)[0])
    replay.feed(value, {})
    assert replay.denies([rule], 1500) == (False, [(2, 1000)])
    assert replay.denies([rule], 2000) is None  # the first time left the window
    assert replay.denies([rule_token("other", 1, 1000)], 1500) is None
    assert replay.states([rule], 1500) == [(2, 1000)]  # asking changed nothing


def test_foreign_bytes_are_skipped() -> None:
    rule = rule_token("r", 1, 1000)
    value = b"not a log 3e8,n1,%s zz,n2,%s 3e8,n3,x.y 3e9,n4,%s" % (rule, rule, rule)
    assert decide_all(value) == {
        b"n1": (True, [(1, 1000)]),
        b"n2": None,
        b"n3": None,
        b"n4": (False, [(1, 1000)]),
    }


def test_compaction_keeps_a_time_on_the_edge_of_its_window() -> None:
    rule = rule_token("r", 2, 1000)
    value = new_head() + b" %x,n1,%s %x,n2,%s" % (1000, rule, 1999, rule)
    replay = Replay(value.split(b" ", 1)[0])
    replay.feed(value, {})
    later = b" %x,n3,%s" % (1999, rule)
    assert decide_all(replay.compacted() + later)[b"n3"] == (False, [(2, 1000)])
