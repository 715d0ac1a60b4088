"""One section's local and global conf, computed as PasteDeploy's ``ConfigLoader`` does."""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from typing import Any

from middleware_kit.inspector.model import Where


@dataclass
class Section:
    """One section being resolved."""

    loader: Any  # PasteDeploy's ConfigLoader of the file
    name: str  # as referenced
    section: str
    local: dict[str, str]
    conf: dict[str, Any]  # the global conf it is loaded with
    additions: dict[str, str]  # its `set` options

    @property
    def where(self) -> Where:
        return Where(self.section)


def read_section(loader: Any, name: str, section: str, global_conf: Any) -> Section | str:
    """The section's confs, or why they cannot be read.

    Options named in ``[DEFAULT]`` are global, not local; ``set X = v`` adds to the global
    conf, ``get X = Y`` copies global ``Y`` into local ``X``.
    """
    parser = loader.parser
    defaults = parser.defaults()
    sec = Section(loader, name, section, {}, {**defaults, **(global_conf or {})}, {})
    gets = {}
    try:
        for option in parser.options(section):
            if option.startswith("set "):
                value = parser.get(section, option)
                sec.additions[option[4:].strip()] = sec.conf[option[4:].strip()] = value
            elif option.startswith("get "):
                gets[option[4:].strip()] = parser.get(section, option)
            elif option not in defaults:
                sec.local[option] = parser.get(section, option)
    except configparser.Error as exc:
        return str(exc).splitlines()[0]
    for local_name, global_name in gets.items():
        if global_name not in sec.conf:
            return f"get {local_name}: no global option {global_name!r}"
        sec.local[local_name] = sec.conf[global_name]
    return sec
