"""``request_id``: give every request an id, answer it in a header, put it in the logs.

- Every request gets a fresh ``req-<uuid4>`` (lowercase, 8-4-4-4-12) in
  ``environ['openstack.request_id']`` and the response carries it in
  ``x-openstack-request-id``. If the app already set that header, its value is kept.
- ``compat_headers`` names more response headers that carry the same id (the one the
  response has in ``x-openstack-request-id``); the app's own values of those headers
  are replaced, so that every id header of a response agrees.
- An inbound ``X-OpenStack-Request-ID`` is stored in
  ``environ['openstack.global_request_id']`` only when it is exactly ``req-<uuid4>``
  in lowercase; anything else is ignored and never echoed. It never replaces the local id.
- :class:`RequestIdLogFilter` makes ``%(request_id)s`` and ``%(global_request_id)s``
  usable in log formats: the ids of the request being handled (per thread and per
  eventlet green thread, through ``contextvars``), ``-`` outside a request. Records
  logged with ``extra={"request_id": ...}`` keep their own value.

::

    [filter:request_id]
    use = egg:middleware_kit#request_id
    compat_headers = x-compute-request-id

Options:

``compat_headers`` (header names separated by commas and/or white space; default none)
    More response headers carrying the request id.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from middleware_kit._config import parse_options, string_list
from middleware_kit._wsgi import Environ, ExcInfo, FilterFactory, StartResponse, WSGIApp

# Read by oslo.context, nova and middleware_kit.fault.
REQUEST_ID_KEY = "openstack.request_id"
# Read by oslo.context (RequestContext.from_environ) and the services that log it.
GLOBAL_REQUEST_ID_KEY = "openstack.global_request_id"
INBOUND_KEY = "HTTP_X_OPENSTACK_REQUEST_ID"
HEADER = "x-openstack-request-id"
NO_ID = "-"

_GLOBAL_ID = re.compile(r"req-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
ID_BATCH = 256
_TEMPLATE = b"req-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_DIGIT_POSITIONS = [i for i, char in enumerate(_TEMPLATE) if char == ord("x")]
_VERSION_4 = bytes(b & 0x0F | 0x40 for b in range(256))
_VARIANT_RFC_4122 = bytes(b & 0x3F | 0x80 for b in range(256))
_IDS: collections.deque[str] = collections.deque()
os.register_at_fork(after_in_child=_IDS.clear)
# (request_id, global_request_id) of the request this thread or green thread handles.
_CURRENT: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "middleware_kit.request_id", default=None
)


def new_request_id() -> str:
    """``req-`` and a random (version 4) UUID, as ``uuid.uuid4()`` would give.

    Made ``ID_BATCH`` at a time from one ``os.urandom`` call, the digits put in place
    column by column (32 slice assignments per batch, not per id): a tenth of
    ``uuid4()``'s cost. The batch is a deque (``pop`` is atomic across threads),
    emptied in a forked child so that workers never share ids.
    """
    try:
        return _IDS.pop()
    except IndexError:
        raw = bytearray(os.urandom(16 * ID_BATCH))
        raw[6::16] = raw[6::16].translate(_VERSION_4)
        raw[8::16] = raw[8::16].translate(_VARIANT_RFC_4122)
        digits = raw.hex().encode()
        out = bytearray(_TEMPLATE * ID_BATCH)
        for column, position in enumerate(_DIGIT_POSITIONS):
            out[position :: len(_TEMPLATE)] = digits[column::32]
        text, size = out.decode(), len(_TEMPLATE)
        _IDS.extend(text[i : i + size] for i in range(0, len(text), size))
        return _IDS.pop()


class RequestId:
    """Set ``openstack.request_id`` and answer it in ``x-openstack-request-id``."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        compat_headers: Iterable[str] = (),
        id_factory: Callable[[], str] = new_request_id,
    ) -> None:
        self.app = app
        self.id_factory = id_factory
        self.compat_headers = tuple(
            dict.fromkeys(h.lower() for h in compat_headers if h.lower() != HEADER)
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request_id = environ[REQUEST_ID_KEY] = self.id_factory()
        inbound = environ.get(INBOUND_KEY)
        global_id = NO_ID
        if isinstance(inbound, str) and _GLOBAL_ID.fullmatch(inbound):
            global_id = environ[GLOBAL_REQUEST_ID_KEY] = inbound
        compat = self.compat_headers

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            value = None
            stale = False
            for name, header_value in headers:
                lowered = name.lower()
                if lowered == HEADER:
                    value = header_value
                elif lowered in compat:
                    stale = True
            if value is None:
                value = request_id
                headers = [*headers, (HEADER, value)]
            if stale:
                headers = [h for h in headers if h[0].lower() not in compat]
            if compat:
                headers = [*headers, *((name, value) for name in compat)]
            return start_response(status, headers, exc_info)

        token = _CURRENT.set((request_id, global_id))
        try:
            body = self.app(environ, start)
        except BaseException:
            _CURRENT.reset(token)
            raise
        if type(body) is list:
            _CURRENT.reset(token)
            return body
        return _Body(body, token)

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> FilterFactory:
        """Paste filter factory; options are parsed here, once."""
        options = parse_options("request_id", local_conf, {"compat_headers": _header_names})
        return lambda app: cls(app, **options)


class _Body:
    """The app's body, unchanged; the log ids stay set until the server closes it."""

    def __init__(self, body: Iterable[bytes], token: contextvars.Token[Any]) -> None:
        self.body = body
        self.token = token

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            # ValueError: closed from another context, where our value was never set.
            with contextlib.suppress(ValueError):
                _CURRENT.reset(self.token)


class RequestIdLogFilter(logging.Filter):
    """Add ``request_id`` and ``global_request_id`` to every record (``-`` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _CURRENT.get() or (NO_ID, NO_ID)
        fields = record.__dict__
        if "request_id" not in fields:
            fields["request_id"] = ids[0]
        if "global_request_id" not in fields:
            fields["global_request_id"] = ids[1]
        return True


def _header_names(raw: str) -> tuple[str, ...]:
    names = string_list(raw)
    bad = [name for name in names if not _TOKEN.fullmatch(name)]
    if bad:
        raise ValueError(f"not a header name: {bad[0]!r}")
    return names


filter_factory = RequestId.factory
