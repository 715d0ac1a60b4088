"""faultwrap: nova's FaultWrapper status, message, header and logging rules."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webob
import webob.exc
from hypothesis import given, settings
from hypothesis import strategies as st
from paste.deploy import loadapp

from middleware_kit._config import ConfigError
from middleware_kit._wsgi import Environ, StartResponse, WSGIApp
from middleware_kit.fault import generic_message
from middleware_kit.faultwrap import FaultWrap, filter_factory
from middleware_kit.request_id import RequestId
from tests.support.apps import SECRET
from tests.support.servers import served

LOGGER = "middleware_kit.faultwrap"


class CodedError(Exception):
    """An exception with nova's optional attributes; only the given ones are set."""

    def __init__(self, message: str = SECRET, **attributes: Any) -> None:
        super().__init__(message)
        for name, value in attributes.items():
            setattr(self, name, value)


class UnprintableError(Exception):
    safe = True
    code = 400

    def __str__(self) -> str:
        raise RuntimeError("no text")


class BadCodeError(Exception):
    @property
    def code(self) -> int:
        raise RuntimeError("no code")


def raising(exc: BaseException, *, start_first: bool = False) -> WSGIApp:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if start_first:
            start_response("200 OK", [("Content-Type", "text/plain")])
        raise exc

    return app


def ok_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def fault_of(exc: BaseException, **request: Any) -> tuple[webob.Response, str, dict[str, Any]]:
    response = webob.Request.blank("/v1/x", **request).get_response(FaultWrap(raising(exc)))
    assert response.content_type == "application/json"
    [(name, detail)] = response.json.items()
    return response, name, detail


@pytest.mark.parametrize(
    ("exc", "code", "name", "message"),
    [
        pytest.param(RuntimeError(SECRET), 500, "computeFault", None, id="plain"),
        pytest.param(
            webob.exc.HTTPNotFound(),
            404,
            "itemNotFound",
            "The resource could not be found.",
            id="webob-explanation",
        ),
        pytest.param(
            webob.exc.HTTPBadRequest(explanation="bad thing"),
            400,
            "badRequest",
            "bad thing",
            id="webob-given-explanation",
        ),
        pytest.param(
            webob.exc.HTTPForbidden(detail="nope"), 403, "forbidden", "nope", id="webob-detail"
        ),
        pytest.param(
            webob.exc.HTTPServiceUnavailable(),
            503,
            "serviceUnavailable",
            "The server is currently unavailable. Please try again at a later time.",
            id="webob-503",
        ),
        pytest.param(CodedError(code=409), 409, "conflictingRequest", None, id="code"),
        pytest.param(
            CodedError(code=409, safe=True), 409, "conflictingRequest", SECRET, id="code-safe"
        ),
        pytest.param(CodedError(safe=True), 500, "computeFault", SECRET, id="safe-500"),
        pytest.param(CodedError(code=404, safe=1), 404, "itemNotFound", None, id="safe-not-true"),
        pytest.param(CodedError(code=400), 400, "badRequest", None, id="code-400"),
        pytest.param(CodedError(code=599), 599, "computeFault", None, id="code-599"),
        pytest.param(CodedError(code=399), 500, "computeFault", None, id="code-399"),
        pytest.param(CodedError(code=600), 500, "computeFault", None, id="code-600"),
        pytest.param(CodedError(code="404"), 500, "computeFault", None, id="code-str"),
        pytest.param(CodedError(code=True), 500, "computeFault", None, id="code-bool"),
        pytest.param(CodedError(code=None), 500, "computeFault", None, id="code-none"),
        pytest.param(CodedError(code=404.0), 500, "computeFault", None, id="code-float"),
        pytest.param(UnprintableError(), 500, "computeFault", None, id="unprintable-safe"),
        pytest.param(BadCodeError(), 500, "computeFault", None, id="code-property-raises"),
    ],
)
def test_status_and_message(exc: Exception, code: int, name: str, message: str | None) -> None:
    response, fault_name, detail = fault_of(exc)
    assert response.status_int == code
    assert (fault_name, detail["code"]) == (name, code)
    assert detail["message"] == (message or generic_message(code))
    if message != SECRET:
        assert SECRET not in response.text


