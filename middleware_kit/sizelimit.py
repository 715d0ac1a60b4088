"""``sizelimit``: oslo's RequestBodySizeLimiter; request bodies above a limit get a 413.

- A ``Content-Length`` above ``max_request_body_size``: a 413 fault ("Request is
  larger than N bytes.") before the app is called. Equal to the limit passes.
- A malformed ``Content-Length`` (not ASCII digits: negative, several values ...) or
  one together with a ``Transfer-Encoding``: a 400 fault, the app is not called.
- A body without ``Content-Length`` (chunked): the app can read at most the limit
  from ``wsgi.input``, whatever mix of ``read``, ``readline``, ``readlines`` and
  iteration it uses; reading past it raises :class:`RequestBodyTooLarge` (a
  ``webob.exc.HTTPRequestEntityTooLarge``: ``faultwrap`` and ``catch_errors`` answer
  it with a 413). If that happens before the response's first non-empty chunk, the
  filter answers the 413 fault itself, even when the app swallowed the exception.
- A request without a body (neither header, or ``Content-Length: 0``) costs a few
  dictionary lookups.
- Under eventlet.wsgi, as after every fault, at most 1 MiB (for 2 s) of the rest of a
  refused body is read and dropped; then the server closes the connection (see
  :func:`middleware_kit._wsgi.drain_little`).

::

    [filter:sizelimit]
    use = egg:middleware_kit#sizelimit
    max_request_body_size = 112K

``max_request_body_size`` (bytes with an optional K, M or G suffix; default 114688)
    The largest request body passed on. ``0`` turns the limit off (malformed headers
    still get their 400).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import webob.exc

from middleware_kit import fault
from middleware_kit._config import byte_size, parse_options
from middleware_kit._wsgi import (
    Environ,
    ExcInfo,
    FilterFactory,
    ResumedBody,
    StartResponse,
    WSGIApp,
    close_body,
)

LOG = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BODY_SIZE = 114688  # oslo.middleware's default, 112 KiB
READ_CHUNK = 64 * 1024  # asked of the server per read when the app reads "all"
BAD_LENGTH = "Content-Length is not a whole number of bytes."
LENGTH_AND_ENCODING = "Content-Length and Transfer-Encoding are not allowed together."


class RequestBodyTooLarge(webob.exc.HTTPRequestEntityTooLarge):  # type: ignore[misc]
    """Raised by the wrapped ``wsgi.input`` when the app reads past the limit."""


class SizeLimit:
    """Answer 413 to request bodies above ``max_request_body_size`` bytes."""

    def __init__(
        self, app: WSGIApp, *, max_request_body_size: int = DEFAULT_MAX_REQUEST_BODY_SIZE
    ) -> None:
        if max_request_body_size < 0:
            raise ValueError("max_request_body_size must be at least 0")
        self.app = app
        self.limit = max_request_body_size
        self.ceiling = max_request_body_size or math.inf
        self.message = f"Request is larger than {max_request_body_size} bytes."

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH")
        if not environ.get("HTTP_TRANSFER_ENCODING"):
            if not length:
                return self.app(environ, start_response)  # no body
            if length.isdigit() and length.isascii():
                try:
                    size: float = int(length)
                except ValueError:  # more digits than int() reads: above any limit
                    size = math.inf
                if size <= self.ceiling:
                    return self.app(environ, start_response)
                return _reject(environ, start_response, 413, self.message)
            return _reject(environ, start_response, 400, BAD_LENGTH)
        if length:
            return _reject(environ, start_response, 400, LENGTH_AND_ENCODING)
        if not self.limit:
            return self.app(environ, start_response)
        return self._limited(environ, start_response)

    def _limited(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        reader = environ["wsgi.input"] = _LimitedInput(
            environ["wsgi.input"], self.limit, self.message
        )

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            reader.started = True
            return start_response(status, headers, exc_info)

        body: Iterable[bytes] = ()
        first: list[bytes] = []
        chunks: Iterator[bytes] = iter(first)
        try:
            body = self.app(environ, start)
            if type(body) is not list:
                chunks = iter(body)
                for chunk in chunks:  # up to the first chunk the server would send
                    first.append(chunk)
                    if chunk:
                        break
        except Exception:  # re-raised unless the body overflowed: then it is a 413
            if reader.error is None:
                close_body(body)
                raise
        error = reader.error
        if error is None:
            return (
                body if type(body) is list else ResumedBody(body, itertools.chain(first, chunks))
            )
        close_body(body)
        # After a write() the server has sent the headers: it re-raises exc_info (PEP 3333).
        exc_info = (type(error), error, error.__traceback__) if reader.started else None
        return _reject(environ, start_response, 413, self.message, exc_info)

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> FilterFactory:
        """Paste filter factory; options are parsed here, once."""
        options = parse_options("sizelimit", local_conf, {"max_request_body_size": byte_size})
        return lambda app: cls(app, **options)


class _LimitedInput:
    """``wsgi.input`` handing out at most ``limit`` bytes in all; past that it raises.

    Every underlying read asks for at most one byte more than what is left: getting
    that byte is how an overflow is seen, and it is never handed to the app.
    """

    def __init__(self, raw: Any, limit: int, message: str) -> None:
        self.raw, self.left, self.message = raw, limit, message
        self.error: RequestBodyTooLarge | None = None
        self.started = False  # whether the app called start_response

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self._take(self.raw.read(min(size, self.left + 1)))
        parts = []  # all of it
        while data := self._take(self.raw.read(min(self.left + 1, READ_CHUNK))):
            parts.append(data)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        most = self.left + 1 if size is None or size < 0 else min(size, self.left + 1)
        return self._take(self.raw.readline(most))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(self)  # PEP 3333: the hint may be ignored

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _take(self, data: bytes) -> bytes:
        if self.error is None and len(data) <= self.left:
            self.left -= len(data)
            return data
        self.left = 0
        if self.error is None:
            self.error = RequestBodyTooLarge(detail=self.message)
        raise self.error


def _reject(
    environ: Environ,
    start_response: StartResponse,
    code: int,
    message: str,
    exc_info: ExcInfo | None = None,
) -> Iterable[bytes]:
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    LOG.info("%s %r answered %d: %s", environ.get("REQUEST_METHOD"), path, code, message)
    return fault.send_fault(environ, start_response, code, message, exc_info=exc_info)


filter_factory = SizeLimit.factory
