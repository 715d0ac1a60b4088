"""``memcached://host:port[,host:port...]``: one shared log per counted key.

Memcached runs no scripts and a ``cas`` loses whenever another process wrote first, so
the decision is not taken on a read-modify-write: a request *appends* an entry to the
log of its key (user, project or address; all its rules are in that one log) and reads
the log back, both pipelined in **one round trip** whoever wrote last. Memcached orders
the appends; every process replays them alike (:mod:`.shared_log`) and so reaches the
same decision for every entry: exact across processes and hosts, as one sliding log.

- A process remembers what it replayed (the most recently used logs, up to
  ``MAX_REMEMBERED`` of them and ``MAX_REMEMBERED_ENTRIES`` entries) and reads only
  the new entries; when its replay already shows a rule full until a later time, it
  denies without a round trip (an admitted time never leaves its window early), so a
  client hammering past its limit adds no entries.
- Denied and expired entries are dropped by compaction: a ``cas`` against the token
  the read returned, sent with the next request of this process on that log (same
  round trip); if other processes keep it from landing and the log grows on, one
  extra round trip does it at once (:meth:`.Replay.overdue`).
- ``gats`` (get and touch) keeps a log alive for its longest window after every use.

Keys are spread over the servers by rendezvous (highest random weight) hashing, a
consistent hashing: a server added or lost moves only its own share of keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import re
import socket
import threading
from collections.abc import Iterator, Sequence

from pymemcache.client.rendezvous import RendezvousHash

from middleware_kit.ratelimit.algorithm import Outcome
from middleware_kit.ratelimit.shared_log import (
    Decision,
    Replay,
    new_head,
    rule_token,
)
from middleware_kit.ratelimit.storage import KEY_PREFIX, StorageError


class MemcachedError(Exception):
    """A reply memcached would not send, or a connection it closed mid-reply."""


class ConnectionClosedError(MemcachedError):
    """The server closed the connection before its reply was complete."""


# EOFError: eventlet's green recv on a socket closed under a waiting green thread
# (memcached killed mid-request) raises it, not an OSError.
ERRORS = (OSError, EOFError, MemcachedError)
# What a pooled connection to a server that restarted since answers: worth one retry
# (the command cannot have reached the new server process).
STALE = (BrokenPipeError, ConnectionResetError, ConnectionClosedError)
MAX_IDLE = 64  # idle connections kept per server; more are closed when returned
MAX_RULE_VALUE = 10_000  # requests per window of one rule: logs up to ~400 KB
MAX_ATTEMPTS = 3  # appends that found no log (evicted, flushed) before giving up
MAX_REMEMBERED = 16_384  # logs whose replay this process keeps
MAX_REMEMBERED_ENTRIES = 250_000  # and the entries they hold: about 60 MB
LOG_PREFIX = KEY_PREFIX + "log:"
_SAFE_KEY = re.compile(r"[!-~]{1,200}")  # printable ASCII without space, well under 250
_SAFE_TAG = re.compile(r"[0-9A-Za-z_-]{1,40}")
RECV_BYTES = 64 * 1024
MIN_VERSION = (1, 5, 3)  # gats (get and touch)
_STORED = b"STORED"
MAX_NAMES = 1024
_NAMES: dict[tuple[str, int, int], bytes] = {}  # (rule tag, limit, window) -> entry name
_NONCES = random.Random(os.urandom(16))  # unique, not secret; reseeded in a forked child


class MemcachedStorage:
    """A pool of connections per server; each log lives on one server."""

    # A log holds every admitted request of its window (~40 bytes each) and must stay
    # well under memcached's 1 MiB item size: larger rules fail the load.
    max_rule_value: int | None = MAX_RULE_VALUE

    def __init__(
        self,
        servers: Sequence[tuple[str, int]],
        *,
        timeout_s: float,
        remember: int = MAX_REMEMBERED,
        remember_entries: int = MAX_REMEMBERED_ENTRIES,
    ) -> None:
        self.timeout_s = timeout_s
        self.remember = remember
        self.remember_entries = remember_entries
        self.held = 0  # entries the remembered replays hold (their memory, ~240 B each)
        self.servers = {f"{host}:{port}": (host, port) for host, port in servers}
        self.pools = {name: _Pool(address, timeout_s) for name, address in self.servers.items()}
        self.ring = RendezvousHash(nodes=list(self.pools))
        self.only = next(iter(self.servers)) if len(self.servers) == 1 else None
        self.logs: dict[str, Replay] = {}
        # Compactions to send with the next request on a log: key -> (cas token, value).
        self.compactions: dict[str, tuple[bytes, bytes]] = {}
        self.waiting: dict[bytes, Decision | None] = {}  # this process's entries in flight
        self.longest_ms = 1000
        self.lock = threading.Lock()

    def hit(
        self,
        keys: Sequence[str],
        limits: Sequence[int],
        windows_ms: Sequence[int],
        now_ms: int,
    ) -> Outcome:
        key, names = _log_key(keys, limits, windows_ms)
        with self.lock:
            replay = self.logs.get(key)
            denied = replay.denies(names, now_ms) if replay else None
            self.longest_ms = max(self.longest_ms, *windows_ms)
        if denied is not None:
            return denied
        nonce = b"%012x" % _NONCES.getrandbits(48)
        entry = b" %x,%s,%s" % (now_ms, nonce, b"+".join(names))
        self.waiting[nonce] = None
        known = replay is not None  # the log exists: no add needed, unless it vanished
        try:
            for attempt in range(MAX_ATTEMPTS):
                value, token, appended = self._append(key, entry, add=attempt > 0 or not known)
                if appended and value is not None:
                    return self._decide(key, (value, token), nonce, names, now_ms)
        except ERRORS as exc:
            raise StorageError(f"memcached: {exc}") from None
        finally:
            self.waiting.pop(nonce, None)
        raise StorageError(f"memcached: {key} vanished under {MAX_ATTEMPTS} appends")

    def _append(self, key: str, entry: bytes, *, add: bool) -> tuple[bytes | None, bytes, bool]:
        """Send [compaction], [``add`` (a log, when there is none)], ``append``, ``gats``;
        the log as it is now, its cas token, and whether the entry was appended."""
        raw, expire = key.encode(), self._expire_s()
        parts = []
        compaction = self.compactions.pop(key, None)
        if compaction is not None:
            cas_token, compact = compaction
            parts.append(
                b"cas %s 0 %d %d %s\r\n%s\r\n" % (raw, expire, len(compact), cas_token, compact)
            )
        if add:
            head = new_head()
            parts.append(b"add %s 0 %d %d\r\n%s\r\n" % (raw, expire, len(head), head))
        parts.append(b"append %s 0 0 %d\r\n%s\r\n" % (raw, len(entry), entry))
        parts.append(b"gats %d %s\r\n" % (expire, raw))
        statuses, value, token = self._pipelined(
            self._server(key), b"".join(parts), len(parts) - 1
        )
        for status in statuses:
            if status not in _REPLIES:
                raise MemcachedError(f"unexpected reply {status[:60]!r}")
        return value, token, statuses[-1] == _STORED

    def _decide(
        self, key: str, read: tuple[bytes, bytes], nonce: bytes, names: list[bytes], now_ms: int
    ) -> Outcome:
        value, token = read
        with self.lock:
            known = self.logs.pop(key, None)  # back in last: the logs are kept in LRU order
            if known is not None:
                self.held -= known.held()
            replay = known if known and known.continues(value) else Replay(_head(value))
            replay.feed(value, self.waiting)
            self._remember(key, replay)
            self.longest_ms = max(self.longest_ms, replay.longest_ms)
            decision = self.waiting.get(nonce)
            if decision is None:  # compacted away by another process: it was denied
                decision = False, replay.states(names, now_ms)
            if replay.wasteful():
                self.compactions[key] = token, replay.compacted()
                urgent = replay.overdue()
            else:
                urgent = False
        if urgent:  # others keep appending: compact now, at the cost of a round trip
            self._compact_now(key)
        return decision

    def _expire_s(self) -> int:
        """A log's lifetime after its last use: the longest window it may hold, and 1 s."""
        return math.ceil(self.longest_ms / 1000) + 1

    def _compact_now(self, key: str) -> None:
        compaction = self.compactions.pop(key, None)
        if compaction is None:
            return
        token, value = compaction
        raw, expire = key.encode(), self._expire_s()
        command = b"cas %s 0 %d %d %s\r\n%s\r\n" % (raw, expire, len(value), token, value)
        with contextlib.suppress(*ERRORS):  # only tidying: the next request tries again
            self._pipelined(self._server(key), command, 1, read=False)

    def _pipelined(
        self, server: str, command: bytes, statuses: int, *, read: bool = True
    ) -> tuple[list[bytes], bytes | None, bytes]:
        """Send ``command`` (ending in ``gats`` when ``read``) on a pooled connection;
        its ``statuses`` reply lines, then the value read and its cas token."""
        for attempt in range(2):
            try:
                with self._failing_over(server) as pool, pool.connection() as sock:
                    return _exchange(sock, command, statuses, read)
            except STALE:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _remember(self, key: str, replay: Replay) -> None:
        """Keep ``replay`` as the newest; forget the least recently used logs beyond
        ``remember`` logs or ``remember_entries`` entries (a forgotten log costs one
        whole replay when next used, nothing else)."""
        logs = self.logs
        logs[key] = replay
        self.held += replay.held()
        while len(logs) > 1 and (len(logs) > self.remember or self.held > self.remember_entries):
            forgotten = next(iter(logs))
            self.held -= logs.pop(forgotten).held()
            self.compactions.pop(forgotten, None)

    def _server(self, key: str) -> str:
        return self.only or self.ring.get_node(key)

    @contextlib.contextmanager
    def _failing_over(self, server: str) -> Iterator[_Pool]:
        """The pool of ``server``. A connection that failed (not timed out) drops that
        pool: its idle sockets are as dead as this one, and a restarted server gets
        fresh connections."""
        pool = self.pools[server]
        try:
            yield pool
        except ERRORS as exc:
            if not isinstance(exc, TimeoutError) and self.pools[server] is pool:
                self.pools[server] = _Pool(self.servers[server], self.timeout_s)
                pool.close()
            raise

    def ping(self) -> None:
        """Reach every server; one older than ``gats`` (1.5.3) is an error too."""
        try:
            for server in self.servers:
                with self._failing_over(server) as pool, pool.connection() as sock:
                    sock.sendall(b"version\r\n")
                    reply = _Reply(sock).line()
                if not reply.startswith(b"VERSION "):
                    raise MemcachedError(f"unexpected reply {reply[:60]!r}")
                version = reply.removeprefix(b"VERSION ")
                if _older(version, MIN_VERSION):
                    raise StorageError(
                        f"memcached {server} is {version.decode(errors='replace')}: ratelimit"
                        f" needs {'.'.join(map(str, MIN_VERSION))} or later (gats)"
                    )
        except ERRORS as exc:
            raise StorageError(f"memcached: {exc}") from None

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


