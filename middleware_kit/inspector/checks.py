"""Checks of a resolved tree: chain order, defaults, and our factories' own option checks.

Only our filters (identified by entry point) are judged; filters of other packages are
shown, never imported, never called.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from middleware_kit.inspector import sources
from middleware_kit.inspector.model import ERROR, WARNING, Chain, Obj, Problem, is_secret
from middleware_kit.pipeline import NOLIMIT_SUFFIX

# Our filters that can answer a request without calling the app they wrap.
ANSWERING = frozenset(
    {"faultwrap", "sizelimit", "ip_blacklist", "noauth", "authtoken", "context", "ratelimit"}
)
AUTH = frozenset({"noauth", "authtoken"})
# Exceptions by which a factory says its options are wrong (ConfigError is a LookupError).
OPTION_ERRORS = (LookupError, ValueError, TypeError, ImportError)
CALLABLE_PROTOCOLS = frozenset({sources.FILTER_PROTOCOL, sources.APP_PROTOCOL})


class Walked:
    """One chain met in the tree, with where it is defined."""

    def __init__(self, chain: Chain, section: str, strategy: str | None, by_default: bool):
        self.chain = chain
        self.section = section
        self.strategy = strategy
        self.by_default = by_default  # served when the ini's own [DEFAULT] applies


def walk(chain: Chain, section: str, strategy: str | None = None) -> Iterator[Walked]:
    """Every chain of the tree, ``chain`` first."""
    return _walk(chain, section, strategy, by_default=True)


def _walk(
    chain: Chain, section: str, strategy: str | None, *, by_default: bool
) -> Iterator[Walked]:
    section = chain.section or section
    yield Walked(chain, section, strategy, by_default)
    app = chain.app
    inner = app.section or app.name
    for route in app.routes:
        yield from _walk(route.chain, inner, None, by_default=by_default)
    for choice in app.strategies:
        default = by_default and choice.name == app.selected_by_default
        yield from _walk(choice.chain, inner, choice.name, by_default=default)


def check(root: Chain, root_section: str) -> list[Problem]:
    problems: list[Problem] = []
    tried: dict[tuple[Any, ...], list[tuple[str, str]]] = {}
    for walked in walk(root, root_section):
        for message in _order(walked):
            problems.append(Problem(WARNING, walked.section, message, walked.strategy))
        for obj in [*walked.chain.filters, walked.chain.app]:
            key = (obj.section, obj.target, obj.protocol, tuple(sorted(obj.options.items())))
            if key not in tried:
                tried[key] = _try_factory(obj)
            section = obj.section or walked.section
            problems += [Problem(sev, section, message) for sev, message in tried[key]]
    return problems


def _order(walked: Walked) -> list[str]:
    """Warnings about the order of our filters in one chain (outermost first)."""
    filters = [f for f in walked.chain.filters if f.type == "filter"]
    found: list[str] = []

    def first(*kinds: str) -> int | None:
        return next((i for i, f in enumerate(filters) if f.ours in kinds), None)

    catch = first("catch_errors")
    if catch:
        outer = filters[0].name
        found.append(f"{filters[catch].name} is not outermost: what {outer} raises escapes it")
    request_id = first("request_id")
    answering = [f.name for f in filters[:request_id] if f.ours in ANSWERING]
    if request_id is not None and answering:
        found.append(
            f"{filters[request_id].name} comes after {', '.join(answering)}, which can "
            "answer on their own: those answers carry no request id"
        )
    auth = first(*AUTH)
    if auth is not None:
        name = filters[auth].name
        for f in filters[:auth]:
            if f.ours == "ratelimit" and f.options.get("key", "").strip().lower() == "user":
                found.append(
                    f"{f.name} counts per user (key = user) but comes before {name}: "
                    "no user is known yet"
                )
            if f.ours == "context":
                found.append(f"{f.name} comes before {name}: no identity is known yet")
        found += [
            f"{f.name} comes after {name}: oversized requests are authenticated before "
            "being refused"
            for f in filters[auth + 1 :]
            if f.ours == "sizelimit"
        ]
    noauth = first("noauth")
    if noauth is not None and walked.by_default:
        how = "the ini's [DEFAULT] selects this chain" if walked.strategy else "always served"
        found.append(
            f"{filters[noauth].name} is in a chain served by default ({how}): "
            "requests are not authenticated"
        )
    limit = first("ratelimit")
    if limit is not None and (walked.strategy or "").endswith(NOLIMIT_SUFFIX):
        found.append(
            f"a {NOLIMIT_SUFFIX} chain still has {filters[limit].name}: "
            "api_rate_limit = false does not turn rate limiting off"
        )
    return found


def _try_factory(obj: Obj) -> list[tuple[str, str]]:
    """Call one of our factories with its options, as loading would; report what it says."""
    if obj.ours is None or obj.type == "composite" or obj.protocol not in CALLABLE_PROTOCOLS:
        return []
    assert obj.target is not None
    try:
        with warnings.catch_warnings():
            # What a dependency says on import is not about this ini.
            warnings.simplefilter("ignore")
            factory = metadata.EntryPoint(name=obj.ours, group="", value=obj.target).load()
    except (ImportError, AttributeError) as exc:
        return [(ERROR, f"cannot import {obj.target}: {first_line(exc)}")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            factory(dict(obj.global_conf), **obj.options)
        except OPTION_ERRORS as exc:
            return [(ERROR, _masked(obj, first_line(exc)))]
    return [(WARNING, _masked(obj, str(w.message))) for w in caught]


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _masked(obj: Obj, message: str) -> str:
    """``message`` without the values of the object's secret options."""
    for key, value in obj.options.items():
        if is_secret(key) and len(value) >= 3:
            message = message.replace(value, "***")
    return message
