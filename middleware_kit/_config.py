"""Parsing of paste options: the one typed place where option strings become values.

Every filter declares a table ``{option name: parser}`` and calls :func:`parse_options`
from its factory, once, at ``loadapp`` time. A parser takes the raw string and returns
the typed value or raises ``ValueError`` with a short reason; :func:`parse_options` turns
that into a :class:`ConfigError` naming the filter, the option and the value. An option
that is not in the table fails the load too, suggesting the closest known name.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Parser = Callable[[str], Any]

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_SIZE = re.compile(r"(\d+)\s*([KMG]?)(?:i?B)?", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_LIST_SEPARATORS = re.compile(r"[\s,]+")
_SECRET_NAME = re.compile(r"password|secret|token|credential", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^/\s]*@")
MASK = "***"


class ConfigError(LookupError, ValueError):
    """A paste section or option that cannot be used.

    A ``LookupError`` because loaders of existing services (nova's, neutron's) catch that
    around ``loadapp``; a ``ValueError`` because that is what a bad value is.
    """


def parse_options(
    where: str,
    local_conf: Mapping[str, str],
    parsers: Mapping[str, Parser],
    *,
    passthrough: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Parse ``local_conf`` with ``parsers``; ``where`` names the filter in errors.

    Options for which ``passthrough(name)`` is true are returned unparsed (authtoken
    hands keystonemiddleware's own options through this way).
    """
    options: dict[str, Any] = {}
    for name, raw in local_conf.items():
        parser = parsers.get(name)
        if parser is None:
            if passthrough is not None and passthrough(name):
                options[name] = raw
                continue
            raise ConfigError(f"{where}: unknown option {name!r}{_suggestion(name, parsers)}")
        try:
            options[name] = parser(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: option {name} = {shown(name, raw)!r}: {exc}") from None
    return options


def shown(name: str, raw: str) -> str:
    """``raw`` as an error message or log line may show it: secrets become ``***``.

    The whole value of an option whose name says it is a secret; the password of a
    URL (``redis://:pw@host``, ``memcached://user:pw@host``) in any other option.
    """
    if _SECRET_NAME.search(name):
        return MASK
    return _URL_PASSWORD.sub(r"\1" + MASK + "@", raw)


def _suggestion(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if known:
        return f"; known options: {', '.join(known)}"
    return "; this filter takes no options"


def boolean(raw: str) -> bool:
    """true/false, yes/no, on/off, 1/0 in any case."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected a boolean (true/false, yes/no, on/off, 1/0)")


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    """A parser for a whole number within ``[minimum, maximum]``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        _check_range(value, minimum, maximum)
        return value

    return parse


def number(minimum: float | None = None, maximum: float | None = None) -> Parser:
    """A parser for a (decimal) number within ``[minimum, maximum]``."""

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        _check_range(value, minimum, maximum)
        return value

    return parse


def _check_range(value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ValueError(f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"must be at most {maximum}")


def byte_size(raw: str) -> int:
    """Bytes, with an optional K, M or G (KiB, MiB, GiB) suffix: ``114688``, ``112K``."""
    match = _SIZE.fullmatch(raw.strip())
    if match is None:
        raise ValueError("expected a size in bytes with an optional K, M or G suffix")
    return int(match.group(1)) * _SIZE_FACTORS[match.group(2).upper()]


def string_list(raw: str) -> tuple[str, ...]:
    """Names separated by commas and/or white space; empty items are dropped."""
    return tuple(item for item in _LIST_SEPARATORS.split(raw) if item)


def text(raw: str) -> str:
    """Any string, surrounding white space removed."""
    return raw.strip()


def choice(*allowed: str) -> Parser:
    """A parser that accepts one of ``allowed`` (case-insensitive) and returns it lower-cased."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of: {', '.join(allowed)}")
        return value

    return parse
