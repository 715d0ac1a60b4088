"""``faultwrap``: nova's FaultWrapper; exceptions of the app become JSON faults.

An exception raised by the app, or while it produces its first non-empty body chunk,
is answered in the project's fault format (with the request id when ``request_id`` ran
before):

- Status: a ``webob.exc.HTTPException`` keeps its own; another exception's ``code``
  attribute is used when it is an int from 400 to 599, else 500. A WebOb exception
  below 400 (a redirect, say) is a deliberate answer and is sent as it is.
- Message: a WebOb exception gives its ``detail``, else its ``explanation``; another
  exception gives the generic text of its status, unless it carries ``safe = True``:
  then ``str(exc)``.
- The exception's ``headers`` attribute (a dict or a list of pairs) is copied to the
  response, except Content-Type, Content-Length, Transfer-Encoding, Connection and
  any header that is not a valid name and value. For 413 and 429 a ``Retry-After``
  header is also put in the body as ``retryAfter``.
- An exception out of reading the request body is the client's, not a server error:
  a body that stalled past the server's socket timeout is a 408, one cut short or not
  valid chunked encoding a 400.
- Logged at ERROR with the traceback for 5xx, at INFO (one line) for 4xx.

An exception after the first chunk is not caught here (``catch_errors`` aborts the
response). If the app had already called ``start_response``, the fault is started
again with ``exc_info``, as PEP 3333 asks.

::

    [filter:faultwrap]
    use = egg:middleware_kit#faultwrap

The filter takes no options.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import webob.exc
from webob.request import DisconnectionError

from middleware_kit import fault
from middleware_kit._config import parse_options
from middleware_kit._wsgi import (
    EVENTLET_INPUT_KEY,
    Environ,
    ExcInfo,
    FilterFactory,
    ResumedBody,
    StartResponse,
    WSGIApp,
    close_body,
)

LOG = logging.getLogger(__name__)

RETRY_AFTER_CODES = frozenset({413, 429})
INCOMPLETE_BODY = "The request body ended before its Content-Length."
BAD_BODY = "The request body could not be read."
LATE_BODY = "The request body did not arrive in time."
NOT_COPIED = frozenset({"content-type", "content-length", "transfer-encoding", "connection"})
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


class FaultWrap:
    """Answer exceptions of the app with nova-style JSON faults."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        started: list[bool] = []

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            started.append(True)
            return start_response(status, headers, exc_info)

        body: Iterable[bytes] = ()
        first: list[bytes] = []
        try:
            body = self.app(environ, start)
            if type(body) is list:
                return body
            chunks = iter(body)
            for chunk in chunks:  # up to the first chunk the server would send
                first.append(chunk)
                if chunk:
                    break
        except Exception as exc:
            exc_info = (type(exc), exc, exc.__traceback__) if started else None
            answer = _answer(environ, start_response, exc, exc_info)
            try:
                close_body(body)
            except Exception:
                LOG.exception("closing the body of a failed response failed too")
            return answer
        return ResumedBody(body, itertools.chain(first, chunks))

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> FilterFactory:
        """Paste filter factory; the filter has no options, unknown ones fail the load."""
        parse_options("faultwrap", local_conf, {})
        return cls


def _answer(
    environ: Environ, start_response: StartResponse, exc: Exception, exc_info: ExcInfo | None
) -> Iterable[bytes]:
    try:
        code, message, headers = _describe(exc, environ)
    except Exception:  # an exception that cannot even be described: a plain 500
        code, message, headers = 500, fault.generic_message(500), []
    _log(environ, exc, code, message)
    if code < 400:  # a deliberate WebOb answer (redirect, 204 ...)

        def restart(status: str, response_headers: list[tuple[str, str]], _: Any = None) -> Any:
            return start_response(status, response_headers, exc_info)

        response: Iterable[bytes] = exc(environ, restart)  # type: ignore[operator]
        return response
    retry_after = next((v for n, v in headers if n.lower() == "retry-after"), None)
    extra = {"retryAfter": retry_after} if retry_after and code in RETRY_AFTER_CODES else None
    return fault.send_fault(
        environ, start_response, code, message, headers=headers, extra=extra, exc_info=exc_info
    )


def _describe(exc: Exception, environ: Environ) -> tuple[int, str, list[tuple[str, str]]]:
    """(status code, message, headers to copy) for an exception."""
    code = getattr(exc, "code", None)
    if not isinstance(exc, webob.exc.HTTPException) and _reading_the_body(exc, environ):
        if isinstance(exc, TimeoutError):
            return 408, LATE_BODY, []
        return 400, INCOMPLETE_BODY if isinstance(exc, DisconnectionError) else BAD_BODY, []
    if isinstance(exc, webob.exc.HTTPException):
        message = getattr(exc, "detail", None) or getattr(exc, "explanation", None)
        code = code if isinstance(code, int) else 500
    else:
        if type(code) is not int or not 400 <= code <= 599:
            code = 500
        message = str(exc) if getattr(exc, "safe", False) is True else None
    return code, str(message or fault.generic_message(code)), _headers(exc)


def _reading_the_body(exc: Exception, environ: Environ) -> bool:
    """Whether ``exc`` came out of reading the request body: the client's fault (a body
    cut short, not valid chunked encoding, or stalled past the server's timeout)."""
    if isinstance(exc, DisconnectionError):
        return True
    # The code of the readers' methods (not the frames' locals: reading those would tie
    # the frames to the exception in a cycle only the garbage collector frees).
    code = {
        function.__code__
        for key in ("wsgi.input", EVENTLET_INPUT_KEY)
        if (reader := environ.get(key)) is not None
        for function in vars(type(reader)).values()
        if hasattr(function, "__code__")
    }
    tb = exc.__traceback__
    while tb is not None and code:
        if tb.tb_frame.f_code in code:
            return True
        tb = tb.tb_next
    return False


def _headers(exc: Exception) -> list[tuple[str, str]]:
    """The valid headers of a dict or a list of pairs in ``exc.headers``; [] for others."""
    raw = getattr(exc, "headers", None)
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, list | tuple):
        pairs = [pair for pair in raw if isinstance(pair, tuple) and len(pair) == 2]
    else:
        return []
    return [
        (name, value)
        for name, value in pairs
        if isinstance(name, str)
        and isinstance(value, str)
        and name.lower() not in NOT_COPIED
        and _NAME.fullmatch(name)
        and _VALUE.fullmatch(value)
    ]


def _log(environ: Environ, exc: Exception, code: int, message: str) -> None:
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD")
    if code >= 500:
        LOG.error("%s %r answered %d", method, path, code, exc_info=exc)
    else:
        LOG.info("%s %r answered %d (%s): %r", method, path, code, type(exc).__name__, message)


filter_factory = FaultWrap.factory
