"""The one fault format of every rejection this project's filters and demo app make.

``{"<faultName>": {"code": N, "message": "...", "request_id": "req-..."}}`` as
``application/json; charset=UTF-8``, with nova's fault names so existing clients parse
it. ``request_id`` is present when ``request_id`` ran before. A HEAD response carries
the headers and no body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from middleware_kit._wsgi import Environ, ExcInfo, StartResponse, drain_little

# Set by the request_id filter; oslo.context, nova and our filters read it.
REQUEST_ID_KEY = "openstack.request_id"

CONTENT_TYPE = "application/json; charset=UTF-8"

FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}
DEFAULT_FAULT_NAME = "computeFault"


def status_line(code: int) -> str:
    """``"413 Request Entity Too Large"``; codes the stdlib does not know get ``Unknown``."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


def generic_message(code: int) -> str:
    """The text a fault carries when nothing more specific may be said."""
    try:
        return HTTPStatus(code).description or HTTPStatus(code).phrase
    except ValueError:
        return "The server could not complete the request."


def fault_body(
    code: int,
    message: str,
    request_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """Render the JSON body of a fault."""
    detail: dict[str, Any] = {"code": code, "message": message}
    if extra:
        detail.update(extra)
    if request_id:
        detail["request_id"] = request_id
    return json.dumps({FAULT_NAMES.get(code, DEFAULT_FAULT_NAME): detail}).encode()


def send_fault(
    environ: Environ,
    start_response: StartResponse,
    code: int,
    message: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
    extra: Mapping[str, Any] | None = None,
    exc_info: ExcInfo | None = None,
) -> list[bytes]:
    """Answer a WSGI request with a fault; returns the body iterable. Under
    eventlet.wsgi, little of an unread request body is read after it (drain_little)."""
    drain_little(environ)
    body = fault_body(code, message, environ.get(REQUEST_ID_KEY), extra)
    response_headers = [
        ("Content-Type", CONTENT_TYPE),
        ("Content-Length", str(len(body))),
        *headers,
    ]
    if exc_info is None:
        start_response(status_line(code), response_headers)
    else:
        start_response(status_line(code), response_headers, exc_info)
    if environ.get("REQUEST_METHOD") == "HEAD":
        return []
    return [body]
