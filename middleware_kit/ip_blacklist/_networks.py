"""Addresses and networks as integers, and a set of networks answered in a few probes.

An address is ``(version, value)``: 4 or 6 and its integer; a network is
``(version, prefix length, value of its first address)``. An IPv4-mapped IPv6 address
(``::ffff:10.0.0.1``) is the IPv4 address it carries, a network inside
``::ffff:0:0/96`` is the IPv4 network it maps, and an IPv6 network holding all of
``::ffff:0:0/96`` (``::/0``) holds every IPv4 address: both spellings of an address
are decided alike.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from pathlib import Path

from middleware_kit._config import string_list

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[int, int]
Net = tuple[int, int, int]  # (version, prefix length, network value)
Probes = tuple[tuple[int, frozenset[int]], ...]  # (mask, masked networks) per length

# Networks at least this long are found through the /16 (IPv4) or /32 (IPv6) holding them.
BUCKET = {4: 16, 6: 32}

_MAPPED_PREFIX = 0xFFFF
_MAPPED = _MAPPED_PREFIX << 32  # ::ffff:0:0, the start of the IPv4-mapped /96
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_WIDTH = {4: 32, 6: 128}


def parse_network(entry: str | Network) -> Net:
    """A list entry: an address (a /32 or /128) or a network without host bits set."""
    if isinstance(entry, str):
        version, prefix, value = _parse_entry(entry.strip())
    else:
        version, prefix, value = entry.version, entry.prefixlen, int(entry.network_address)
    if version == 6 and prefix >= 96 and value >> 32 == _MAPPED_PREFIX:
        return 4, prefix - 96, value & 0xFFFFFFFF
    return version, prefix, value


def parse_entries(raw: str) -> tuple[str, ...]:
    """An option's entries (separated by commas and/or white space), each checked."""
    entries = string_list(raw)
    for entry in entries:
        parse_network(entry)
    return entries


def _parse_entry(text: str) -> Net:
    if "%" in text:
        raise ValueError(f"{text!r}: zone ids are not allowed in lists")
    host, slash, length = text.partition("/")
    version, width = (6, 128) if ":" in host else (4, 32)
    try:
        value = int.from_bytes(socket.inet_pton(_FAMILY[version], host))
    except (OSError, ValueError):
        value = -1
    if value >= 0 and (not slash or (length.isascii() and length.isdigit())):
        prefix = int(length) if slash else width
        if prefix <= width and not value & ((1 << (width - prefix)) - 1):
            return version, prefix, value
    # Other spellings (a netmask) and every error, in ipaddress's words.
    network = ipaddress.ip_network(text)
    return network.version, network.prefixlen, int(network.network_address)


def parse_address(text: str) -> Address | None:
    """``(version, value)`` of an address, brackets and an IPv6 zone id dropped; else None.

    ``inet_pton`` is as strict as ``ipaddress`` (no leading zeros in IPv4) and a tenth
    of its cost.
    """
    try:
        if ":" not in text:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text))
        if text[:1] == "[" and text[-1:] == "]":
            text = text[1:-1]
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text.partition("%")[0]))
    except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in the text
        return None
    if value >> 32 == _MAPPED_PREFIX:
        return 4, value & 0xFFFFFFFF
    return 6, value


def format_address(address: Address) -> str:
    """The canonical text of an address (IPv6 as ``ipaddress`` writes it)."""
    version, value = address
    if version == 4:
        return socket.inet_ntoa(value.to_bytes(4))
    return str(ipaddress.IPv6Address(value))


class NetworkSet:
    """Networks grouped by prefix length: an address is in the set when, for one of the
    prefix lengths present, the address masked to it is a member.

    Only the lengths that can match are probed: networks shorter than ``BUCKET`` bits
    (/16 for IPv4, /32 for IPv6) are probed for every address; longer ones only for an
    address in the same /16 or /32 as one of them, found by one dict lookup. A lookup
    costs a few set probes, whatever the number of entries (at worst one per distinct
    prefix length: 33 for IPv4, 129 for IPv6).
    """

    def __init__(self, networks: Iterable[Net]) -> None:
        groups: dict[tuple[int, int], set[int]] = {}
        for version, prefix, value in networks:
            groups.setdefault((version, prefix), set()).add(value)
            if (
                version == 6
                and prefix <= 96
                and _MAPPED >> (128 - prefix) == value >> (128 - prefix)
            ):
                groups.setdefault((4, 0), set()).add(0)  # ::/0 holds every IPv4 client too
        self.lengths = len(groups)  # distinct (version, prefix length) pairs
        self.families: dict[int, tuple[Probes, dict[int, Probes], int]] = {}
        for version, width in _WIDTH.items():
            sets = {p: frozenset(m) for (v, p), m in sorted(groups.items()) if v == version}
            bucket = BUCKET[version]
            short = tuple((_mask(width, p), sets[p]) for p in sets if p < bucket)
            lengths: dict[int, list[int]] = {}
            for prefix in (p for p in sets if p >= bucket):
                for value in sets[prefix]:
                    lengths.setdefault(value >> (width - bucket), []).append(prefix)
            buckets = {
                key: tuple((_mask(width, p), sets[p]) for p in dict.fromkeys(found))
                for key, found in lengths.items()
            }
            self.families[version] = (short, buckets, width - bucket)

    def __contains__(self, address: Address) -> bool:
        version, value = address
        short, buckets, shift = self.families[version]
        for mask, members in short:
            if value & mask in members:
                return True
        for mask, members in buckets.get(value >> shift, ()):  # noqa: SIM110 - a loop is faster than any()
            if value & mask in members:
                return True
        return False


def _mask(width: int, prefix: int) -> int:
    return ((1 << prefix) - 1) << (width - prefix)


def read_list(path: Path) -> tuple[Net, ...]:
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
