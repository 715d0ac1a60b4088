"""Where the sliding logs live: the one small interface and ``storage_url`` parsing.

A storage has ``hit(keys, limits, windows_ms, now_ms) -> Outcome`` (see
:mod:`.algorithm`), atomic for all keys of one request, ``ping()`` and ``close()``.
Failures of a shared storage (down, slow, refused) raise :class:`StorageError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from urllib.parse import unquote, urlsplit

from middleware_kit.ratelimit.algorithm import Outcome
from middleware_kit.ratelimit.rules import KEY_PREFIX

__all__ = ["KEY_PREFIX", "Storage", "StorageError", "check_url", "from_url", "hosts"]

SCHEMES = ("memory", "memcached", "redis", "rediss", "redis+sentinel")


class StorageError(Exception):
    """The storage could not answer (down, refused, timed out)."""


class Storage(Protocol):
    # The largest rule value the storage can count (None: no bound of its own).
    max_rule_value: int | None

    def hit(
        self,
        keys: Sequence[str],
        limits: Sequence[int],
        windows_ms: Sequence[int],
        now_ms: int,
    ) -> Outcome: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """``h:p,h:p`` as ``[(host, port)]``; raises ``ValueError`` naming a bad one."""
    out = []
    for item in netloc.rpartition("@")[2].split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = item.strip(), str(default_port)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad host:port {item!r}")
        out.append((host, int(port)))
    return out


def check_url(raw: str) -> str:
    """A ``storage_url`` option: checked, returned stripped (the storage is built later)."""
    url = raw.strip()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(
            "expected memory://, memcached://host:port[,host:port...], redis://host:port/db,"
            " rediss://host:port/db or redis+sentinel://host:port[,...]/service[/db]"
        )
    parts = urlsplit(url)
    if scheme == "memory":
        return url
    hosts(parts.netloc, 11211 if scheme == "memcached" else 6379)
    path = [p for p in parts.path.split("/") if p]
    if scheme in ("redis", "rediss") and (len(path) > 1 or (path and not path[0].isdigit())):
        raise ValueError(f"the database is a number: {unquote(parts.path)!r}")
    if scheme == "redis+sentinel" and not path:
        raise ValueError("redis+sentinel:// needs the service name: /mymaster")
    return url


def from_url(url: str, timeout_s: float) -> Storage:
    """The storage a (checked) ``storage_url`` names; no network I/O yet."""
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        from middleware_kit.ratelimit.memory import MemoryStorage

        return MemoryStorage()
    if scheme == "memcached":
        from middleware_kit.ratelimit.memcached_storage import MemcachedStorage

        return MemcachedStorage(hosts(urlsplit(url).netloc, 11211), timeout_s=timeout_s)
    from middleware_kit.ratelimit.redis_storage import RedisStorage

    return RedisStorage.from_url(url, timeout_s=timeout_s)