@pytest.mark.parametrize(
    ("exc", "retry_after"),
    [
        pytest.param(CodedError(code=413, headers={"Retry-After": "30"}), "30", id="413-dict"),
        pytest.param(CodedError(code=429, headers=[("retry-after", "5")]), "5", id="429-pairs"),
        pytest.param(webob.exc.HTTPTooManyRequests(headers={"Retry-After": "7"}), "7", id="webob"),
        pytest.param(
            CodedError(code=503, headers={"Retry-After": "9"}), None, id="503-header-only"
        ),
        pytest.param(CodedError(code=429, headers={}), None, id="429-without"),
    ],
)
def test_retry_after_goes_into_the_body_for_413_and_429(
    exc: Exception, retry_after: str | None
) -> None:
    response, _, detail = fault_of(exc)
    assert detail.get("retryAfter") == retry_after
    if retry_after is not None:
        assert response.headers["Retry-After"] == retry_after


def test_only_valid_headers_are_copied() -> None:
    headers = {
        "X-Ok": "1",
        "Bad Name": "x",
        "X-Crlf": "a\r\nSet-Cookie: evil=1",
        "X-Nul": "a\x00b",
        "Content-Length": "999",
        "Content-Type": "text/html",
        "Connection": "close",
        "X-Int": 5,
    }
    response, _, _ = fault_of(CodedError(code=400, headers=headers))
    assert response.headers["X-Ok"] == "1"
    for name in ("Bad Name", "X-Crlf", "X-Nul", "Connection", "X-Int", "Set-Cookie"):
        assert name not in response.headers
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"


@pytest.mark.parametrize(
    "headers",
    [None, 42, "X-A: b", [("X-A",)], [["X-A", "b"]]],
    ids=["none", "int", "str", "short-pair", "list-pair"],
)
def test_unusable_headers_attribute_is_ignored(headers: Any) -> None:
    response, name, _ = fault_of(CodedError(code=403, headers=headers))
    assert (response.status_int, name) == (403, "forbidden")


def test_webob_redirect_is_sent_as_it_is() -> None:
    app = FaultWrap(raising(webob.exc.HTTPFound(location="/elsewhere")))
    response = webob.Request.blank("/").get_response(app)
    assert response.status_int == 302
    assert response.location == "http://localhost/elsewhere"


@pytest.mark.parametrize(
    ("exc", "level", "traceback"),
    [
        pytest.param(RuntimeError("x"), logging.ERROR, True, id="500"),
        pytest.param(CodedError(code=502), logging.ERROR, True, id="502"),
        pytest.param(webob.exc.HTTPNotFound(), logging.INFO, False, id="404"),
        pytest.param(CodedError(code=429), logging.INFO, False, id="429"),
    ],
)
def test_logging_level_by_status(
    exc: Exception, level: int, traceback: bool, caplog: pytest.LogCaptureFixture
) -> None:
    fault_of(exc, method="PUT")
    [record] = records(caplog)
    assert record.levelno == level
    assert bool(record.exc_info) == traceback
    assert record.getMessage().startswith("PUT '/v1/x' answered ")


def test_request_id_outside_is_in_the_fault_and_header() -> None:
    app = RequestId(FaultWrap(raising(CodedError(code=404))), id_factory=lambda: "req-fw")
    response = webob.Request.blank("/").get_response(app)
    assert response.json["itemNotFound"]["request_id"] == "req-fw"
    assert response.headers["x-openstack-request-id"] == "req-fw"


def test_head_fault_has_no_body() -> None:
    app = FaultWrap(raising(CodedError(code=404)))
    response = webob.Request.blank("/", method="HEAD").get_response(app)
    assert (response.status_int, response.body) == (404, b"")


