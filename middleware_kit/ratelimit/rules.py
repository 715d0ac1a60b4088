"""Rate-limit rules in nova's syntax, parsed once into value objects.

``(VERB, "URI", REGEX, VALUE, UNIT)`` groups separated by ``;``: a verb (or ``*``), a
human-readable URI (quotes optional), a regular expression matched with ``re.match``
(anchored at the start, like nova) against the request path, a positive whole number
and SECOND, MINUTE, HOUR or DAY in any case.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

UNITS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
SYNTAX = '(VERB, "URI", REGEX, VALUE, UNIT)'
KEY_PREFIX = "mkrl:"  # of every counter key: mkrl:<rule id>:<key>
MAX_PLANNED_RULES = 6
VERBS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_GROUPS = re.compile(r";(?=\s*\()")
_VERB = re.compile(r"\*|[A-Za-z]+")


@dataclass(frozen=True)
class Rule:
    """One limit: at most ``value`` requests of one key in any ``unit``-long interval."""

    verb: str
    uri: str
    regex: str
    value: int
    unit: str
    pattern: re.Pattern[str] = field(repr=False, compare=False)
    window_ms: int = field(repr=False, compare=False)
    # Stable across processes and hosts with the same rule: names its counters.
    id: str = field(repr=False, compare=False)
    matches_all: bool = field(repr=False, compare=False)

    @property
    def details(self) -> str:
        """nova's explanation of a denial."""
        verb = "" if self.verb == "*" else f" {self.verb}"
        unit = self.unit.lower()
        return f"Only {self.value}{verb} request(s) can be made to {self.uri} every {unit}."

    @property
    def window_s(self) -> int:
        return self.window_ms // 1000


def make_rule(verb: str, uri: str, regex: str, value: int, unit: str) -> Rule:
    """A rule from its five parts; raises ``ValueError`` naming what is wrong."""
    verb, unit = verb.upper(), unit.upper()
    if not _VERB.fullmatch(verb):
        raise ValueError(f"verb {verb!r} is not a method name or *")
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r} is not one of {', '.join(UNITS)} (any case)")
    if value < 1:
        raise ValueError(f"value {value} is not a positive whole number")
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise ValueError(f"regex {regex!r} does not compile: {exc}") from None
    digest = hashlib.blake2b(f"{verb} {value} {unit} {regex}".encode(), digest_size=6)
    return Rule(
        verb,
        uri,
        regex,
        value,
        unit,
        pattern=pattern,
        window_ms=UNITS[unit] * 1000,
        id=digest.hexdigest(),
        matches_all=regex in (".*", "^.*", ""),
    )


def parse_rules(raw: str) -> tuple[Rule, ...]:
    """nova's ``limits`` syntax; an empty string is no rules."""
    rules = []
    for piece in _GROUPS.split(raw.strip()):
        group = piece.strip().rstrip(";").strip()
        if not group:
            continue
        try:
            rules.append(_parse_group(group))
        except ValueError as exc:
            raise ValueError(f"bad rule {group!r}: {exc}; expected {SYNTAX}") from None
    return tuple(rules)


def _parse_group(group: str) -> Rule:
    if not (group.startswith("(") and group.endswith(")")):
        raise ValueError("a rule is surrounded by parentheses")
    verb, sep, rest = group[1:-1].partition(",")
    rest = rest.strip()
    if rest.startswith('"'):
        uri, quote, rest = rest[1:].partition('"')
        rest = rest.strip()
        if not quote or not rest.startswith(","):
            raise ValueError("the URI has no closing quote and comma")
        rest = rest[1:]
    else:
        uri, _, rest = rest.partition(",")
    parts = rest.rsplit(",", 2)
    if not sep or len(parts) != 3:
        raise ValueError("a rule has five parts separated by commas")
    regex, value, unit = (part.strip() for part in parts)
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"value {value!r} is not a positive whole number") from None
    return make_rule(verb.strip(), uri.strip(), regex, number, unit)


DEFAULT_RULES = tuple(
    make_rule(verb, "*", ".*", 120, "MINUTE") for verb in ("POST", "PUT", "DELETE")
)


def by_verb(rules: Iterable[Rule]) -> Mapping[str, tuple[Rule, ...]]:
    """The rules that can match each verb, in order; key ``*`` is for any other verb."""
    rules = tuple(rules)
    verbs = {*VERBS, *(rule.verb for rule in rules if rule.verb != "*"), "*"}
    return {verb: tuple(r for r in rules if r.verb in (verb, "*")) for verb in verbs}


def policy_names(rules: Iterable[Rule]) -> dict[Rule, str]:
    """Short distinct names for the ``RateLimit-Policy`` header: ``post-minute``, ..."""
    names: dict[Rule, str] = {}
    used: dict[str, int] = {}
    for rule in rules:
        base = f"{'any' if rule.verb == '*' else rule.verb.lower()}-{rule.unit.lower()}"
        used[base] = used.get(base, 0) + 1
        names[rule] = base if used[base] == 1 else f"{base}-{used[base]}"
    return names


class Plan:
    """Rules to check together, with what the hot path needs precomputed."""

    __slots__ = (
        "_names",
        "_subsets",
        "all_match",
        "limits",
        "names",
        "policy",
        "prefixes",
        "records",
        "rules",
        "views",
        "windows_ms",
    )

    def __init__(
        self, rules: Sequence[Rule], names: Mapping[Rule, str], *, subsets: bool = False
    ) -> None:
        self.rules = tuple(rules)
        self.all_match = all(rule.matches_all for rule in rules)
        self.prefixes = [f"{KEY_PREFIX}{rule.id}:" for rule in rules]
        self.limits = [rule.value for rule in rules]
        self.windows_ms = [rule.window_ms for rule in rules]
        self.names = [f'"{names[rule]}"' for rule in rules]
        # What environ['middleware_kit.ratelimit'] shows of each rule, less its state.
        self.views = [
            {"verb": r.verb, "uri": r.uri, "regex": r.regex, "value": r.value, "unit": r.unit}
            for r in rules
        ]
        # Per rule, what the hot path reads for its state: (value, window, view, name).
        self.records = tuple(
            zip(self.limits, self.windows_ms, self.views, self.names, strict=True)
        )
        self.policy = ", ".join(
            f"{name};q={rule.value};w={rule.window_s}"
            for name, rule in zip(self.names, rules, strict=True)
        )
        self._names = names
        # Every subset of a few rules, planned ahead: matching() then allocates nothing.
        self._subsets: dict[tuple[bool, ...], Plan] = {}
        if subsets and len(rules) <= MAX_PLANNED_RULES:
            for mask in itertools.product((False, True), repeat=len(rules)):
                chosen = [rule for rule, keep in zip(rules, mask, strict=True) if keep]
                self._subsets[mask] = Plan(chosen, names)

    def matching(self, path: str) -> Plan:
        """The plan of the rules whose regex matches ``path``."""
        mask = tuple(bool(r.matches_all or r.pattern.match(path)) for r in self.rules)
        plan = self._subsets.get(mask)
        if plan is None:
            plan = Plan([r for r, keep in zip(self.rules, mask, strict=True) if keep], self._names)
        return plan


def plans(rules: Iterable[Rule], names: Mapping[Rule, str]) -> dict[str, Plan]:
    return {verb: Plan(rs, names, subsets=True) for verb, rs in by_verb(rules).items()}
