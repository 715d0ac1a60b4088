"""Where objects come from: entry points looked up in installed metadata, never imported."""

from __future__ import annotations

import difflib
import functools
import re
from importlib import metadata
from typing import Any

from middleware_kit.inspector.model import Obj
from middleware_kit.inspector.sections import Section

OUR_DISTRIBUTION = "middleware-kit"
COMPOSITE_PROTOCOLS = frozenset({"paste.composite_factory", "paste.composit_factory"})
APP_PROTOCOL = "paste.app_factory"
FILTER_PROTOCOL = "paste.filter_factory"
# Section prefix -> protocol, for `use = call:...`, which does not say (as PasteDeploy does).
SECTION_PROTOCOLS = {
    "app": APP_PROTOCOL,
    "application": APP_PROTOCOL,
    "composite": "paste.composite_factory",
    "composit": "paste.composite_factory",
}


def object_type(protocol: str | None, default: str) -> str:
    """ "app", "composite" or "filter", from a paste protocol (``default`` when unknown)."""
    if protocol in COMPOSITE_PROTOCOLS:
        return "composite"
    if protocol == APP_PROTOCOL:
        return "app"
    if protocol is not None and protocol.startswith("paste.filter"):
        return "filter"
    return default


def canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


@functools.cache
def our_modules() -> dict[str, str]:
    """Module of each of our paste entry points -> entry point name."""
    found = metadata.distribution(OUR_DISTRIBUTION).entry_points
    return {ep.module: ep.name for ep in found if ep.group.startswith("paste.")}


def ours_by_target(target: str) -> str | None:
    """Our entry point name for ``module:object`` when the module is one of ours.

    A module of our package that no entry point names (a typo) counts as ours too, under
    its own name, so that the factory check reports that it cannot be imported.
    """
    module = target.partition(":")[0].strip()
    package, _, name = module.partition(".")
    if module in our_modules():
        return our_modules()[module]
    return name if package == "middleware_kit" and name else None


def egg(kind: Any, uri: str, spec: str, name: str, global_conf: dict[str, Any]) -> Obj | str:
    """The object ``egg:spec#name`` names for ``kind`` (PasteDeploy's APP or FILTER), or
    why it does not resolve."""
    try:
        dist = metadata.distribution(spec)
    except (metadata.PackageNotFoundError, ValueError):
        return f"unknown egg {spec!r}: no such distribution is installed"
    protocols = [protocol for group in kind.egg_protocols for protocol in group]
    found = []
    for group in kind.egg_protocols:
        entry = next(
            (ep for p in group for ep in dist.entry_points if ep.group == p and ep.name == name),
            None,
        )
        if entry is not None:
            found.append(entry)
    if len(found) > 1:
        return f"{spec} has several {kind.name} entry points named {name!r}"
    if not found:
        known = sorted({ep.name for ep in dist.entry_points if ep.group in protocols})
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"it has: {', '.join(known) or 'none'}"
        return f"unknown egg name {name!r}: {spec} has no {kind.name} entry point so named; {hint}"
    entry = found[0]
    ours = entry.name if canonical(dist.name) == OUR_DISTRIBUTION else None
    return Obj(
        type=object_type(entry.group, "app"),
        name=name,
        section=None,
        entry_point=uri,
        target=entry.value,
        ours=ours,
        protocol=entry.group,
        global_conf=dict(global_conf),
    )


def explicit(kind: Any, sec: Section) -> Obj | str:
    """The object ``paste.<x>_factory = module:object`` names in a section, or why the
    section names none."""
    possible = []
    for group in kind.egg_protocols:
        protocol = next((p for p in group if p in sec.local), None)
        if protocol is not None:
            possible.append(protocol)
    if len(possible) > 1:
        return f"several factories given: {', '.join(possible)}"
    if not possible:
        wanted = " or ".join(p for group in kind.egg_protocols for p in group)
        return f"neither 'use' nor a factory ({wanted} = module:object) is given"
    protocol = possible[0]
    target = sec.local.pop(protocol).strip()
    return Obj(
        type=object_type(protocol, "app"),
        name=sec.name,
        section=sec.section,
        entry_point=f"{protocol} = {target}",
        target=target,
        ours=ours_by_target(target),
        protocol=protocol,
        options=sec.local,
        global_conf=sec.conf,
        loader=sec.loader,
    )
