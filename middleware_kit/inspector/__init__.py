"""``middleware-kit inspect``: show and check what a paste ini really builds, without serving it.

::

    middleware-kit inspect [INI] [--name NAME] [--set KEY=VALUE ...]
                           [--format text|json] [--strict]

The ini is resolved the way PasteDeploy's ``loadapp`` resolves it (same sections, same
``[DEFAULT]``, ``--set`` as global conf, ``use = egg:``/``call:``/``config:``,
``paste.filter_factory = module:object``, ``[pipeline:]``, ``[filter-app:]``,
``filter-with``), but nothing is served and other packages' code is not imported. For the
app NAME (default ``main``) it shows every chain, outermost filter first, with each
object's entry point and effective options (values of options whose name contains
``password``, ``secret`` or ``token`` shown as ``***``); every ``urlmap`` prefix; every
strategy of a ``pipeline`` composite, marking the one the global conf selects and the one
the ini's own ``[DEFAULT]`` selects. Composites of other packages named
``*urlmap_factory`` or ``*pipeline_factory*`` (nova's, neutron's) are expanded the same
way; their choice of strategy is the service's and is not shown.

Checks, each reported with its section (and strategy) and a one-line reason:

- errors: a section that does not exist, an unknown ``egg:`` distribution or entry point
  name, a malformed section; an option our factory rejects (each of our filters and apps
  is imported and its factory called with its options, exactly as loading would; a
  module that is missing is "cannot import"); ``auth_strategy`` or ``api_rate_limit``
  that our ``pipeline`` composite would refuse; an empty chain.
- warnings: ``catch_errors`` not outermost; ``request_id`` after a filter that can answer
  on its own (faultwrap, sizelimit, ip_blacklist, noauth, authtoken, context,
  ratelimit); ``ratelimit`` with ``key = user`` before the auth filter (noauth or
  authtoken); ``sizelimit`` after it; ``context`` before it; ``noauth`` in a chain served
  by default (a plain pipeline, or the strategy the ini's ``[DEFAULT]`` selects); a
  ``_nolimit`` strategy that still has ``ratelimit``; a Python warning one of our
  factories emits.

Filters of other packages are shown by name and entry point and are not judged; only our
entry points (found by name in this distribution's metadata) count for the order checks.

Exit status: 0 clean (warnings allowed), 1 warnings with ``--strict``, 2 errors (or an ini
that cannot be read at all, reported as one line on stderr).

``--format json`` prints one object::

    {
      "ini": "/abs/path/api-paste.ini",
      "name": "main",
      "global_conf": {"auth_strategy": "noauth", ...},      # [DEFAULT] and --set, masked
      "app": CHAIN,
      "problems": [{"severity": "error" | "warning", "section": "composite:api_v1",
                    "chain": "noauth" | null, "message": "..."}],
      "errors": 0,
      "warnings": 1
    }
    CHAIN = {"filters": [OBJECT, ...] (outermost first), "app": OBJECT}
    OBJECT = {
      "type": "app" | "composite" | "filter" | "unresolved",
      "name": "sizelimit",                                  # as referenced
      "section": "filter:sizelimit" | null,                 # null: referenced by URI
      "entry_point": "egg:middleware_kit#sizelimit",        # or "call:m:f",
                                                            # or "paste.filter_factory = m:o"
      "ours": "sizelimit" | null,                           # our entry point name
      "options": {"max_request_body_size": "112K"},         # effective local conf, masked
      # "unresolved" only:
      "reason": "no section [filter:x]",
      # "composite" only:
      "shape": "urlmap" | "pipeline" | "other",
      "routes": [{"prefix": "/v1", "target": "api_v1", "chain": CHAIN}],
      "strategies": [{"name": "noauth", "selected": true, "chain": CHAIN}],
      "selected": "noauth" | null,             # what the global conf (with --set) selects
      "selected_by_default": "noauth" | null   # what the ini's own [DEFAULT] selects
    }
"""

from __future__ import annotations

import configparser
import os

from middleware_kit.inspector.checks import check, first_line
from middleware_kit.inspector.model import Problem, Report
from middleware_kit.inspector.render import render_json, render_text
from middleware_kit.inspector.resolve import resolve

__all__ = ["Report", "UnreadableIniError", "inspect_ini", "render"]


class UnreadableIniError(Exception):
    """The ini cannot be read at all; the message is one line for the operator."""


def inspect_ini(path: str, name: str = "main", settings: dict[str, str] | None = None) -> Report:
    """Resolve and check ``name`` in the ini at ``path``; raises :class:`UnreadableIniError`."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise UnreadableIniError(f"{path}: no such file")
    try:
        root, problems, global_conf = resolve(path, name, dict(settings or {}))
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        raise UnreadableIniError(f"{path}: {first_line(exc)}") from exc
    problems += check(root, name)
    return Report(path, name, global_conf, root, _unique(problems))


def render(report: Report, output_format: str = "text") -> str:
    """The report as ``"text"`` or ``"json"``."""
    return render_json(report) if output_format == "json" else render_text(report)


def _unique(problems: list[Problem]) -> list[Problem]:
    """Problems once each (a section used by several chains is reported once), in order."""
    return list(dict.fromkeys(problems))
