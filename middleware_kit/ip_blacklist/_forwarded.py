"""The client behind trusted proxies, from ``Forwarded`` (RFC 7239) or ``X-Forwarded-For``.

Hops are read from the right (the one our peer added) to the left, and parsed only as
far as needed: what a client wrote left of its own address is never looked at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from middleware_kit.ip_blacklist._networks import Address, NetworkSet, parse_address

UNKNOWN = None  # a hop named ``unknown`` or an obfuscated ``_name`` (RFC 7239 section 6)
_PORT = re.compile(r":[0-9]{1,5}")
SHOWN = 64


class MalformedError(ValueError):
    """A hop that is not an address, ``unknown`` or an obfuscated name."""


def forwarded_hops(header: str) -> Iterator[str]:
    """The ``for=`` node of each element of a ``Forwarded`` header, right to left."""
    for element in reversed(header.split(",")):
        node = None
        for pair in element.split(";"):
            name, equals, value = pair.partition("=")
            value = value.strip()
            if not equals or not name.strip() or not value:
                raise MalformedError(f"bad forwarded-pair {_shown(pair.strip())}")
            if value[0] == '"':
                if len(value) < 2 or value[-1] != '"':
                    raise MalformedError(f"unterminated quoted string {_shown(value)}")
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            if name.strip().lower() == "for":
                if node is not None:
                    raise MalformedError("two for= in one element")
                node = value
        if node is None:
            raise MalformedError(f"an element without for=: {_shown(element.strip())}")
        yield node


def x_forwarded_for_hops(header: str) -> Iterator[str]:
    """The items of an ``X-Forwarded-For`` header, right to left."""
    for item in reversed(header.split(",")):
        yield item.strip()


FORWARDED = "HTTP_FORWARDED"
X_FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"
# (environ key, header name): Forwarded first, hops read by the functions below.
HEADERS = ((FORWARDED, "Forwarded"), (X_FORWARDED_FOR, "X-Forwarded-For"))


def clients_named(environ: Mapping[str, Any], trusted: NetworkSet) -> list[Address | None]:
    """The client each forwarding header names (``UNKNOWN`` for an unknown hop), none
    when there is no such header. Raises ``MalformedError`` naming the header."""
    clients: list[Address | None] = []
    for (key, name), hops in zip(HEADERS, _HOPS, strict=True):
        header = environ.get(key)
        if header and header.strip():
            try:
                clients.append(client_of(hops(header), trusted))
            except MalformedError as exc:
                raise MalformedError(f"{name}: {exc}") from None
    return clients


def parse_node(node: str) -> Address | None:
    """An address, with an optional port (``192.0.2.1:80``, ``[2001:db8::1]:80``), or
    ``UNKNOWN``; raises ``MalformedError`` for anything else."""
    if node.lower() == "unknown" or node[:1] == "_":
        return UNKNOWN
    host = node
    if node[:1] == "[":
        host, bracket, port = node[1:].partition("]")
        if not bracket or (port and not _PORT.fullmatch(port)):
            raise MalformedError(f"not an address: {_shown(node)}")
    elif node.count(":") == 1:
        host, port = node.split(":")
        if not _PORT.fullmatch(":" + port):
            raise MalformedError(f"not an address: {_shown(node)}")
    address = parse_address(host)
    if address is None:
        raise MalformedError(f"not an address: {_shown(node)}")
    return address


def client_of(hops: Iterator[str], trusted: NetworkSet) -> Address | None:
    """The first hop, from the right, that is not a trusted proxy; the leftmost hop when
    all of them are trusted; ``UNKNOWN`` when the walk meets an unknown hop first.
    Raises ``MalformedError`` for a hop the walk needs that is not an address."""
    last: Address | None = UNKNOWN
    for node in hops:
        address = parse_node(node)
        if address is UNKNOWN or address not in trusted:
            return address
        last = address
    return last


def _shown(value: str) -> str:
    """A client-written value for the logs: quoted, at most ``SHOWN`` characters."""
    return repr(value[:SHOWN]) + ("..." if len(value) > SHOWN else "")


_HOPS: tuple[Callable[[str], Iterator[str]], ...] = (forwarded_hops, x_forwarded_for_hops)