def test_fault_after_start_response_carries_exc_info() -> None:
    calls: list[tuple[str, Any]] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        calls.append((status, exc_info))
        return lambda data: None

    FaultWrap(raising(CodedError(code=409), start_first=True))(
        {"REQUEST_METHOD": "GET"}, start_response
    )
    assert calls[0] == ("200 OK", None)
    assert calls[1][0] == "409 Conflict"
    assert isinstance(calls[1][1][1], CodedError)


class Body:
    def __init__(self, chunks: list[bytes], exc: Exception | None) -> None:
        self.chunks, self.exc, self.closed = chunks, exc, 0

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.exc is not None:
            raise self.exc

    def close(self) -> None:
        self.closed += 1


def body_app(body: Body) -> WSGIApp:
    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [])
        return body

    return app


def test_exception_before_the_first_chunk_is_a_fault_and_the_body_closed() -> None:
    body = Body([b""], CodedError(code=429))
    response = webob.Request.blank("/").call_application(FaultWrap(body_app(body)), True)
    assert response[0] == "429 Too Many Requests"
    assert json.loads(b"".join(response[2]))["overLimit"]["code"] == 429
    assert body.closed == 1


def test_exception_after_the_first_chunk_is_left_to_catch_errors() -> None:
    body = Body([b"a"], CodedError(code=429))
    result = FaultWrap(body_app(body))({}, lambda *a: lambda d: None)
    chunks = iter(result)
    assert next(chunks) == b"a"
    with pytest.raises(CodedError):
        next(chunks)
    getattr(result, "close")()  # noqa: B009 - the WSGI server's call
    assert body.closed == 1


def test_pass_through() -> None:
    body = [b"ok"]
    app = FaultWrap(lambda environ, start_response: (start_response("200 OK", []), body)[1])
    assert app({}, lambda *a: lambda d: None) is body
    generated = FaultWrap(body_app(Body([b"", b"x"], None)))
    assert webob.Request.blank("/").get_response(generated).body == b"x"


def test_factory_takes_no_options() -> None:
    assert isinstance(filter_factory({})(ok_app), FaultWrap)
    with pytest.raises(ConfigError, match="faultwrap: unknown option 'debug'"):
        filter_factory({}, debug="1")
    assert filter_factory == FaultWrap.factory


def test_loads_through_paste_egg(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = request_id faultwrap demo\n\n"
        "[filter:request_id]\nuse = egg:middleware_kit#request_id\n\n"
        "[filter:faultwrap]\nuse = egg:middleware_kit#faultwrap\n\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    app = loadapp(f"config:{ini}")
    response = webob.Request.blank("/boom").get_response(app)
    assert response.status_int == 500
    detail = response.json["computeFault"]
    assert detail["request_id"] == response.headers["x-openstack-request-id"]
    assert detail["message"] == generic_message(500)


exception_attributes = st.fixed_dictionaries(
    {},
    optional={
        "code": st.one_of(st.none(), st.integers(-1000, 1000), st.text(max_size=5), st.booleans()),
        "safe": st.one_of(st.booleans(), st.integers(), st.none()),
        "headers": st.one_of(
            st.none(),
            st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=4),
            st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20)), max_size=4),
        ),
    },
)


@settings(max_examples=150)
@given(message=st.text(max_size=50), attributes=exception_attributes)
def test_any_exception_attributes_give_a_valid_fault(
    message: str, attributes: dict[str, Any]
) -> None:
    response = webob.Request.blank("/").get_response(
        FaultWrap(raising(CodedError(message, **attributes)))
    )
    assert 400 <= response.status_int <= 599
    [(_, detail)] = response.json.items()
    assert detail["code"] == response.status_int
    assert int(response.headers["Content-Length"]) == len(response.body)


@settings(max_examples=100)
@given(
    headers=st.dictionaries(
        st.sampled_from(["X-Auth-Token", "Accept", "Content-Type", "X-Foo", "Cookie"]),
        st.text(st.characters(min_codepoint=0, max_codepoint=255)),
        max_size=4,
    )
)
def test_random_request_headers_never_produce_a_500(headers: dict[str, str]) -> None:
    response = webob.Request.blank("/", headers=headers).get_response(FaultWrap(ok_app))
    assert (response.status_int, response.body) == (200, b"ok")


