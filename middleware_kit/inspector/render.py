"""A report as text for operators or as JSON for scripts (shape in the package docstring)."""

from __future__ import annotations

import json
from typing import Any

from middleware_kit.inspector.model import Chain, Obj, Report, shown

INDENT = "  "


def render_json(report: Report) -> str:
    document = {
        "ini": report.ini,
        "name": report.name,
        "global_conf": shown(report.global_conf),
        "app": _chain_json(report.root),
        "problems": [
            {"severity": p.severity, "section": p.section, "chain": p.chain, "message": p.message}
            for p in report.problems
        ],
        "errors": report.errors,
        "warnings": report.warnings,
    }
    return json.dumps(document, indent=2) + "\n"


def _chain_json(chain: Chain) -> dict[str, Any]:
    return {"filters": [_obj_json(f) for f in chain.filters], "app": _obj_json(chain.app)}


def _obj_json(obj: Obj) -> dict[str, Any]:
    found: dict[str, Any] = {
        "type": obj.type,
        "name": obj.name,
        "section": obj.section,
        "entry_point": obj.entry_point,
        "ours": obj.ours,
        "options": shown(obj.options),
    }
    if obj.type == "unresolved":
        found["reason"] = obj.reason
    if obj.type == "composite":
        found["shape"] = obj.shape
        found["routes"] = [
            {"prefix": r.prefix, "target": r.target, "chain": _chain_json(r.chain)}
            for r in obj.routes
        ]
        found["strategies"] = [
            {"name": s.name, "selected": s.selected, "chain": _chain_json(s.chain)}
            for s in obj.strategies
        ]
        found["selected"] = obj.selected
        found["selected_by_default"] = obj.selected_by_default
    return found


def render_text(report: Report) -> str:
    conf = shown(report.global_conf)
    lines = [
        f"{report.ini}: app {report.name!r}",
        "global conf: " + (", ".join(f"{k} = {v}" for k, v in sorted(conf.items())) or "none"),
        "",
        *_chain_lines(report.root, 0),
        "",
        *(p.line() for p in report.problems),
        _summary(report),
    ]
    return "\n".join(lines) + "\n"


def _summary(report: Report) -> str:
    def count(n: int, what: str) -> str:
        return f"{n} {what}" + ("" if n == 1 else "s")

    return f"{count(report.errors, 'error')}, {count(report.warnings, 'warning')}"


def _chain_lines(chain: Chain, depth: int, lead: str = "") -> list[str]:
    """``chain`` outermost first; ``lead`` prefixes a chain that is only an app."""
    pad = INDENT * depth
    labels = [f"{number}. {obj.name}" for number, obj in enumerate(chain.filters, 1)]
    labels.append(f"app: {chain.app.name}" if chain.filters else lead + chain.app.name)
    width = max(len(label) for label in labels)
    lines = []
    for label, obj in zip(labels, [*chain.filters, chain.app], strict=True):
        lines.append(f"{pad}{label:<{width}}  {_describe(obj)}")
        lines += _option_lines(obj, depth + 2)
    return lines + _composite_lines(chain.app, depth + 1)


def _composite_lines(obj: Obj, depth: int) -> list[str]:
    pad = INDENT * depth
    lines = []
    for route in obj.routes:
        if route.chain.filters:
            lines.append(f"{pad}{route.prefix} ->")
            lines += _chain_lines(route.chain, depth + 1)
        else:
            lines += _chain_lines(route.chain, depth, lead=f"{route.prefix} -> ")
    for strategy in obj.strategies:
        marks = [
            mark
            for mark, on in (
                ("selected", strategy.selected),
                ("the ini's default", strategy.name == obj.selected_by_default),
            )
            if on
        ]
        lines.append(f"{pad}{strategy.name}" + (f" ({', '.join(marks)})" if marks else "") + ":")
        lines += _chain_lines(strategy.chain, depth + 1)
    if obj.shape == "pipeline" and obj.ours is None:
        lines.append(f"{pad}(the service chooses among these; not judged here)")
    return lines


def _describe(obj: Obj) -> str:
    if obj.type == "unresolved":
        return f"?? {obj.reason}"
    text = f"{obj.type} {obj.entry_point}"
    if obj.section and obj.section.partition(":")[2].strip() != obj.name:
        text += f"  [{obj.section}]"
    if obj.ours is None and obj.type != "composite":
        text += "  (other package)"
    if obj.type == "composite" and obj.shape == "other":
        text += "  (composite of unknown shape: not expanded)"
    return text


def _option_lines(obj: Obj, depth: int) -> list[str]:
    if obj.type == "composite" and obj.shape != "other":
        return []  # its options are the routes or strategies shown below it
    return [f"{INDENT * depth}{key} = {value}" for key, value in shown(obj.options).items()]
