"""The lists in force: the options' entries plus the list files', re-read when changed.

A :class:`Rules` is one version of the lists with the verdicts made with it, per
``REMOTE_ADDR``; a new version starts with no verdicts. A list file that cannot be
read or has a bad line keeps its last good entries.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import NamedTuple

from middleware_kit.ip_blacklist._networks import (
    Address,
    Net,
    NetworkSet,
    format_address,
    read_list,
)

LOG = logging.getLogger("middleware_kit.ip_blacklist")

DENIED = 403
# Verdicts kept for one version of the lists: per REMOTE_ADDR, and per trusted peer and
# forwarding headers; all are dropped when the cache is full.
CACHE_SIZE = 4096

# What tells a change: the inode (an editor's rename), the size and both times (a chmod).
Stamp = tuple[int, int, int, int]


class ListFile:
    """The entries of one list file and the stamp of the version they were read from."""

    def __init__(self, option: str, path: Path, *, required: bool = False) -> None:
        self.option = option
        self.path = path
        self.required = required  # a whitelist file without entries would deny everyone
        try:
            self.stamp: Stamp | None = _stamp(path)
            self.networks = self._read()
        except OSError as exc:
            raise ValueError(f"option {option} = {str(path)!r}: {exc.strerror}") from None
        except ValueError as exc:
            raise ValueError(f"option {option} = {str(path)!r}: {exc}") from None

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when a new list took effect. An error
        keeps the previous list and is logged once per change of the file."""
        try:
            stamp: Stamp | None = _stamp(self.path)
        except OSError as exc:
            stamp = None
            problem = exc.strerror
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        if stamp is not None:
            try:
                self.networks = self._read()
            except OSError as exc:
                problem = exc.strerror
            except ValueError as exc:
                problem = str(exc)
            else:
                LOG.info("%s: read %d entries from %s", self.option, len(self.networks), self.path)
                return True
        LOG.error(
            "%s: cannot use %s: %s; the previous list (%d entries) stays in force",
            self.option,
            self.path,
            problem,
            len(self.networks),
        )
        return False

    def _read(self) -> tuple[Net, ...]:
        return _read(self.path, self.required)


def _read(path: Path, required: bool) -> tuple[Net, ...]:
    networks = read_list(path)
    if required and not networks:
        raise ValueError(f"{path}: no entries (it would deny every client)")
    return networks


def list_file_parser(here: Path, *, required: bool) -> Callable[[str], Path | None]:
    """The parser of a ``*_file`` option: the path, relative to ``here``, of a list file
    that is read and checked now, so that a factory call (``middleware-kit inspect``)
    reports a missing or bad file; an empty value is no file."""

    def parse(raw: str) -> Path | None:
        if not raw.strip():
            return None
        path = here / raw.strip()
        try:
            _read(path, required)
        except OSError as exc:
            raise ValueError(f"{path}: {exc.strerror}") from None
        return path

    return parse


class Trusted(NamedTuple):
    """The verdict on a trusted peer: its forwarding headers decide; ``own`` is the
    verdict on the peer itself, for a request without them."""

    address: Address
    text: str
    own: str | int


# An allowed client's address text, a status code (403), or a trusted peer.
Verdict = str | int | Trusted


class Rules:
    """One version of the lists, and the verdicts per ``REMOTE_ADDR`` made with it."""

    def __init__(self, blacklist: NetworkSet, whitelist: NetworkSet | None) -> None:
        self.blacklist = blacklist
        self.whitelist = whitelist
        self.cache: dict[object, Verdict] = {}

    def remember(self, key: object, verdict: Verdict) -> None:
        if len(self.cache) >= CACHE_SIZE:
            self.cache.clear()
        self.cache[key] = verdict

    def decide(self, address: Address) -> str | int:
        if self.whitelist is not None and address not in self.whitelist:
            return DENIED
        if address in self.blacklist:
            return DENIED
        return format_address(address)


class Lists:
    """The lists in force: the options' entries plus the files', re-read when changed."""

    def __init__(
        self,
        *,
        blacklist: tuple[Net, ...],
        whitelist: tuple[Net, ...],
        blacklist_file: str | PathLike[str] | None,
        whitelist_file: str | PathLike[str] | None,
        reload_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.blacklist, self.whitelist = blacklist, whitelist
        self.black_file: ListFile | None = None
        self.white_file: ListFile | None = None
        if blacklist_file is not None:
            self.black_file = ListFile("blacklist_file", Path(blacklist_file))
        if whitelist_file is not None:
            self.white_file = ListFile("whitelist_file", Path(whitelist_file), required=True)
        self.files = [f for f in (self.black_file, self.white_file) if f is not None]
        self.interval, self.clock = reload_interval, clock
        self.due = clock() + reload_interval
        self.lock = threading.Lock()
        self.rules = self._build()

    def current(self) -> Rules:
        if not self.files or self.clock() < self.due:
            return self.rules
        if self.lock.acquire(blocking=False):  # one request re-reads, the others go on
            try:
                self.due = self.clock() + self.interval
                if any([list_file.refresh() for list_file in self.files]):
                    self.rules = self._build()
            finally:
                self.lock.release()
        return self.rules

    def _build(self) -> Rules:
        black = self.blacklist + (self.black_file.networks if self.black_file else ())
        white = self.whitelist + (self.white_file.networks if self.white_file else ())
        in_force = bool(self.whitelist) or self.white_file is not None
        return Rules(NetworkSet(black), NetworkSet(white) if in_force else None)


def _stamp(path: Path) -> Stamp:
    info = os.stat(path)
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
