"""``memcached://host:port[,host:port...]``: the sliding logs as memcached values.

Memcached runs no scripts, so a decision is optimistic: one ``gets`` of every matched
log (one round trip per server holding one), the same steps as the memory storage, then
only when every rule admits, one ``cas`` (or ``add`` for a new log) per log with the
request's time appended. A ``cas`` that lost a race re-reads that log and decides
again; if it now denies, the logs already written give the time back. So an admitted
request costs 1 + (matched rules) round trips (2 with one rule), a denied one 1, and no
log ever holds more than N times in a window. Keys are spread over the servers by
rendezvous (highest random weight) hashing, a consistent hashing: a server added or
lost moves only its own share of keys.
"""

from __future__ import annotations

import hashlib
import math
import re
from array import array
from collections.abc import Sequence
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import MemcacheError, MemcacheUnexpectedCloseError

from middleware_kit.ratelimit import algorithm
from middleware_kit.ratelimit.algorithm import Outcome
from middleware_kit.ratelimit.storage import KEY_PREFIX, StorageError

ERRORS = (OSError, MemcacheError)
# What a pooled connection to a server that restarted since answers: worth one retry.
STALE = (BrokenPipeError, ConnectionResetError, MemcacheUnexpectedCloseError)
MAX_ATTEMPTS = 32  # cas races lost in a row before giving up (as a storage error)
_SAFE_KEY = re.compile(r"[!-~]{1,200}")  # printable ASCII without space, well under 250


class MemcachedStorage:
    """A pooled pymemcache client per server; each key lives on one server."""

    def __init__(self, servers: Sequence[tuple[str, int]], *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.servers = {f"{host}:{port}": (host, port) for host, port in servers}
        self.clients = {name: self._new_client(name) for name in self.servers}
        self.ring = RendezvousHash(nodes=list(self.clients))
        self.only = next(iter(self.servers)) if len(self.servers) == 1 else None

    def _new_client(self, server: str) -> PooledClient:
        timeout = self.timeout_s
        return PooledClient(
            self.servers[server], connect_timeout=timeout, timeout=timeout, no_delay=True
        )

    def _call(self, key: str, method: str, *args: object, **kwargs: object) -> Any:
        """``method(key, ...)`` on the client of ``key``'s server."""
        return self._on(self._server(key), method, key, *args, **kwargs)

    def _server(self, key: str) -> str:
        return self.only or self.ring.get_node(key)

    def _on(self, server: str, method: str, *args: object, **kwargs: object) -> Any:
        """``method`` on the client of ``server``. A connection that failed (not timed
        out) drops that server's pool: its idle sockets are as dead as this one, and a
        restarted server gets fresh connections."""
        client = self.clients[server]
        try:
            return getattr(client, method)(*args, **kwargs)
        except ERRORS as exc:
            if not isinstance(exc, TimeoutError) and self.clients[server] is client:
                self.clients[server] = self._new_client(server)
                client.close()
            raise

    def hit(
        self,
        keys: Sequence[str],
        limits: Sequence[int],
        windows_ms: Sequence[int],
        now_ms: int,
    ) -> Outcome:
        keys = [_safe(key) for key in keys]
        try:
            return self._hit(keys, limits, windows_ms, now_ms)
        except ERRORS as exc:
            raise StorageError(f"memcached: {exc}") from None

    def _hit(
        self, keys: list[str], limits: Sequence[int], windows_ms: Sequence[int], now_ms: int
    ) -> Outcome:
        found = self._gets(keys)
        logs = [_log(found.get(key)) for key in keys]
        tokens = [found[key][1] if key in found else None for key in keys]
        admitted, starts = algorithm.decide(logs, limits, windows_ms, now_ms)
        if admitted:
            logs = [log[start:] for log, start in zip(logs, starts, strict=True)]
            starts = [0] * len(logs)
            for i, key in enumerate(keys):
                if not self._commit(
                    key, logs, tokens, i, limit=limits[i], window_ms=windows_ms[i], now_ms=now_ms
                ):
                    self._give_back(keys[:i], windows_ms, now_ms)
                    for j in range(i):
                        logs[j] = logs[j][:-1]
                    admitted = False
                    break
        return admitted, [
            algorithm.state(log, start, limit, now_ms)
            for log, start, limit in zip(logs, starts, limits, strict=True)
        ]

    def _commit(
        self,
        key: str,
        logs: list[array[int]],
        tokens: list[bytes | None],
        i: int,
        *,
        limit: int,
        window_ms: int,
        now_ms: int,
    ) -> bool:
        """Append ``now_ms`` to log ``i`` in memcached; False when it no longer admits."""
        expire = math.ceil(window_ms / 1000) + 1
        for _attempt in range(MAX_ATTEMPTS):
            value = (logs[i] + array("q", [now_ms])).tobytes()
            if tokens[i] is None:
                stored = self._call(key, "add", value, expire=expire, noreply=False)
            else:
                stored = self._call(key, "cas", value, tokens[i], expire=expire, noreply=False)
            if stored:
                logs[i].append(now_ms)
                return True
            got = self._call(key, "gets")  # lost a race: read again, decide again
            log = _log(got if got[0] is not None else None)
            start = algorithm.window_start(log, now_ms - window_ms)
            logs[i], tokens[i] = log[start:], got[1] if got[0] is not None else None
            if len(logs[i]) >= limit:
                return False
        raise StorageError(f"memcached: {key} kept changing under {MAX_ATTEMPTS} attempts")

    def _give_back(self, keys: Sequence[str], windows_ms: Sequence[int], now_ms: int) -> None:
        """Remove one ``now_ms`` from each of ``keys`` (a request that was denied after all)."""
        for key, window_ms in zip(keys, windows_ms, strict=False):
            for _attempt in range(MAX_ATTEMPTS):
                value, token = self._call(key, "gets")
                if value is None:
                    break
                log = _log((value, token))
                if now_ms in log:
                    log.remove(now_ms)
                expire = math.ceil(window_ms / 1000) + 1
                stored = self._call(key, "cas", log.tobytes(), token, expire=expire, noreply=False)
                if stored is not False:
                    break

    def _gets(self, keys: Sequence[str]) -> dict[str, tuple[bytes, bytes]]:
        """One ``gets`` of ``keys`` per server; once more on a stale pooled connection."""
        by_server: dict[str, list[str]] = {}
        for key in keys:
            by_server.setdefault(self._server(key), []).append(key)
        found: dict[str, tuple[bytes, bytes]] = {}
        for server, server_keys in by_server.items():
            try:
                found.update(self._on(server, "gets_many", server_keys))
            except STALE:
                found.update(self._on(server, "gets_many", server_keys))
        return found

    def ping(self) -> None:
        try:
            for server in self.servers:
                self._on(server, "version")
        except ERRORS as exc:
            raise StorageError(f"memcached: {exc}") from None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _log(found: tuple[bytes, bytes] | None) -> array[int]:
    log = algorithm.new_log()
    if found is not None:
        log.frombytes(found[0])
    return log


def _safe(key: str) -> str:
    """``key`` itself when memcached takes it, else a digest of it."""
    if _SAFE_KEY.fullmatch(key):
        return key
    return KEY_PREFIX + hashlib.blake2b(key.encode(), digest_size=20).hexdigest()
