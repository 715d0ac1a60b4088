"""sizelimit: the option, Content-Length checks, the limited input, paste and eventlet."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import webob
from hypothesis import given, settings
from hypothesis import strategies as st
from paste.deploy import loadapp

from middleware_kit._config import ConfigError
from middleware_kit._wsgi import Environ, StartResponse, WSGIApp
from middleware_kit.catch_errors import CatchErrors
from middleware_kit.faultwrap import FaultWrap
from middleware_kit.request_id import RequestId
from middleware_kit.sizelimit import RequestBodyTooLarge, SizeLimit, filter_factory
from tests.support.apps import CHUNK
from tests.support.servers import LOOPBACK, served

LIMIT = 100
TOO_LARGE = f"Request is larger than {LIMIT} bytes."
Read = Callable[[Any, list[bytes]], None]  # reads a wsgi.input, appends every result


def read_all(stream: Any, got: list[bytes]) -> None:
    got.append(stream.read())


def read_none(stream: Any, got: list[bytes]) -> None:
    got.append(stream.read(None))


def read_chunks(size: int) -> Read:
    def read(stream: Any, got: list[bytes]) -> None:
        while data := stream.read(size):
            got.append(data)

    return read


def read_lines(stream: Any, got: list[bytes]) -> None:
    while line := stream.readline():
        got.append(line)


def read_lines_of(size: int) -> Read:
    def read(stream: Any, got: list[bytes]) -> None:
        while line := stream.readline(size):
            got.append(line)

    return read


def read_readlines(stream: Any, got: list[bytes]) -> None:
    got.extend(stream.readlines())


def read_iteration(stream: Any, got: list[bytes]) -> None:
    for line in stream:
        got.append(line)


READS = [
    pytest.param(read_all, id="read()"),
    pytest.param(read_none, id="read(None)"),
    pytest.param(read_chunks(1), id="read(1)"),
    pytest.param(read_chunks(7), id="read(7)"),
    pytest.param(read_chunks(LIMIT), id="read(limit)"),
    pytest.param(read_chunks(LIMIT + 1), id="read(limit+1)"),
    pytest.param(read_chunks(10_000), id="read(10000)"),
    pytest.param(read_lines, id="readline()"),
    pytest.param(read_lines_of(3), id="readline(3)"),
    pytest.param(read_readlines, id="readlines()"),
    pytest.param(read_iteration, id="iteration"),
]


class Reader:
    """A downstream app that reads its body with ``read`` and records what it got.

    ``swallow``: exceptions while reading are caught and the app answers 200 anyway;
    ``start_first``: start_response is called before reading.
    """

    def __init__(
        self, read: Read = read_all, *, swallow: bool = False, start_first: bool = False
    ) -> None:
        self.read, self.swallow, self.start_first = read, swallow, start_first
        self.calls = 0
        self.parts: list[bytes] = []
        self.input: Any = None
        self.raised: BaseException | None = None

    @property
    def got(self) -> bytes:
        return b"".join(self.parts)

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        self.calls += 1
        self.input = environ["wsgi.input"]
        if self.start_first:
            start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            self.read(self.input, self.parts)
        except Exception as exc:
            self.raised = exc
            if not self.swallow:
                raise
        if not self.start_first:
            start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(self.got)).encode()]


def limited(app: WSGIApp, limit: int = LIMIT) -> SizeLimit:
    return SizeLimit(app, max_request_body_size=limit)


def post(body: bytes, **headers: str) -> webob.Request:
    """A POST with a Content-Length (WebOb sets it from the body)."""
    return webob.Request.blank("/v1/cats", method="POST", body=body, headers=headers)


def chunked(body: bytes, method: str = "POST") -> webob.Request:
    """A request as a server hands on a chunked one: no Content-Length, decoded input."""
    request = webob.Request.blank(
        "/v1/cats", method=method, headers={"Transfer-Encoding": "chunked"}
    )
    request.environ["wsgi.input"] = io.BytesIO(body)
    return request


def respond(request: webob.Request, app: WSGIApp) -> webob.Response:
    """The response as a server would send it: a start_response with ``exc_info``
    before anything was sent replaces the first (WebOb re-raises it by default)."""
    response: webob.Response = request.get_response(app, catch_exc_info=True)
    return response


def assert_fault(response: webob.Response, code: int, message: str | None = None) -> None:
    name = {400: "badRequest", 413: "overLimit"}[code]
    assert response.status_int == code
    assert response.content_type == "application/json"
    detail = response.json[name]
    assert detail["code"] == code
    if message is not None:
        assert detail["message"] == message


# --- the option --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, 114688, id="default"),
        pytest.param("114688", 114688, id="bytes"),
        pytest.param("112K", 114688, id="K"),
        pytest.param("1M", 1024**2, id="M"),
        pytest.param("2G", 2 * 1024**3, id="G"),
        pytest.param("1kib", 1024, id="KiB"),
        pytest.param("0", 0, id="off"),
    ],
)
def test_option_parses_sizes(raw: str | None, expected: int) -> None:
    conf = {} if raw is None else {"max_request_body_size": raw}
    subject = filter_factory({}, **conf)(Reader())
    assert isinstance(subject, SizeLimit)
    assert subject.limit == expected


@pytest.mark.parametrize("raw", ["12X", "-1", "1.5K", "", "K", "1 TB", "0x10"])
def test_bad_size_fails_the_load_naming_option_and_value(raw: str) -> None:
    with pytest.raises(ConfigError) as error:
        filter_factory({}, max_request_body_size=raw)
    assert f"sizelimit: option max_request_body_size = {raw!r}" in str(error.value)


def test_unknown_option_fails_the_load_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'max_request_body_size'"):
        filter_factory({}, max_request_body_sise="1K")
    assert filter_factory == SizeLimit.factory


def test_negative_limit_is_refused_by_the_class() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        SizeLimit(Reader(), max_request_body_size=-1)


# --- Content-Length ----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT], ids=["0", "1", "below", "equal"])
def test_content_length_up_to_the_limit_passes(size: int) -> None:
    app = Reader()
    response = post(b"x" * size).get_response(limited(app))
    assert (response.status_int, response.body) == (200, str(size).encode())
    assert app.got == b"x" * size


@pytest.mark.parametrize("size", [LIMIT + 1, 10 * LIMIT], ids=["one-more", "ten-times"])
def test_content_length_above_the_limit_is_413_before_the_app(size: int) -> None:
    app = Reader()
    response = post(b"x" * size).get_response(limited(app))
    assert_fault(response, 413, TOO_LARGE)
    assert app.calls == 0


@pytest.mark.parametrize(
    "length",
    ["101", "0101", "99999999999999999999999999", "9" * 5000],
    ids=["101", "leading-zero", "huge", "more-digits-than-int-reads"],
)
def test_large_content_length_values_are_413(length: str) -> None:
    app = Reader()
    request = post(b"")
    request.environ["CONTENT_LENGTH"] = length
    assert_fault(request.get_response(limited(app)), 413, TOO_LARGE)
    assert app.calls == 0


@pytest.mark.parametrize(
    "length",
    [
        pytest.param("abc", id="letters"),
        pytest.param("-1", id="negative"),
        pytest.param("1, 2", id="two-values"),
        pytest.param("5,5", id="two-equal-values"),
        pytest.param(" 5", id="leading-space"),
        pytest.param("5 ", id="trailing-space"),
        pytest.param("+5", id="plus"),
        pytest.param("1_0", id="underscore"),
        pytest.param("0x10", id="hex"),
        pytest.param("1e2", id="exponent"),
        pytest.param("5.0", id="decimal-point"),
        pytest.param("\u0665", id="arabic-digit"),
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param("5\r\nX-Evil: 1", id="crlf"),
    ],
)
def test_malformed_content_length_is_400_before_the_app(length: str) -> None:
    app = Reader()
    request = post(b"12345")
    request.environ["CONTENT_LENGTH"] = length
    assert_fault(request.get_response(limited(app)), 400)
    assert app.calls == 0


@pytest.mark.parametrize("length", ["0", "5", "1000"])
@pytest.mark.parametrize("encoding", ["chunked", "Chunked", "gzip, chunked"])
def test_content_length_with_transfer_encoding_is_400(length: str, encoding: str) -> None:
    app = Reader()
    request = post(b"12345", **{"Transfer-Encoding": encoding})
    request.environ["CONTENT_LENGTH"] = length
    response = request.get_response(limited(app))
    assert_fault(response, 400, "Content-Length and Transfer-Encoding are not allowed together.")
    assert app.calls == 0


def test_head_fault_has_no_body() -> None:
    request = post(b"x" * (LIMIT + 1))
    request.method = "HEAD"
    response = request.get_response(limited(Reader()))
    assert (response.status_int, response.body) == (413, b"")


def test_fault_carries_the_request_id_of_request_id_outside() -> None:
    app = RequestId(limited(Reader()), id_factory=lambda: "req-size")
    response = post(b"x" * (LIMIT + 1)).get_response(app)
    assert response.json["overLimit"]["request_id"] == "req-size"
    assert response.headers["x-openstack-request-id"] == "req-size"


def test_rejections_are_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "middleware_kit.sizelimit")
    post(b"x" * (LIMIT + 1)).get_response(limited(Reader()))
    [record] = [r for r in caplog.records if r.name == "middleware_kit.sizelimit"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == f"POST '/v1/cats' answered 413: {TOO_LARGE}"


# --- no body: no wrapping ----------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="no-headers"),
        pytest.param({"CONTENT_LENGTH": ""}, id="empty-length"),
        pytest.param({"CONTENT_LENGTH": "0"}, id="length-0"),
        pytest.param({"CONTENT_LENGTH": "0", "HTTP_TRANSFER_ENCODING": ""}, id="empty-te"),
    ],
)
def test_request_without_body_is_passed_untouched(environ: Environ) -> None:
    app = Reader()
    request = webob.Request.blank("/v1/cats")
    request.environ.update(environ)
    original = request.environ["wsgi.input"]
    before = dict(request.environ)
    response = request.get_response(limited(app))
    assert response.status_int == 200
    assert app.input is original
    assert request.environ == before


def test_body_with_content_length_is_not_wrapped() -> None:
    app = Reader()
    request = post(b"abc")
    original = request.environ["wsgi.input"]
    request.get_response(limited(app))
    assert app.input is original


def test_pass_through_returns_the_apps_body_itself() -> None:
    body = [b"ok"]

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return body

    assert limited(app)({"REQUEST_METHOD": "GET"}, lambda *a: lambda d: None) is body


# --- chunked: the limited input ----------------------------------------------------


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT], ids=["0", "1", "below", "equal"])
def test_chunked_body_up_to_the_limit_is_read_whole(read: Read, size: int) -> None:
    body = b"ab\ncd\n\nefg" * 20
    app = Reader(read)
    response = respond(chunked(body[:size]), limited(app))
    assert (response.status_int, response.body) == (200, str(size).encode())
    assert app.got == body[:size]
    assert app.raised is None


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize("size", [LIMIT + 1, 3 * LIMIT + 5], ids=["one-more", "three-times"])
@pytest.mark.parametrize("swallow", [False, True], ids=["raises", "swallows"])
def test_chunked_body_above_the_limit_is_413(read: Read, size: int, swallow: bool) -> None:
    app = Reader(read, swallow=swallow)
    response = respond(chunked((b"ab\ncd\n\nefg" * 100)[:size]), limited(app))
    assert_fault(response, 413, TOO_LARGE)
    assert isinstance(app.raised, RequestBodyTooLarge)
    assert len(app.got) <= LIMIT


@pytest.mark.parametrize("swallow", [False, True], ids=["raises", "swallows"])
def test_overflow_after_start_response_is_still_413(swallow: bool) -> None:
    app = Reader(swallow=swallow, start_first=True)
    response = respond(chunked(b"x" * (LIMIT + 1)), limited(app))
    assert_fault(response, 413, TOO_LARGE)


def test_overflow_with_start_response_passes_exc_info() -> None:
    calls: list[tuple[str, Any]] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        calls.append((status, exc_info))
        return lambda data: None

    environ = chunked(b"x" * (LIMIT + 1)).environ
    limited(Reader(swallow=True, start_first=True))(environ, start_response)
    assert [status for status, _ in calls] == ["200 OK", "413 Request Entity Too Large"]
    assert calls[0][1] is None
    assert isinstance(calls[1][1][1], RequestBodyTooLarge)


def test_app_turning_the_overflow_into_another_exception_still_gets_413() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except RequestBodyTooLarge:
            raise RuntimeError("bad JSON") from None
        return []

    response = respond(chunked(b"x" * (LIMIT + 1)), limited(app))
    assert_fault(response, 413, TOO_LARGE)


def test_other_exceptions_of_the_app_pass_through_and_the_body_is_not_replaced() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        environ["wsgi.input"].read(5)
        raise KeyError("app bug")

    with pytest.raises(KeyError, match="app bug"):
        limited(app)(chunked(b"x" * 10).environ, lambda *a: lambda d: None)


def test_reads_after_the_overflow_keep_raising() -> None:
    app = Reader(swallow=True)
    request = chunked(b"x" * (LIMIT + 50))
    respond(request, limited(app))
    for again in (lambda s: s.read(), lambda s: s.read(0), lambda s: s.readline(), list):
        with pytest.raises(RequestBodyTooLarge):
            again(app.input)


class Body:
    """A generator body with a close() counter; reads ``read`` after ``before`` chunks."""

    def __init__(self, environ: Environ, before: list[bytes]) -> None:
        self.environ, self.before, self.closed = environ, before, 0

    def __iter__(self) -> Iterator[bytes]:
        yield from self.before
        yield str(len(self.environ["wsgi.input"].read())).encode()

    def close(self) -> None:
        self.closed += 1


def streaming(before: list[bytes], bodies: list[Body]) -> WSGIApp:
    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append(Body(environ, before))
        return bodies[-1]

    return app


@pytest.mark.parametrize("before", [[], [b""], [b"", b""]], ids=["none", "empty", "two-empty"])
def test_overflow_before_the_first_chunk_is_413_and_the_body_closed(
    before: list[bytes],
) -> None:
    bodies: list[Body] = []
    response = respond(chunked(b"x" * (LIMIT + 1)), limited(streaming(before, bodies)))
    assert_fault(response, 413, TOO_LARGE)
    assert bodies[0].closed == 1


def test_overflow_after_the_first_chunk_raises_to_the_server() -> None:
    bodies: list[Body] = []
    app = limited(streaming([b"first"], bodies))
    result = app(chunked(b"x" * (LIMIT + 1)).environ, lambda *a: lambda d: None)
    chunks = iter(result)
    assert next(chunks) == b"first"
    with pytest.raises(RequestBodyTooLarge):
        next(chunks)
    getattr(result, "close")()  # noqa: B009 - the WSGI server's call
    assert bodies[0].closed == 1


def test_streamed_body_within_the_limit_is_whole() -> None:
    bodies: list[Body] = []
    app = limited(streaming([b"", b"first"], bodies))
    response = respond(chunked(b"x" * LIMIT), app)
    assert (response.status_int, response.body) == (200, b"first" + str(LIMIT).encode())
    assert bodies[0].closed == 1


@pytest.mark.parametrize(
    "outer",
    [
        pytest.param(FaultWrap, id="faultwrap"),
        pytest.param(CatchErrors, id="catch_errors"),
    ],
)
def test_escaping_overflow_is_413_for_our_error_filters(outer: Callable[[WSGIApp], Any]) -> None:
    # As it would escape from a nested app reading the limited input itself.
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise RequestBodyTooLarge(detail=TOO_LARGE)

    response = respond(chunked(b""), outer(app))
    assert response.status_int == 413
    if outer is FaultWrap:
        assert_fault(response, 413, TOO_LARGE)


@pytest.mark.parametrize("inner", [FaultWrap, CatchErrors], ids=["faultwrap", "catch_errors"])
def test_an_inner_error_filter_answering_the_overflow_is_replaced_by_our_fault(
    inner: Callable[[WSGIApp], WSGIApp],
) -> None:
    response = respond(chunked(b"x" * (LIMIT + 1)), limited(inner(Reader())))
    assert_fault(response, 413, TOO_LARGE)


def test_limit_off_neither_limits_nor_wraps() -> None:
    app = Reader()
    request = chunked(b"x" * 10_000)
    original = request.environ["wsgi.input"]
    response = respond(request, limited(app, 0))
    assert (response.status_int, app.input) == (200, original)
    assert post(b"x" * 10_000).get_response(limited(app, 0)).status_int == 200
    bad = post(b"x")
    bad.environ["CONTENT_LENGTH"] = "-1"
    assert_fault(bad.get_response(limited(app, 0)), 400)


@pytest.mark.parametrize("encoding", ["chunked", "CHUNKED", "gzip", "identity", " "])
def test_any_transfer_encoding_without_length_is_limited(encoding: str) -> None:
    app = Reader()
    request = chunked(b"x" * (LIMIT + 1))
    request.environ["HTTP_TRANSFER_ENCODING"] = encoding
    assert_fault(respond(request, limited(app)), 413, TOO_LARGE)


# --- paste --------------------------------------------------------------------------

PASTE_INI = """\
[pipeline:main]
pipeline = request_id sizelimit reader

