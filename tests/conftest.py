"""Fixtures shared by every test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.keystone import keystone  # noqa: F401  (one Keystone for the session)
from tests.support.servers import BackgroundServer, start_memcached, start_redis


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
