"""Composites whose shape is known, expanded into routes or strategies.

- ``urlmap_factory`` (PasteDeploy's ``egg:Paste#urlmap``, nova's ``call:...urlmap_factory``):
  every option but ``not_found_app`` is a URL prefix mapped to an app.
- our ``pipeline``: every option is a strategy; the global conf selects one, as
  :func:`middleware_kit.pipeline.select_chain` does when serving.
- other ``*pipeline_factory*`` callables (nova's, neutron's): strategies shown, the
  choice left to the service (it reads its own configuration).

Anything else is shown with its options and not expanded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from middleware_kit._config import ConfigError
from middleware_kit.inspector.model import Chain, Obj, Route, Strategy, Where
from middleware_kit.pipeline import _NOT_CHAINS, select_chain

if TYPE_CHECKING:
    from middleware_kit.inspector.resolve import Resolver


def expand(resolver: Resolver, obj: Obj) -> None:
    """Resolve what the composite ``obj`` refers to, when its shape is known."""
    attr = (obj.target or "").rpartition(":")[2].rpartition(".")[2]
    obj.shape = "other"
    if obj.loader is None:  # named by URI only: nothing to resolve its names against
        return
    if obj.ours == "pipeline":
        _strategies(resolver, obj, select=True)
    elif attr == "urlmap_factory":
        _routes(resolver, obj)
    elif "pipeline_factory" in attr:
        _strategies(resolver, obj, select=False)


def _routes(resolver: Resolver, obj: Obj) -> None:
    obj.shape = "urlmap"
    here = Where(obj.section or obj.name)
    options = dict(obj.options)
    not_found = options.pop("not_found_app", None) or obj.global_conf.get("not_found_app")
    if not_found:
        options["(not found)"] = not_found
    for prefix, target in options.items():
        chain = resolver.app(obj.loader, target.strip(), obj.global_conf, here)
        obj.routes.append(Route(prefix, target.strip(), chain))


def _strategies(resolver: Resolver, obj: Obj, *, select: bool) -> None:
    obj.shape = "pipeline"
    section = obj.section or obj.name
    chains = {k: v for k, v in obj.options.items() if k not in _NOT_CHAINS}
    if select:
        try:
            obj.selected = select_chain(section, obj.global_conf, chains)
        except ConfigError as exc:
            resolver.error(Where(section), str(exc).removeprefix(f"[{section}]: "))
        try:
            obj.selected_by_default = select_chain(section, _ini_conf(resolver, obj), chains)
        except ConfigError:
            obj.selected_by_default = None
    for strategy, value in chains.items():
        where = Where(section, strategy)
        names = value.split()
        if not names:
            resolver.error(where, "the chain is empty; it needs at least an app")
            continue
        # As pipeline_factory does: members load with the file's own global conf.
        app = resolver.app(obj.loader, names[-1], None, where)
        filters = [f for n in names[:-1] for f in resolver.filters(obj.loader, n, None, where)]
        chain = Chain([*filters, *app.filters], app.app, section)
        obj.strategies.append(Strategy(strategy, chain, strategy == obj.selected))


def _ini_conf(resolver: Resolver, obj: Obj) -> dict[str, Any]:
    """The composite's global conf as the ini alone sets it (``--set`` undone)."""
    conf = dict(obj.global_conf)
    ini = resolver.ini_defaults(obj.loader)
    for key in resolver.settings:
        if key in ini:
            conf[key] = ini[key]
        else:
            conf.pop(key, None)
    return conf
