"""Addresses and networks as integers, and a set of networks answered in a few probes.

An address is ``(version, value)``: 4 or 6 and its integer. An IPv4-mapped IPv6 address
(``::ffff:10.0.0.1``) is the IPv4 address it carries, a network inside
``::ffff:0:0/96`` is the IPv4 network it maps, and an IPv6 network holding all of
``::ffff:0:0/96`` (``::/0``) holds every IPv4 address: both spellings of an address
are decided alike.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[int, int]

_MAPPED_PREFIX = 0xFFFF
_MAPPED_NETWORK = ipaddress.IPv6Network("::ffff:0:0/96")
_WIDTH = {4: 32, 6: 128}


def parse_network(entry: str | Network) -> Network:
    """A list entry: an address (a /32 or /128) or a network without host bits set."""
    if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
        network = entry
    else:
        text = entry.strip()
        if "%" in text:
            raise ValueError(f"{text!r}: zone ids are not allowed in lists")
        network = ipaddress.ip_network(text)  # strict: host bits set is a ValueError
    value = int(network.network_address)
    if network.version == 6 and network.prefixlen >= 96 and value >> 32 == _MAPPED_PREFIX:
        return ipaddress.IPv4Network((value & 0xFFFFFFFF, network.prefixlen - 96))
    return network


def parse_address(text: str) -> Address | None:
    """``(version, value)`` of an address, brackets and an IPv6 zone id dropped; else None."""
    if text[:1] == "[" and text[-1:] == "]":
        text = text[1:-1]
    if ":" in text:
        text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    value = int(address)
    if address.version == 6:
        if value >> 32 == _MAPPED_PREFIX:
            return 4, value & 0xFFFFFFFF
        return 6, value
    return 4, value


def format_address(address: Address) -> str:
    """The canonical text of an address (IPv6 compressed, lower case)."""
    version, value = address
    if version == 4:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


class NetworkSet:
    """Networks grouped by prefix length: an address is in the set when, for one of the
    prefix lengths present, the address masked to it is a member. A lookup costs one
    set probe per distinct prefix length (at most 33 for IPv4, 129 for IPv6), whatever
    the number of entries."""

    def __init__(self, networks: Iterable[Network]) -> None:
        groups: dict[tuple[int, int], set[int]] = {}
        for network in networks:
            key = (network.version, network.prefixlen)
            groups.setdefault(key, set()).add(int(network.network_address))
            if network.version == 6 and _MAPPED_NETWORK.subnet_of(network):
                groups.setdefault((4, 0), set()).add(0)  # ::/0 holds every IPv4 client too
        self.size = sum(len(members) for members in groups.values())
        self.probes = {
            version: tuple(
                (_mask(width, prefix), frozenset(members))
                for (family, prefix), members in sorted(groups.items())
                if family == version
            )
            for version, width in _WIDTH.items()
        }

    def __contains__(self, address: Address) -> bool:
        version, value = address
        for mask, members in self.probes[version]:  # noqa: SIM110 - faster than any()
            if value & mask in members:
                return True
        return False

    def __len__(self) -> int:
        return self.size


def _mask(width: int, prefix: int) -> int:
    return ((1 << prefix) - 1) << (width - prefix)


def read_list(path: Path) -> tuple[Network, ...]:
    """The entries of a list file: one a line, ``#`` comments and blank lines allowed.

    Raises ``OSError`` when the file cannot be read and ``ValueError`` naming the file
    and the line of a bad entry.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    networks = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.partition("#")[0].strip()
        if entry:
            try:
                networks.append(parse_network(entry))
            except ValueError as exc:
                raise ValueError(f"{path}, line {number}: {exc}") from None
    return tuple(networks)
