"""Properties every answer of the chain must have, shared by tests/test_hostile.py and
the fuzz target (benchmarks/fuzz_chain.py): how to call it, what to check.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from middleware_kit import fault
from middleware_kit._wsgi import Environ, StartResponse, WSGIApp
from middleware_kit.demo import Demo
from tests.support import hostile_apps
from tests.support.chains import build_chain, names

STATUS = re.compile(r"[1-5][0-9]{2} [^\x00-\x1f\x7f]*")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
SECRET_PREFIX = "s3cr3t-"


class Recorder:
    """Answers 200; keeps the environ that reached it and how many body bytes it read
    (counted as it reads, so an exception from the input leaves the count so far)."""

    def __init__(self) -> None:
        self.environ: Environ | None = None
        self.body_bytes = 0

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        self.environ = dict(environ)
        self.body_bytes = 0
        while chunk := environ["wsgi.input"].read(100):
            self.body_bytes += len(chunk)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]


def _hostile(factory_name: str) -> WSGIApp:
    app: WSGIApp = getattr(hostile_apps, factory_name)({})
    return app


def downstream_chains(recorder: Recorder) -> dict[str, WSGIApp]:
    """``CHAIN`` around each downstream app, by name.

    Every failure but two is answered by the chain itself: raising after the first
    chunk ("raises_mid_body": catch_errors logs, headers masked, and re-raises for the
    server to abort) and never calling start_response (not here: the server answers,
    tests/test_faults.py).
    """
    downstream: dict[str, WSGIApp] = {
        "recorder": recorder,
        "demo": Demo(),
        "raises": _hostile("raises_factory"),
        "raises_first_chunk": _hostile("raises_on_first_chunk_factory"),
        "non_iterable": _hostile("non_iterable_factory"),
        "raises_mid_body": _hostile("raises_mid_body_factory"),
    }
    return {name: build_chain(app) for name, app in downstream.items()}


@dataclass
class Outcome:
    status: str
    headers: list[tuple[str, str]]
    body: bytes


def call(app: WSGIApp, environ: Environ) -> Outcome:
    """Run ``app`` as a WSGI server does: the last start_response wins, then the body."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if started and exc_info is None:
            raise AssertionError("start_response called twice without exc_info")
        started.append((status, headers))
        return lambda data: None

    body: Iterable[bytes] = app(environ, start_response)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    assert started, "no start_response"
    status, headers = started[-1]
    return Outcome(status, headers, data)


CREDENTIAL_HEADERS = (
    "X-Auth-Token",
    "X-Subject-Token",
    "X-Service-Token",
    "Authorization",
    "Cookie",
    "X-Api-Key",
    "X-Password",
)
# Under noauth, X-Auth-Token is the caller's "<user>:<project>" and becomes its user and
# project ids, logged and echoed by design: a name, not a secret.
SECRET_HEADERS = tuple(
    h for h in CREDENTIAL_HEADERS if h != "X-Auth-Token" or "noauth" not in names()
)
KNOWN_HEADERS = (
    "Host",
    "Accept",
    "Content-Type",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "Forwarded",
    "X-Real-Ip",
    "X-OpenStack-Request-ID",
    "X-Identity-Status",
    "X-User-Id",
    "X-Project-Id",
    "X-Roles",
    "X-Service-Catalog",
    "OpenStack-System-Scope",
    "Expect",
)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def assert_valid_response(outcome: Outcome, environ: Environ) -> None:
    assert STATUS.fullmatch(outcome.status), outcome.status
    for name, value in outcome.headers:
        assert isinstance(name, str) and TOKEN.fullmatch(name), name
        assert isinstance(value, str) and FIELD_VALUE.fullmatch(value), (name, value)
        value.encode("latin-1")
    lengths = [v for n, v in outcome.headers if n.lower() == "content-length"]
    if lengths and environ["REQUEST_METHOD"] != "HEAD":
        assert lengths == [str(len(outcome.body))]


def assert_fault_format(outcome: Outcome, environ: Environ) -> None:
    code = int(outcome.status[:3])
    if code < 400:
        return
    assert ("Content-Type", fault.CONTENT_TYPE) in outcome.headers
    if environ["REQUEST_METHOD"] == "HEAD":
        assert outcome.body == b""
        return
    document = json.loads(outcome.body)
    assert isinstance(document, dict) and len(document) == 1
    ((name, detail),) = document.items()
    assert name == fault.FAULT_NAMES.get(code, fault.DEFAULT_FAULT_NAME)
    assert detail["code"] == code and isinstance(detail["message"], str)


def server_input(environ: Environ, body: bytes) -> io.BytesIO:
    """``wsgi.input`` as a server gives it: a valid Content-Length bounds the body; with
    neither it nor Transfer-Encoding (or an empty one, PEP 3333) there is none; with
    Transfer-Encoding (chunked) it runs to the end."""
    length = environ.get("CONTENT_LENGTH")
    if not environ.get("HTTP_TRANSFER_ENCODING"):
        if not length:
            body = b""
        elif length.isascii() and length.isdigit():
            body = body[: int(length)]
    return io.BytesIO(body)


# Downstream apps that fail: the answer is a 500, or a filter's 4xx rejection before them.
FILTER_ANSWERS = frozenset({("204", "noauth")} if "noauth" in names() else ())
FAILING = frozenset({"raises", "raises_first_chunk", "non_iterable", "raises_mid_body"})


def call_downstream(chains: dict[str, WSGIApp], name: str, environ: Environ) -> Outcome | None:
    """``call`` the chain in front of ``name``; None for the one designed escape: the
    "raises_mid_body" app's error after its first chunk, for the server to abort."""
    try:
        return call(chains[name], environ)
    except RuntimeError as exc:
        if name == "raises_mid_body" and "middle of the body" in str(exc):
            return None
        raise


def assert_answer(name: str, outcome: Outcome, sent: Environ) -> None:
    """The properties of an answer; ``sent`` is the environ as sent (the chain edits it)."""
    assert_valid_response(outcome, sent)
    assert_fault_format(outcome, sent)
    code = outcome.status[:3]
    if name in FAILING:  # its 500, unless a filter answered first: a 4xx, noauth's 204
        assert code == "500" or code[0] == "4" or (code, "noauth") in FILTER_ANSWERS, code
    elif name == "recorder":  # an app that never fails: no 5xx from the chain either
        assert code[0] != "5", code


def assert_no_credential_leaks(credentials: list[str], outcome: Outcome, logged: str) -> None:
    shown = outcome.body.decode("latin-1") + repr(outcome.headers)
    for credential in credentials:
        assert credential not in logged
        assert credential not in shown
