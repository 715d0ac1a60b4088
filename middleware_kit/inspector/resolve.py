"""Resolve a paste ini the way PasteDeploy's ``ConfigLoader`` does, without loading it.

Sections are found and merged as ``paste.deploy.loadwsgi`` does (its own parser, so
``%(here)s`` and ``[DEFAULT]`` behave the same; ``set``/``get`` options, ``use``,
``filter-with``, ``require``, ``[pipeline:]``, ``[filter-app:]``, ``egg:``, ``call:`` and
``config:`` URIs), but entry points are looked up in installed metadata and nothing is
imported. Composites are expanded by :mod:`middleware_kit.inspector.composites`.
"""

from __future__ import annotations

import configparser
import contextlib
import os
from importlib import metadata
from typing import Any

from paste.deploy import loadwsgi

from middleware_kit.inspector import composites, sources
from middleware_kit.inspector.model import ERROR, Chain, Obj, Problem, Where
from middleware_kit.inspector.sections import Section, read_section

APP = loadwsgi.APP
FILTER = loadwsgi.FILTER
_TYPES = {APP.name: "app", FILTER.name: "filter"}
Stack = tuple[list[Obj], Obj]  # wrapping filters outermost first, then the base object


class Resolver:
    """Builds the tree of one ini; problems found on the way go to ``problems``."""

    def __init__(self, settings: dict[str, str]):
        self.settings = settings
        self.problems: list[Problem] = []
        self._active: set[tuple[str, str]] = set()
        self._ini_defaults: dict[str, dict[str, str]] = {}

    def open(self, path: str, global_conf: dict[str, Any]) -> Any:
        """A ``ConfigLoader`` for ``path``; raises ``OSError`` or ``configparser.Error``."""
        loader = loadwsgi.ConfigLoader(path)
        self._ini_defaults[loader.filename] = dict(loader.parser.defaults())
        if global_conf:
            loader.update_defaults(global_conf, overwrite=False)
        return loader

    def ini_defaults(self, loader: Any) -> dict[str, str]:
        """``[DEFAULT]`` of the loader's file as written (without ``--set``)."""
        return self._ini_defaults.get(loader.filename, {})

    def app(self, loader: Any, name: str, global_conf: Any, where: Where) -> Chain:
        wrappers, base = self._context(APP, loader, name, global_conf, where)
        if base.type == "composite" and base.shape is None:
            composites.expand(self, base)
        section = None
        if not loader.absolute_name(name):
            with contextlib.suppress(LookupError):
                section = str(loader.find_config_section(APP, name=name))
        return Chain(wrappers, base, section)

    def filters(self, loader: Any, name: str, global_conf: Any, where: Where) -> list[Obj]:
        wrappers, base = self._context(FILTER, loader, name, global_conf, where)
        return [*wrappers, base]

    def error(self, where: Where, message: str) -> None:
        self.problems.append(Problem(ERROR, where.section, message, where.chain))

    def _unresolved(self, name: str, where: Where, reason: str) -> Stack:
        self.error(where, f"{name!r} does not resolve: {reason}")
        return [], Obj("unresolved", name, None, "", reason=reason)

    def _context(self, kind: Any, loader: Any, name: str, global_conf: Any, where: Where) -> Stack:
        if loader.absolute_name(name):
            return self._uri(kind, loader, name, global_conf or {}, where)
        try:
            section = loader.find_config_section(kind, name=name)
        except LookupError as exc:
            reason = str(exc).split(" found in config")[0]
            if reason.startswith("No section"):
                wanted = [f"[{group[0]}:{name}]" for group in kind.config_prefixes]
                reason = "no section " + " or ".join(wanted)
            return self._unresolved(name, where, reason)
        key = (loader.filename, section)
        if key in self._active:
            return self._unresolved(name, where, f"[{section}] refers back to itself")
        self._active.add(key)
        try:
            return self._section(kind, loader, name, section, global_conf)
        finally:
            self._active.discard(key)

    def _section(self, kind: Any, loader: Any, name: str, section: str, global_conf: Any) -> Stack:
        sec = read_section(loader, name, section, global_conf)
        if isinstance(sec, str):
            return self._unresolved(name, Where(section), sec)
        filter_with = sec.local.pop("filter-with", None)
        for spec in sec.local.pop("require", "").split():
            try:
                metadata.distribution(spec)
            except metadata.PackageNotFoundError:
                self.error(sec.where, f"require: distribution {spec!r} is not installed")
        if section.startswith("filter-app:"):
            stack = self._filter_app(sec)
        elif section.startswith("pipeline:"):
            stack = self._pipeline(sec)
        elif "use" in sec.local:
            stack = self._use(kind, sec)
        else:
            stack = self._explicit(kind, sec)
        if filter_with is None:
            return stack
        outer = self.filters(loader, filter_with, sec.conf, sec.where)
        return [*outer, *stack[0]], stack[1]

    def _use(self, kind: Any, sec: Section) -> Stack:
        use = sec.local.pop("use")
        wrappers, base = self._context(kind, sec.loader, use, sec.conf, sec.where)
        base.name, base.section = sec.name, sec.section
        if base.type == "unresolved":
            return wrappers, base
        base.global_conf.update(sec.additions)
        if not wrappers:  # PasteDeploy merges into the outer context only
            base.options.update(sec.local)
        base.loader = sec.loader
        if base.protocol is None:  # call: says nothing; the section prefix decides
            prefix = sec.section.split(":", 1)[0]
            if prefix == "filter-app":  # PasteDeploy makes up a protocol it cannot invoke
                self.error(
                    sec.where,
                    "PasteDeploy cannot load call: here; use egg: or paste.filter_factory =",
                )
            base.protocol = sources.SECTION_PROTOCOLS.get(prefix, sources.FILTER_PROTOCOL)
            base.type = sources.object_type(base.protocol, base.type)
        return wrappers, base

    def _explicit(self, kind: Any, sec: Section) -> Stack:
        found = sources.explicit(kind, sec)
        if isinstance(found, str):
            return self._unresolved(sec.name, sec.where, found)
        return [], found

    def _pipeline(self, sec: Section) -> Stack:
        names = sec.local.pop("pipeline", "").split()
        if sec.local:
            reason = f"settings not allowed here: {', '.join(sec.local)}"
            return self._unresolved(sec.name, sec.where, reason)
        if not names:
            return self._unresolved(sec.name, sec.where, "no 'pipeline' setting, or an empty one")
        app = self.app(sec.loader, names[-1], sec.conf, sec.where)
        filters = [f for n in names[:-1] for f in self.filters(sec.loader, n, sec.conf, sec.where)]
        return [*filters, *app.filters], app.app

    def _filter_app(self, sec: Section) -> Stack:
        if "next" not in sec.local:
            return self._unresolved(sec.name, sec.where, "no 'next' setting")
        after = self.app(sec.loader, sec.local.pop("next"), sec.conf, sec.where)
        wrappers, base = (
            self._use(FILTER, sec) if "use" in sec.local else self._explicit(FILTER, sec)
        )
        return [*wrappers, base, *after.filters], after.app

    def _uri(self, kind: Any, loader: Any, uri: str, conf: dict[str, Any], where: Where) -> Stack:
        scheme, _, rest = uri.partition(":")
        rest, _, fragment = rest.partition("#")
        scheme = scheme.lower()
        if scheme == "egg":
            found = sources.egg(kind, uri, rest, fragment or "main", conf)
            if isinstance(found, str):
                return self._unresolved(uri, where, found)
            return [], found
        if scheme == "call":
            if ":" not in rest:
                return self._unresolved(uri, where, "expected call:module:object")
            ours = sources.ours_by_target(rest)
            return [], Obj(_TYPES[kind.name], uri, None, uri, rest, ours, None, {}, dict(conf))
        if scheme == "config":
            path = os.path.join(os.path.dirname(loader.filename), rest)
            try:
                other = self.open(path, conf)
            except (OSError, configparser.Error) as exc:
                return self._unresolved(uri, where, str(exc).splitlines()[0])
            return self._context(kind, other, fragment or "main", conf, where)
        return self._unresolved(uri, where, f"unknown URI scheme {scheme!r}")


def resolve(path: str, name: str, settings: dict[str, str]) -> tuple[Chain, list[Problem], Any]:
    """The tree ``name`` builds in ``path``, the problems met, and the global conf.

    Raises ``OSError`` or ``configparser.Error`` when the file cannot be read at all.
    """
    resolver = Resolver(settings)
    loader = resolver.open(path, settings)
    root = resolver.app(loader, name, dict(settings), Where(name))
    return root, resolver.problems, {**loader.parser.defaults(), **settings}
