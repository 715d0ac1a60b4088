"""WSGI type aliases and the two body helpers the error-handling filters share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeAlias

Environ: TypeAlias = dict[str, Any]
ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], object]]
WSGIApp: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]
FilterFactory: TypeAlias = Callable[[WSGIApp], WSGIApp]


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
