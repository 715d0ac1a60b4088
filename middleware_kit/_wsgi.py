"""WSGI type aliases and the body helpers the error-handling filters share."""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeAlias

Environ: TypeAlias = dict[str, Any]
ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], object]]
WSGIApp: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]
FilterFactory: TypeAlias = Callable[[WSGIApp], WSGIApp]

# eventlet.wsgi's own reader of the request body (wsgi.input may be a wrapper of it).
EVENTLET_INPUT_KEY = "eventlet.input"
# What eventlet may still read of the body of a refused request before it closes.
DRAIN_BYTES = 1 << 20
DRAIN_S = 2.0
DRAIN_CHUNK = 64 * 1024


class ResumedBody:
    """An app's body whose first chunks a filter already took out, yielded again.

    ``chunks`` yields those first chunks and then the rest; ``close()`` closes the
    app's original body, as PEP 3333 asks of whoever iterates it.
    """

    def __init__(self, body: Iterable[bytes], chunks: Iterator[bytes]) -> None:
        self.body, self.chunks = body, chunks

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        close_body(self.body)


def close_body(body: Iterable[bytes]) -> None:
    """Call the body's ``close()`` when it has one."""
    close = getattr(body, "close", None)
    if close is not None:
        close()


def drain_little(environ: Environ) -> None:
    """After a fault: let eventlet.wsgi read and drop at most ``DRAIN_BYTES`` (for
    ``DRAIN_S``) of what is left of the request body, then close the connection.

    To keep a connection, eventlet reads the rest of every body, however long the
    client goes on. A little is worth it (a client that sends its whole body before
    reading still gets the answer, as with nginx's lingering close); a 10 GB upload
    refused with a 401 or a 413 is not.
    """
    server_input = environ.get(EVENTLET_INPUT_KEY)
    if server_input is not None and callable(getattr(server_input, "discard", None)):
        # A weak reference: the input holding a strong one to itself would be a cycle,
        # freed (with its request) only by the garbage collector.
        server_input.discard = functools.partial(_drain, weakref.ref(server_input))


def _drain(reader: weakref.ref[Any], *args: object) -> None:
    left, deadline = DRAIN_BYTES, time.monotonic() + DRAIN_S
    while left > 0 and time.monotonic() < deadline:
        server_input = reader()
        if server_input is None:
            return
        data = server_input.read(min(left, DRAIN_CHUNK))
        if not data:
            return
        left -= len(data)
    # eventlet answers an OSError from its discard by closing the connection.
    raise OSError("the rest of a refused request body was not read: connection closed")