@pytest.mark.server
def test_served_faults_carry_the_request_id(tmp_path: Path) -> None:
    ini = tmp_path / "faultwrap.ini"
    ini.write_text(
        "[composite:main]\nuse = egg:Paste#urlmap\n/raise = raise\n/coded = coded\n"
        "\n[pipeline:raise]\npipeline = request_id faultwrap raises\n"
        "\n[pipeline:coded]\npipeline = request_id faultwrap coded_error\n"
        "\n[filter:request_id]\nuse = egg:middleware_kit#request_id\n"
        "\n[filter:faultwrap]\nuse = egg:middleware_kit#faultwrap\n"
        "\n[app:raises]\nuse = call:tests.support.apps:raises_factory\n"
        "\n[app:coded_error]\nuse = call:tests.support.apps:coded_error_factory\n"
    )
    with served(ini) as server:
        raised = server.request("/raise")
        coded = server.request("/coded")
        server.stop()
        log = server.output()
    status, headers, body = raised
    assert status == 500
    assert json.loads(body)["computeFault"]["request_id"] == headers["x-openstack-request-id"]
    assert SECRET.encode() not in body
    assert f"ERROR middleware_kit.faultwrap [{headers['x-openstack-request-id']}]" in log
    status, headers, body = coded
    assert (status, headers["retry-after"]) == (429, "7")
    detail = json.loads(body)["overLimit"]
    assert (detail["retryAfter"], detail["request_id"]) == ("7", headers["x-openstack-request-id"])
    assert f"INFO middleware_kit.faultwrap [{headers['x-openstack-request-id']}]" in log


def test_a_body_cut_short_by_the_client_is_a_400(caplog: pytest.LogCaptureFixture) -> None:
    def reads_the_body(environ: Environ, start_response: StartResponse) -> list[bytes]:
        body = webob.Request(environ).body
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    request = webob.Request.blank("/cats", method="POST")
    request.environ.update(
        {"wsgi.input": io.BytesIO(b"{}"), "CONTENT_LENGTH": "100"}  # 2 of 100 bytes came
    )
    request.environ.pop("webob.is_body_seekable", None)
    with caplog.at_level(logging.INFO, logger="middleware_kit.faultwrap"):
        response = request.get_response(FaultWrap(reads_the_body))
    assert response.status_int == 400
    assert response.json == {
        "badRequest": {"code": 400, "message": "The request body ended before its Content-Length."}
    }
    assert [r.levelname for r in caplog.records] == ["INFO"]


class FailingInput:
    """A ``wsgi.input`` whose reads raise ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, size: int = -1) -> bytes:
        raise self.error


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        pytest.param(TimeoutError("timed out"), 408, "did not arrive in time", id="stalled"),
        pytest.param(ValueError("bad chunk size"), 400, "could not be read", id="bad-chunks"),
        pytest.param(OSError("reset"), 400, "could not be read", id="reset"),
    ],
)
def test_errors_out_of_the_request_body_are_the_clients(
    error: Exception, code: int, message: str
) -> None:
    def reads(environ: Environ, start_response: StartResponse) -> list[bytes]:
        return [environ["wsgi.input"].read(10)]

    request = webob.Request.blank("/cats", method="POST")
    request.environ["wsgi.input"] = FailingInput(error)
    response = request.get_response(FaultWrap(reads))
    assert response.status_int == code
    assert message in next(iter(response.json.values()))["message"]


def test_a_timeout_elsewhere_in_the_app_is_still_a_500() -> None:
    def times_out(environ: Environ, start_response: StartResponse) -> list[bytes]:
        environ["wsgi.input"].read()  # the body is fine
        raise TimeoutError("the database did not answer")

    request = webob.Request.blank("/cats", method="POST", body=b"{}")
    assert request.get_response(FaultWrap(times_out)).status_int == 500