class _Pool:
    """Connections to one server: a request takes an idle one or opens one, and gives it
    back when its exchange went through; a connection that failed is closed instead."""

    def __init__(self, address: tuple[str, int], timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.idle: list[socket.socket] = []
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self) -> Iterator[socket.socket]:
        with self.lock:
            sock = self.idle.pop() if self.idle else None
        if sock is None:  # the timeout bounds the connect and every later send and recv
            sock = socket.create_connection(self.address, timeout=self.timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            yield sock
        except BaseException:
            sock.close()
            raise
        with self.lock:
            if len(self.idle) < MAX_IDLE:
                self.idle.append(sock)
                return
        sock.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for sock in idle:
            sock.close()


_REPLIES = (b"STORED", b"NOT_STORED", b"EXISTS", b"NOT_FOUND")


def _exchange(
    sock: socket.socket, command: bytes, statuses: int, read: bool
) -> tuple[list[bytes], bytes | None, bytes]:
    """Send ``command``; read ``statuses`` reply lines, then (``read``) a ``gats`` reply
    by its announced length: the value (None for a miss) and its cas token."""
    sock.sendall(command)
    reply = _Reply(sock)
    lines = [reply.line() for _ in range(statuses)]
    if not read:
        return lines, None, b""
    head = reply.line()
    if head == b"END":
        return lines, None, b""
    fields = head.split()
    if len(fields) != 5 or fields[0] != b"VALUE" or not fields[3].isdigit():
        raise MemcachedError(f"unexpected reply {head[:60]!r}")
    value = reply.exactly(int(fields[3]) + 2)[:-2]
    if reply.line() != b"END":
        raise MemcachedError("a gats reply without its END")
    return lines, value, fields[4]


class _Reply:
    """The bytes of one reply, as the socket delivers them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._more()
        line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        return line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _more(self) -> None:
        chunk = self.sock.recv(RECV_BYTES)
        if not chunk:
            raise ConnectionClosedError("memcached closed the connection")
        self.buffer += chunk


def _log_key(
    keys: Sequence[str], limits: Sequence[int], windows_ms: Sequence[int]
) -> tuple[str, list[bytes]]:
    """The log of a request's counter keys (``mkrl:<rule id>:<key>``, one ``<key>`` for
    all) and the names its entry gives its rules."""
    counted = None
    names = []
    for key, limit, window_ms in zip(keys, limits, windows_ms, strict=True):
        tag, _, rest = key.removeprefix(KEY_PREFIX).partition(":")
        if counted is None:
            counted = rest or key
        elif counted != (rest or key):
            raise ValueError(f"memcached: one request counts under one key, not {keys}")
        name = _NAMES.get((tag, limit, window_ms))
        if name is None:
            if len(_NAMES) > MAX_NAMES:  # tags other than rule ids (direct callers)
                _NAMES.clear()
            safe = (
                tag
                if _SAFE_TAG.fullmatch(tag)
                else hashlib.blake2b(tag.encode(), digest_size=6).hexdigest()
            )
            name = _NAMES[tag, limit, window_ms] = rule_token(safe, limit, window_ms)
        names.append(name)
    return _safe(LOG_PREFIX + (counted or "")), names


def _head(value: bytes) -> bytes:
    return value.split(b" ", 1)[0]


def _older(version: bytes, minimum: tuple[int, ...]) -> bool:
    """Whether a ``version`` reply (``1.6.18``) names a release before ``minimum``."""
    numbers = re.match(rb"(\d+)\.(\d+)\.(\d+)", version)
    if numbers is None:
        return False  # a fork or a proxy that words it otherwise: let it try
    return tuple(int(n) for n in numbers.groups()) < minimum


def _safe(key: str) -> str:
    """``key`` itself when memcached takes it, else a digest of it."""
    if _SAFE_KEY.fullmatch(key):
        return key
    return KEY_PREFIX + hashlib.blake2b(key.encode(), digest_size=20).hexdigest()


os.register_at_fork(after_in_child=lambda: _NONCES.seed(os.urandom(16)))
