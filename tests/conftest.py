"""Fixtures shared by every test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support.keystone import keystone  # noqa: F401  (one Keystone for the session)
from tests.support.servers import BackgroundServer, start_memcached, start_redis

# No per-example deadline: on a loaded 2-core CI machine a slow example is not a bug,
# and a timing failure would make a property test flaky. Speed lives in benchmarks/.
settings.register_profile("middleware_kit", deadline=None)
settings.load_profile("middleware_kit")


@pytest.fixture
def redis_server() -> Iterator[tuple[BackgroundServer, str]]:
    """A fresh redis-server on a free loopback port: (server, storage url)."""
    server, url = start_redis()
    try:
        yield server, url
    finally:
        server.stop()


@pytest.fixture
def memcached_server() -> Iterator[tuple[BackgroundServer, str]]:
    """A fresh memcached on a free loopback port: (server, storage url)."""
    server, url = start_memcached()
    try:
        yield server, url
    finally:
        server.stop()
