"""The tokens Keystone has rejected, remembered for a while so they do not cost it again.

Entries are keyed by the sha256 digest of the token (the token itself is never kept),
each until its expiry, the oldest evicted first past ``size``. Only ``OrderedDict``
operations that are atomic under the GIL are used (and none switches green threads),
so requests may share one instance without a lock.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable

Key = tuple[bytes, bool]


class InvalidTokens:
    """sha256 digests of rejected tokens with their expiry, ``ttl_s`` after rejection."""

    def __init__(self, *, ttl_s: float, size: int, clock: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.clock = clock
        self.expiries: OrderedDict[Key, float] = OrderedDict()

    def key(self, token: str, allow_expired: bool) -> Key | None:
        """The entry's key; None when the cache is off (``ttl_s`` 0)."""
        if not self.ttl_s:
            return None
        # An expired token is rejected without allow_expired and accepted with it.
        return hashlib.sha256(token.encode()).digest(), allow_expired

    def rejected(self, key: Key | None) -> bool:
        """Whether Keystone rejected this token less than ``ttl_s`` ago."""
        if key is None:
            return False
        expiry = self.expiries.get(key)
        if expiry is None:
            return False
        if self.clock() < expiry:
            return True
        self.expiries.pop(key, None)
        return False

    def add(self, key: Key | None) -> None:
        """Remember a rejection; past ``size`` entries the oldest go."""
        if key is None:
            return
        self.expiries.pop(key, None)  # so the order stays the order of expiry
        self.expiries[key] = self.clock() + self.ttl_s
        while len(self.expiries) > self.size:
            with contextlib.suppress(KeyError):  # emptied by another request meanwhile
                self.expiries.popitem(last=False)
