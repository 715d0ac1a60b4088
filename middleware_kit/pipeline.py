"""``pipeline``: a paste composite that serves one of several chains, chosen by global config.

The drop-in for nova's and neutron's ``pipeline_factory``::

    [DEFAULT]
    auth_strategy = noauth

    [composite:api_v1]
    use = egg:middleware_kit#pipeline
    noauth = request_id faultwrap sizelimit noauth context ratelimit demo
    keystone = request_id faultwrap sizelimit authtoken context ratelimit demo
    keystone_nolimit = request_id faultwrap sizelimit authtoken context demo

Every option of the section is a chain: names separated by white space, filters first
(the first listed is outermost), the app last. The global conf (``[DEFAULT]``, or the
``global_conf`` given to ``loadapp``) chooses:

- ``auth_strategy`` (default ``keystone``): the chain to serve;
- ``api_rate_limit`` (boolean, default true): when false, ``<strategy>_nolimit`` is served
  if the section has it.

Every problem is a load-time :class:`~middleware_kit._config.ConfigError` (a
``LookupError``) naming the section: an unknown strategy (with the strategies available),
an empty chain, a name that does not resolve, a bad boolean.
"""

from __future__ import annotations

import logging
from typing import Any

from middleware_kit._config import ConfigError, boolean
from middleware_kit._wsgi import WSGIApp

LOG = logging.getLogger(__name__)

DEFAULT_STRATEGY = "keystone"
NOLIMIT_SUFFIX = "_nolimit"
# Keys PasteDeploy gives a section that are not chains.
_NOT_CHAINS = frozenset({"use", "filter-with", "require"})


def select_chain(section: str, global_conf: dict[str, Any], chains: dict[str, str]) -> str:
    """Return the name of the chain the global conf selects among ``chains``."""
    strategy = str(global_conf.get("auth_strategy", DEFAULT_STRATEGY)).strip()
    raw_limit = str(global_conf.get("api_rate_limit", "true"))
    try:
        rate_limit = boolean(raw_limit)
    except ValueError as exc:
        raise ConfigError(
            f"[{section}]: global option api_rate_limit = {raw_limit!r}: {exc}"
        ) from None
    if strategy not in chains:
        available = ", ".join(sorted(chains)) or "none"
        raise ConfigError(
            f"[{section}]: auth_strategy {strategy!r} has no chain here; "
            f"available strategies: {available}"
        )
    if not rate_limit and strategy + NOLIMIT_SUFFIX in chains:
        return strategy + NOLIMIT_SUFFIX
    return strategy


def pipeline_factory(loader: Any, global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Paste composite factory: build and return the selected chain."""
    section = _section_name(loader, local_conf)
    chains = {name: value for name, value in local_conf.items() if name not in _NOT_CHAINS}
    chosen = select_chain(section, global_conf, chains)
    names = chains[chosen].split()
    if not names:
        raise ConfigError(f"[{section}]: chain {chosen!r} is empty; it needs at least an app")
    app: WSGIApp = _resolve(section, chosen, names[-1], loader.get_app)
    filters = [_resolve(section, chosen, name, loader.get_filter) for name in names[:-1]]
    for make_filter in reversed(filters):
        app = make_filter(app)
    LOG.info("[%s] serves chain %r: %s", section, chosen, " ".join(names))
    return app


def _resolve(section: str, chain: str, name: str, get: Any) -> Any:
    try:
        return get(name)
    except ConfigError as exc:
        raise ConfigError(f"[{section}] chain {chain!r}, {name!r}: {exc}") from exc
    except (LookupError, ImportError) as exc:
        raise ConfigError(
            f"[{section}] chain {chain!r}: {name!r} does not resolve: {exc}"
        ) from exc


def _section_name(loader: Any, local_conf: dict[str, str]) -> str:
    """Find the section this composite was loaded from, for error messages.

    PasteDeploy does not pass it, so look for the composite section whose own options
    are ``local_conf``; fall back to a generic name.
    """
    parser = getattr(loader, "parser", None)
    if parser is None:
        return "composite"
    defaults = parser.defaults()
    for section in parser.sections():
        if not section.startswith(("composite:", "composit:")):
            continue
        own = {
            key: parser.get(section, key)
            for key in parser.options(section)
            if key not in defaults and key not in _NOT_CHAINS and " " not in key
        }
        wanted = {k: v for k, v in local_conf.items() if k not in _NOT_CHAINS}
        if own == wanted:
            return str(section)
    return "composite"
