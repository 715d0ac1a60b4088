"""What an ini builds, as plain data: objects, chains, composites and problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

ERROR = "error"
WARNING = "warning"
# Option names containing one of these have their values shown as MASK.
SECRET_WORDS = ("password", "secret", "token")
MASK = "***"
# Global conf entries PasteDeploy adds itself; not worth showing.
PASTE_DEFAULTS = frozenset({"here", "__file__"})


class Where(NamedTuple):
    """Where a problem is reported: a section, and the pipeline strategy if any."""

    section: str
    chain: str | None = None


@dataclass
class Obj:
    """One app, composite or filter: where it comes from and its effective options."""

    type: str  # "app", "composite", "filter" or "unresolved"
    name: str  # as referenced
    section: str | None  # "filter:sizelimit"; None when referenced by URI only
    entry_point: str  # "egg:middleware_kit#sizelimit", "call:mod:fn", "paste.filter_factory = m:o"
    target: str | None = None  # the "module:attr" it loads, when known without importing
    ours: str | None = None  # our entry point name ("sizelimit"), None for other packages
    protocol: str | None = None  # "paste.filter_factory", ...
    options: dict[str, str] = field(default_factory=dict)
    global_conf: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # unresolved only
    shape: str | None = None  # composites: "urlmap", "pipeline" or "other"
    routes: list[Route] = field(default_factory=list)
    strategies: list[Strategy] = field(default_factory=list)
    selected: str | None = None
    selected_by_default: str | None = None
    loader: Any = None  # the ConfigLoader it came from (composites resolve through it)


@dataclass
class Chain:
    """Filters outermost first, then the app they wrap."""

    filters: list[Obj]
    app: Obj
    section: str | None = None  # the section that defines it, when one does


@dataclass
class Route:
    prefix: str
    target: str  # the name the prefix maps to
    chain: Chain


@dataclass
class Strategy:
    name: str
    chain: Chain
    selected: bool


@dataclass(frozen=True)
class Problem:
    severity: str  # ERROR or WARNING
    section: str
    message: str
    chain: str | None = None  # the pipeline strategy, when the problem is in one

    def line(self) -> str:
        where = f"[{self.section}]" + (f" chain {self.chain!r}" if self.chain else "")
        return f"{self.severity} {where}: {self.message}"


@dataclass
class Report:
    ini: str
    name: str
    global_conf: dict[str, Any]
    root: Chain
    problems: list[Problem]

    @property
    def errors(self) -> int:
        return sum(p.severity == ERROR for p in self.problems)

    @property
    def warnings(self) -> int:
        return sum(p.severity == WARNING for p in self.problems)

    def exit_status(self, *, strict: bool = False) -> int:
        """0 clean, 1 warnings under ``strict``, 2 errors (the CLI's usage-error status)."""
        if self.errors:
            return 2
        return 1 if strict and self.warnings else 0


def is_secret(option: str) -> bool:
    lowered = option.lower()
    return any(word in lowered for word in SECRET_WORDS)


def shown(options: dict[str, Any]) -> dict[str, str]:
    """Options as displayed: secrets masked, PasteDeploy's own entries left out."""
    return {
        key: MASK if is_secret(key) else str(value)
        for key, value in options.items()
        if key not in PASTE_DEFAULTS
    }
