"""``catch_errors``: the outermost safety net; no exception reaches the client as text.

- An exception raised by the app, or while the app produces the first non-empty body
  chunk, becomes a 500 in the project's fault format with a generic message: no
  exception text, class name or traceback. ``request_id`` runs inside this filter, so
  the fault carries the id it stored in the environ, and so does an
  ``x-openstack-request-id`` header.
- A ``webob.exc.HTTPException`` raised by the app is a deliberate answer: it is sent as
  that response (with ``x-openstack-request-id`` when known).
- Either is logged once with the method, the path (no query string) and the request
  id: at ERROR with the traceback, except a deliberate 4xx ``HTTPException``, which is
  one line at INFO. The request headers are logged too, masked: the value
  of every header whose name contains ``Token`` (``X-Auth-Token``, ``X-Subject-Token``
  ...), ``Authorization``, ``Cookie``, ``Secret``, ``Password`` or ``Api-Key`` is
  ``***``.
- An exception after the first chunk is logged and re-raised to the server, which
  aborts the response: a truncated body is never passed off as complete.

If the app had already called ``start_response``, the answer is started again with
``exc_info``, as PEP 3333 asks. Put the filter first in the chain::

    [filter:catch_errors]
    use = egg:middleware_kit#catch_errors

The filter takes no options.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import webob.exc

from middleware_kit import fault
from middleware_kit._config import parse_options
from middleware_kit._wsgi import (
    Environ,
    ExcInfo,
    FilterFactory,
    StartResponse,
    WSGIApp,
    close_body,
)

LOG = logging.getLogger(__name__)

# Set by request_id (inside this filter, in the same environ); logged and answered.
REQUEST_ID_KEY = fault.REQUEST_ID_KEY
GLOBAL_REQUEST_ID_KEY = "openstack.global_request_id"
REQUEST_ID_HEADER = "x-openstack-request-id"
MASK = "***"
_SECRET_HEADER = re.compile(r"HTTP_\w*(TOKEN|AUTHORIZATION|COOKIE|SECRET|PASSWORD|API_KEY)\w*")


class CatchErrors:
    """Turn exceptions before the first body chunk into a generic 500 fault."""

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
            answer = self._answer(environ, start_response, exc, bool(started))
            _close_quietly(body)
            return answer
        return _Rest(body, first, chunks, environ)

    def _answer(
        self, environ: Environ, start_response: StartResponse, exc: Exception, started: bool
    ) -> Iterable[bytes]:
        code = getattr(exc, "code", 500) if isinstance(exc, webob.exc.HTTPException) else 500
        _log(environ, f"answered {code}", logging.ERROR if code >= 500 else logging.INFO)
        exc_info = (type(exc), exc, exc.__traceback__) if started else None
        request_id = environ.get(REQUEST_ID_KEY)
        id_header = [(REQUEST_ID_HEADER, request_id)] if request_id else []
        if not isinstance(exc, webob.exc.HTTPException):
            return fault.send_fault(
                environ,
                start_response,
                500,
                fault.generic_message(500),
                headers=id_header,
                exc_info=exc_info,
            )

        def restart(status: str, headers: list[tuple[str, str]], _: Any = None) -> Any:
            if id_header and not any(n.lower() == REQUEST_ID_HEADER for n, _v in headers):
                headers = [*headers, *id_header]
            return start_response(status, headers, exc_info)

        response: Iterable[bytes] = exc(environ, restart)
        return response

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> FilterFactory:
        """Paste filter factory; the filter has no options, unknown ones fail the load."""
        parse_options("catch_errors", local_conf, {})
        return cls


class _Rest:
    """The body after its first chunk: an exception there is logged, then re-raised."""

    def __init__(
        self, body: Iterable[bytes], first: list[bytes], rest: Iterator[bytes], environ: Environ
    ) -> None:
        self.body, self.first, self.rest, self.environ = body, first, rest, environ

    def __iter__(self) -> Iterator[bytes]:
        yield from self.first
        try:
            yield from self.rest
        except Exception:
            _log(self.environ, "aborted after the first body chunk", logging.ERROR)
            raise

    def close(self) -> None:
        close_body(self.body)


def _close_quietly(body: Iterable[bytes]) -> None:
    try:
        close_body(body)
    except Exception:
        LOG.exception("closing the body of a failed response failed too")


def _log(environ: Environ, outcome: str, level: int) -> None:
    request_id = environ.get(REQUEST_ID_KEY) or "-"
    headers = {
        key[5:].replace("_", "-").title(): MASK if _SECRET_HEADER.fullmatch(key) else value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    LOG.log(
        level,
        "%s %r failed (request %s), %s; headers: %r",
        environ.get("REQUEST_METHOD"),
        environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
        request_id,
        outcome,
        headers,
        exc_info=level >= logging.ERROR,
        extra={
            "request_id": request_id,
            "global_request_id": environ.get(GLOBAL_REQUEST_ID_KEY) or "-",
        },
    )


filter_factory = CatchErrors.factory