[filter:request_id]
use = egg:middleware_kit#request_id

[filter:sizelimit]
{load}
max_request_body_size = 1K

[app:reader]
use = call:tests.support.apps:body_length_factory
swallow = {swallow}
"""
LOADS = [
    pytest.param("use = egg:middleware_kit#sizelimit", id="egg"),
    pytest.param(
        "paste.filter_factory = middleware_kit.sizelimit:SizeLimit.factory", id="class-factory"
    ),
]


def with_length(length: str, body: bytes = b"x" * 1024) -> webob.Request:
    request = post(body)
    request.environ["CONTENT_LENGTH"] = length
    return request


def both_headers() -> webob.Request:
    request = post(b"x" * 10, **{"Transfer-Encoding": "chunked"})
    return request


PASTE_CASES = [
    pytest.param(lambda: webob.Request.blank("/"), (200, "0"), id="get"),
    pytest.param(lambda: post(b"x" * 1024), (200, "1024"), id="length-equal"),
    pytest.param(lambda: post(b"x" * 1025), (413, "overLimit"), id="length-above"),
    pytest.param(lambda: with_length("1, 2"), (400, "badRequest"), id="length-two-values"),
    pytest.param(lambda: with_length("-1"), (400, "badRequest"), id="length-negative"),
    pytest.param(both_headers, (400, "badRequest"), id="length-and-chunked"),
    pytest.param(lambda: chunked(b"x" * 1024), (200, "1024"), id="chunked-equal"),
    pytest.param(lambda: chunked(b"x" * 1025), (413, "overLimit"), id="chunked-above"),
]


@pytest.fixture(params=LOADS)
def load(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.mark.parametrize("swallow", ["false", "true"], ids=["raises", "swallows"])
@pytest.mark.parametrize(("make", "expected"), PASTE_CASES)
def test_through_paste(
    tmp_path: Path,
    load: str,
    swallow: str,
    make: Callable[[], webob.Request],
    expected: tuple[int, str],
) -> None:
    status, answer = expected
    ini = tmp_path / "api.ini"
    ini.write_text(PASTE_INI.format(load=load, swallow=swallow))
    app = loadapp(f"config:{ini}")
    response = respond(make(), app)
    assert response.status_int == status
    if status == 200:
        assert response.text == answer
        return
    detail = response.json[answer]
    assert detail["request_id"] == response.headers["x-openstack-request-id"]
    if status == 413:
        assert detail["message"] == "Request is larger than 1024 bytes."


def test_paste_bad_size_fails_the_load(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(PASTE_INI.format(load=LOADS[0].values[0], swallow="false"))
    ini.write_text(ini.read_text().replace("= 1K", "= 12X"))
    with pytest.raises(ConfigError, match="max_request_body_size = '12X'"):
        loadapp(f"config:{ini}")


# --- properties ---------------------------------------------------------------------

header_values = st.one_of(
    st.none(),
    st.integers(-5, 500).map(str),
    st.text(alphabet="0123456789 ,-+_.xe\t", max_size=8),
    st.text(st.characters(max_codepoint=0x3000, exclude_categories=["Cs"]), max_size=8),
)
encodings = st.one_of(
    st.none(),
    st.sampled_from(["chunked", "Chunked", "gzip, chunked", "identity", "", " "]),
    st.text(max_size=10),
)


def expected_status(length: str | None, encoding: str | None, body: bytes, limit: int) -> int:
    """The contract, written out: what a request should get."""
    if not encoding:
        if not length:
            return 200
        if not (length.isascii() and length.isdigit()):
            return 400
        return 413 if limit and int(length) > limit else 200
    if length:
        return 400
    return 413 if limit and len(body) > limit else 200


@settings(max_examples=300, deadline=None)
@given(
    length=header_values,
    encoding=encodings,
    body=st.binary(max_size=300),
    limit=st.integers(0, 200),
    swallow=st.booleans(),
)
def test_random_headers_never_give_a_500_or_an_exception(
    length: str | None, encoding: str | None, body: bytes, limit: int, swallow: bool
) -> None:
    request = webob.Request.blank("/", method="POST")
    request.environ["wsgi.input"] = io.BytesIO(body)
    if length is not None:
        request.environ["CONTENT_LENGTH"] = length
    if encoding is not None:
        request.environ["HTTP_TRANSFER_ENCODING"] = encoding
    app = Reader(read_chunks(37), swallow=swallow)
    response = respond(request, limited(app, limit))
    assert response.status_int == expected_status(length, encoding, body, limit)
    if response.status_int != 200:
        [(_, detail)] = response.json.items()
        assert detail["code"] == response.status_int
    if encoding and limit:
        assert len(app.got) <= limit


OPERATIONS = {
    "read": lambda stream, n: [stream.read(n)],
    "readline": lambda stream, n: [stream.readline(n)],
    "readlines": lambda stream, n: stream.readlines(n),
    "iterate": lambda stream, n: list(stream),
    "next": lambda stream, n: [next(iter(stream), b"")],
}


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=400).map(lambda b: b.replace(b"\x00", b"\n")),
    limit=st.integers(1, 250),
    calls=st.lists(
        st.tuples(st.sampled_from(sorted(OPERATIONS)), st.none() | st.integers(-2, 300)),
        min_size=1,
        max_size=12,
    ),
    swallow=st.booleans(),
)
def test_the_app_never_gets_more_than_the_limit(
    body: bytes, limit: int, calls: list[tuple[str, int | None]], swallow: bool
) -> None:
    def read(stream: Any, got: list[bytes]) -> None:
        for name, size in calls:
            got.extend(OPERATIONS[name](stream, size))

    app = Reader(read, swallow=swallow)
    response = respond(chunked(body), limited(app, limit))
    assert len(app.got) <= limit
    assert app.got == body[: len(app.got)]
    if app.raised is not None:
        assert isinstance(app.raised, RequestBodyTooLarge)
        assert len(body) > limit
        assert_fault(response, 413, f"Request is larger than {limit} bytes.")
    else:
        assert response.status_int == 200
    if len(body) <= limit:
        assert app.raised is None


# --- served: real chunked requests against the eventlet server ----------------------

SERVED_INI = """\
[composite:main]
use = egg:Paste#urlmap
/read = read
/swallow = swallow
/stream = stream

