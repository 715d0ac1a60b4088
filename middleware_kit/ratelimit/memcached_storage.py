"""``memcached://host:port[,host:port...]``: the sliding logs as memcached values.

Memcached runs no scripts, so a decision is optimistic, checked by ``cas``: a log is
only written if nobody wrote it since it was read. Every write is pipelined with a
``gets`` of the same logs (one round trip per server), so the reply also says what the
logs hold now and their new cas tokens; the storage remembers them (up to
``MAX_REMEMBERED`` logs). Hence, for the logs of one request:

- remembered and still current (this process wrote them last): decide, write: **1**
  round trip;
- not remembered, or another process wrote since: one ``gets``, decide, write: **2**;
- denied: decided on a fresh ``gets``: **1**.

A write that lost a race re-decides on the fresh logs its own reply carried; if a
later rule now denies, the logs already written give the time back. No log ever holds
more than N times of a window. Logs are the hex digits of 64-bit milliseconds (cheap to
read and write, and no value can contain the ``END`` line a pipelined reply ends with).
Keys are spread over the servers by rendezvous (highest random weight) hashing, a
consistent hashing: a server added or lost moves only its own share of keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from array import array
from collections.abc import Sequence
from typing import Any, TypeAlias

from pymemcache.client.base import PooledClient
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import (
    MemcacheError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownError,
)

from middleware_kit.ratelimit import algorithm
from middleware_kit.ratelimit.algorithm import Outcome
from middleware_kit.ratelimit.storage import KEY_PREFIX, StorageError

# EOFError: eventlet's green recv on a socket closed under a waiting green thread
# (memcached killed mid-request) raises it, not an OSError.
ERRORS = (OSError, EOFError, MemcacheError)
# What a pooled connection to a server that restarted since answers: worth one retry
# (the command cannot have reached the new server process).
STALE = (BrokenPipeError, ConnectionResetError, MemcacheUnexpectedCloseError)
MAX_ATTEMPTS = 32  # cas races lost in a row before giving up (as a storage error)
MAX_REMEMBERED = 16_384  # logs whose last state this process keeps (bounds its memory)
_SAFE_KEY = re.compile(r"[!-~]{1,200}")  # printable ASCII without space, well under 250
_END = b"END\r\n"
_STORED = b"STORED"
_LOST = (b"EXISTS", b"NOT_FOUND", b"NOT_STORED")

# A log as last seen: its times and cas token.
Seen: TypeAlias = "tuple[array[int], bytes]"


class MemcachedStorage:
    """A pooled pymemcache client per server; each key lives on one server."""

    def __init__(
        self,
        servers: Sequence[tuple[str, int]],
        *,
        timeout_s: float,
        remember: int = MAX_REMEMBERED,
    ) -> None:
        self.timeout_s = timeout_s
        self.remember = remember
        self.servers = {f"{host}:{port}": (host, port) for host, port in servers}
        self.clients = {name: self._new_client(name) for name in self.servers}
        self.ring = RendezvousHash(nodes=list(self.clients))
        self.only = next(iter(self.servers)) if len(self.servers) == 1 else None
        self.seen: dict[str, Seen] = {}

    def _new_client(self, server: str) -> PooledClient:
        timeout = self.timeout_s
        return PooledClient(
            self.servers[server], connect_timeout=timeout, timeout=timeout, no_delay=True
        )

    def hit(
        self,
        keys: Sequence[str],
        limits: Sequence[int],
        windows_ms: Sequence[int],
        now_ms: int,
    ) -> Outcome:
        keys = [_safe(key) for key in keys]
        try:
            if len(keys) == 1 and self.only:
                return self._hit_one(keys[0], limits[0], windows_ms[0], now_ms)
            return self._hit(keys, limits, windows_ms, now_ms)
        except ERRORS as exc:
            raise StorageError(f"memcached: {exc}") from None

    def _hit(
        self, keys: list[str], limits: Sequence[int], windows_ms: Sequence[int], now_ms: int
    ) -> Outcome:
        remembered = [self.seen.get(key) for key in keys]
        fresh = None in remembered
        known = self._read(keys) if fresh else remembered
        todo, written = list(range(len(keys))), list[int]()
        for _attempt in range(MAX_ATTEMPTS):
            logs = [_window(known[i], now_ms - windows_ms[i]) for i in range(len(keys))]
            if any(len(logs[i]) >= limits[i] for i in todo):
                if not fresh:  # denied on what we remembered: make sure on what is there
                    known, fresh = self._read(keys), True
                    continue
                for i in written:
                    logs[i] = self._give_back(keys[i], known[i], windows_ms[i], now_ms)
                return False, _states(logs, limits, now_ms)
            writes = [(keys[i], logs[i], known[i], windows_ms[i]) for i in todo]
            for i, (stored, seen) in zip(todo, self._write(writes, now_ms), strict=True):
                known[i] = seen
                if stored:
                    written.append(i)
            todo, fresh = [i for i in todo if i not in written], True
            if not todo:
                logs = [_window(known[i], now_ms - windows_ms[i]) for i in range(len(keys))]
                return True, _states(logs, limits, now_ms)
        for i in written:  # not counted after all: the caller sees a storage error
            self._give_back(keys[i], known[i], windows_ms[i], now_ms)
        raise StorageError(f"memcached: {keys} kept changing under {MAX_ATTEMPTS} attempts")

    def _hit_one(self, key: str, limit: int, window_ms: int, now_ms: int) -> Outcome:
        """``_hit`` for one rule on one server (the common case), with less bookkeeping."""
        seen = self.seen.get(key)
        fresh = seen is None
        if fresh:
            (seen,) = self._read([key])
        horizon = now_ms - window_ms
        for _attempt in range(MAX_ATTEMPTS):
            log = _window(seen, horizon)
            if len(log) >= limit:
                if not fresh:  # denied on what we remembered: make sure on what is there
                    (seen,), fresh = self._read([key]), True
                    continue
                return False, [algorithm.state(log, 0, limit, now_ms)]
            log.append(algorithm.stamp(log, now_ms))
            value = _encode(log)
            expire = math.ceil(window_ms / 1000) + 1
            raw = key.encode()
            if seen is None:
                head = b"add %s 0 %d %d\r\n" % (raw, expire, len(value))
            else:
                head = b"cas %s 0 %d %d %s\r\n" % (raw, expire, len(value), seen[1])
            lines = self._pipelined(self._server(key), b"%s%s\r\ngets %s" % (head, value, raw))
            if lines[0] != _STORED and lines[0] not in _LOST:
                raise MemcacheUnknownError(f"unexpected reply {lines[0][:60]!r}")
            (seen,) = self._remember([key], _values(lines[1:]))
            fresh = True
            if lines[0] == _STORED:
                return True, [algorithm.state(_window(seen, horizon), 0, limit, now_ms)]
        raise StorageError(f"memcached: {key} kept changing under {MAX_ATTEMPTS} attempts")

    def _read(self, keys: Sequence[str]) -> list[Seen | None]:
        """The logs of ``keys`` as they are now: one ``gets`` per server."""
        found: dict[str, Seen] = {}
        for server, server_keys in self._by_server(keys).items():
            command = b"gets " + " ".join(server_keys).encode()
            try:
                reply = self._on(server, "raw_command", command, _END)
            except STALE:
                reply = self._on(server, "raw_command", command, _END)
            found.update(_values(reply.split(b"\r\n")))
        return self._remember(keys, found)

    def _write(
        self, writes: Sequence[tuple[str, array[int], Seen | None, int]], now_ms: int
    ) -> list[tuple[bool, Seen | None]]:
        """Append ``now_ms`` to each log (``cas`` against its token, ``add`` when there
        was none), each server's writes pipelined with a ``gets`` of the same keys."""
        by_key = {key: (log, seen, window) for key, log, seen, window in writes}
        stored: dict[str, bool] = {}
        found: dict[str, Seen] = {}
        for server, server_keys in self._by_server(list(by_key)).items():
            parts = []
            for key in server_keys:
                log, seen, window_ms = by_key[key]
                value = _encode(log + array("q", [algorithm.stamp(log, now_ms)]))
                expire = math.ceil(window_ms / 1000) + 1
                if seen is None:
                    parts.append(b"add %s 0 %d %d\r\n" % (key.encode(), expire, len(value)))
                else:
                    head = b"cas %s 0 %d %d %s\r\n" % (key.encode(), expire, len(value), seen[1])
                    parts.append(head)
                parts.append(value + b"\r\n")
            parts.append(b"gets " + " ".join(server_keys).encode())
            lines = self._pipelined(server, b"".join(parts))
            for key, status in zip(server_keys, lines, strict=False):
                if status != _STORED and status not in _LOST:
                    raise MemcacheUnknownError(f"unexpected reply {status[:60]!r}")
                stored[key] = status == _STORED
            found.update(_values(lines[len(server_keys) :]))
        now_seen = self._remember(list(by_key), found)
        return [(stored[key], now_seen[i]) for i, key in enumerate(by_key)]

    def _give_back(self, key: str, seen: Seen | None, window_ms: int, now_ms: int) -> array[int]:
        """Remove one ``now_ms`` from a written log (its request was denied after all)."""
        horizon = now_ms - window_ms
        for _attempt in range(MAX_ATTEMPTS):
            log = _window(seen, horizon)
            if seen is None or now_ms not in log:
                return log
            log.remove(now_ms)
            expire = math.ceil(window_ms / 1000) + 1
            value = _encode(log)
            command = b"cas %s 0 %d %d %s\r\n%s\r\ngets %s" % (
                key.encode(),
                expire,
                len(value),
                seen[1],
                value,
                key.encode(),
            )
            lines = self._pipelined(self._server(key), command)
            (seen,) = self._remember([key], _values(lines[1:]))
            if lines[0] == _STORED:
                return log
        raise StorageError(f"memcached: {key} kept changing under {MAX_ATTEMPTS} attempts")

    def _pipelined(self, server: str, command: bytes) -> list[bytes]:
        try:
            reply = self._on(server, "raw_command", command, _END)
        except STALE:
            reply = self._on(server, "raw_command", command, _END)
        return reply.split(b"\r\n")  # type: ignore[no-any-return]

    def _remember(self, keys: Sequence[str], found: dict[str, Seen]) -> list[Seen | None]:
        seen = self.seen
        for key in keys:
            if key in found:
                seen[key] = found[key]
                if len(seen) > self.remember:
                    # Another thread changing the dict mid-step only delays eviction.
                    with contextlib.suppress(RuntimeError, StopIteration):
                        seen.pop(next(iter(seen)), None)
            else:
                seen.pop(key, None)
        return [found.get(key) for key in keys]

    def _by_server(self, keys: Sequence[str]) -> dict[str, list[str]]:
        by_server: dict[str, list[str]] = {}
        for key in keys:
            by_server.setdefault(self._server(key), []).append(key)
        return by_server

    def _server(self, key: str) -> str:
        return self.only or self.ring.get_node(key)

    def _on(self, server: str, method: str, *args: object) -> Any:
        """``method`` on the client of ``server``. A connection that failed (not timed
        out) drops that server's pool: its idle sockets are as dead as this one, and a
        restarted server gets fresh connections."""
        client = self.clients[server]
        try:
            return getattr(client, method)(*args)
        except ERRORS as exc:
            if not isinstance(exc, TimeoutError) and self.clients[server] is client:
                self.clients[server] = self._new_client(server)
                client.close()
            raise

    def ping(self) -> None:
        try:
            for server in self.servers:
                self._on(server, "version")
        except ERRORS as exc:
            raise StorageError(f"memcached: {exc}") from None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _values(lines: Sequence[bytes]) -> dict[str, Seen]:
    """``VALUE key flags bytes cas`` and data lines (what precedes ``END``)."""
    found: dict[str, Seen] = {}
    i = 0
    while i < len(lines) and lines[i]:
        head = lines[i].split()
        if head[0] != b"VALUE" or len(head) != 5 or i + 1 >= len(lines):
            raise MemcacheUnknownError(f"unexpected reply {lines[i][:60]!r}")
        found[head[1].decode()] = (_decode(lines[i + 1]), head[4])
        i += 2
    return found


def _window(seen: Seen | None, horizon: int) -> array[int]:
    """A copy of the times newer than ``horizon``."""
    if seen is None:
        return algorithm.new_log()
    log = seen[0]
    return log[algorithm.window_start(log, horizon) :]


def _states(
    logs: Sequence[array[int]], limits: Sequence[int], now_ms: int
) -> list[tuple[int, int]]:
    return [
        algorithm.state(log, 0, limit, now_ms) for log, limit in zip(logs, limits, strict=True)
    ]


def _encode(log: array[int]) -> bytes:
    return log.tobytes().hex().encode()


def _decode(data: bytes) -> array[int]:
    log = algorithm.new_log()
    try:
        log.frombytes(bytes.fromhex(data.decode()))
    except ValueError:
        return algorithm.new_log()  # not ours (or an older format): start afresh
    return log


def _safe(key: str) -> str:
    """``key`` itself when memcached takes it, else a digest of it."""
    if _SAFE_KEY.fullmatch(key):
        return key
    return KEY_PREFIX + hashlib.blake2b(key.encode(), digest_size=20).hexdigest()