[pipeline:read]
pipeline = request_id sizelimit reader

[pipeline:swallow]
pipeline = request_id sizelimit swallower

[pipeline:stream]
pipeline = request_id sizelimit streamer

[filter:request_id]
use = egg:middleware_kit#request_id

[filter:sizelimit]
use = egg:middleware_kit#sizelimit
max_request_body_size = 1K

[app:reader]
use = call:tests.support.apps:body_length_factory

[app:swallower]
use = call:tests.support.apps:body_length_factory
swallow = true

[app:streamer]
use = call:tests.support.apps:body_length_factory
stream_first = true
"""


@contextlib.contextmanager
def send_chunked(
    port: int, path: str, body: bytes, piece: int = 300
) -> Iterator[http.client.HTTPResponse]:
    """POST ``body`` with ``Transfer-Encoding: chunked``, in chunks of ``piece`` bytes."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body=iter([body[i : i + piece] for i in range(0, len(body), piece)]),
            headers={"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"},
            encode_chunked=True,
        )
        with connection.getresponse() as response:
            yield response
    finally:
        connection.close()


def got_by_request(log: str) -> dict[str, int]:
    """Request id -> bytes the app logged it got."""
    return {rid: int(n) for rid, n in re.findall(r"\[(req-[0-9a-f-]+)\] got (\d+) bytes", log)}


@pytest.mark.server
def test_served_chunked_bodies(tmp_path: Path) -> None:
    ini = tmp_path / "sizelimit.ini"
    ini.write_text(SERVED_INI)
    answers: dict[str, tuple[int, str, bytes]] = {}
    with served(ini) as server:
        for name, path, size in [
            ("below", "/read", 1000),
            ("equal", "/read", 1024),
            ("above", "/read", 5000),
            ("swallowed", "/swallow", 5000),
            ("far-above", "/read", 300_000),
        ]:
            with send_chunked(server.port, path, b"x" * size) as response:
                rid = response.getheader("x-openstack-request-id") or ""
                answers[name] = (response.status, rid, response.read())
        length_status, _, length_body = server.request("/read", method="POST", body=b"x" * 1025)
        server.stop()
        got = got_by_request(server.output())
    assert answers["below"][0::2] == (200, b"1000")
    assert answers["equal"][0::2] == (200, b"1024")
    for name in ("above", "swallowed", "far-above"):
        status, rid, body = answers[name]
        assert status == 413, name
        detail = json.loads(body)["overLimit"]
        assert detail == {
            "code": 413,
            "message": "Request is larger than 1024 bytes.",
            "request_id": rid,
        }
        assert got[rid] <= 1024, name
    assert length_status == 413
    assert json.loads(length_body)["overLimit"]["code"] == 413


@pytest.mark.server
def test_served_overflow_after_the_first_chunk_aborts_the_response(tmp_path: Path) -> None:
    ini = tmp_path / "sizelimit.ini"
    ini.write_text(SERVED_INI)
    with served(ini) as server:
        with send_chunked(server.port, "/stream", b"x" * 5000) as response:
            assert response.status == 200
            with pytest.raises(http.client.IncompleteRead) as aborted:
                response.read()
        with send_chunked(server.port, "/stream", b"x" * 1024) as response:
            whole = (response.status, response.read())
        server.stop()
        got = sorted(got_by_request(server.output()).values())
    assert aborted.value.partial.startswith(CHUNK)
    assert whole == (200, CHUNK + b"1024")
    assert got == [1000, 1024]


@pytest.mark.server
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_served_refused_body_is_not_drained(tmp_path: Path, framing: str) -> None:
    """A client that goes on sending after its 413 finds the connection closed; the
    server does not read (up to) gigabytes to keep it."""
    ini = tmp_path / "sizelimit.ini"
    ini.write_text(SERVED_INI)
    piece = b"x" * 16384
    head = b"POST /read HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if framing == "chunked":
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        piece = b"%x\r\n%s\r\n" % (len(piece), piece)
    else:
        head += b"Content-Length: %d\r\n\r\n" % (10 * 2**30)
    budget, sent = 64 * 2**20, 0
    with served(ini) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(5)
        sock.sendall(head)
        deadline = time.monotonic() + 10
        with pytest.raises(OSError):  # reset or broken pipe: the server closed
            while sent < budget and time.monotonic() < deadline:
                sock.sendall(piece)
                sent += len(piece)
            sock.recv(1)  # not drained and not closed: the 5 s timeout raises too
            raise AssertionError(f"{sent} bytes were taken after the 413")
    assert sent < budget
