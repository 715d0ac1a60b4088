"""catch_errors: generic 500s, deliberate WebOb answers, masked logs, aborted bodies."""

from __future__ import annotations

import http.client
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webob
import webob.exc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paste.deploy import loadapp

from middleware_kit._config import ConfigError
from middleware_kit._wsgi import Environ, StartResponse, WSGIApp
from middleware_kit.catch_errors import CatchErrors, filter_factory
from middleware_kit.fault import generic_message
from middleware_kit.request_id import RequestId
from tests.support.apps import SECRET
from tests.support.servers import served

GENERIC = generic_message(500)
LOGGER = "middleware_kit.catch_errors"


class Recorder:
    """What a WSGI server sees: every start_response call, the body, whether closed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], Any]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.calls.append((status, headers, exc_info))
        return lambda data: None


def ok_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def raising(exc: BaseException, *, start_first: bool = False) -> WSGIApp:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if start_first:
            start_response("200 OK", [("Content-Type", "text/plain")])
        raise exc

    return app


class Body:
    """A body iterable that yields ``chunks`` then raises ``exc``; records close()."""

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
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    return app


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def test_pass_through_list_is_returned_as_is() -> None:
    body = [b"ok"]
    app = CatchErrors(lambda environ, start_response: (start_response("200 OK", []), body)[1])
    recorder = Recorder()
    assert app({}, recorder) is body
    assert recorder.calls == [("200 OK", [], None)]


def test_pass_through_iterable_keeps_chunks_and_close() -> None:
    body = Body([b"", b"a", b"b"], None)
    result = CatchErrors(body_app(body))({}, Recorder())
    assert list(result) == [b"", b"a", b"b"]
    getattr(result, "close")()  # noqa: B009 - the WSGI server's call
    assert body.closed == 1


@pytest.mark.parametrize(
    "app",
    [
        pytest.param(raising(RuntimeError(SECRET)), id="before-start-response"),
        pytest.param(raising(KeyError(SECRET), start_first=True), id="after-start-response"),
        pytest.param(body_app(Body([], ValueError(SECRET))), id="in-first-chunk"),
        pytest.param(body_app(Body([b"", b""], ValueError(SECRET))), id="after-empty-chunks"),
    ],
)
def test_exception_before_the_first_chunk_is_a_generic_500(
    app: WSGIApp, caplog: pytest.LogCaptureFixture
) -> None:
    request = webob.Request.blank("/v1/cats?x=1", method="POST", headers={"X-Auth-Token": "t0k"})
    status, headers, body = request.call_application(CatchErrors(app), catch_exc_info=True)[:3]
    text = b"".join(body).decode()
    assert status == "500 Internal Server Error"
    assert dict(headers)["Content-Type"] == "application/json; charset=UTF-8"
    fault = json.loads(text)["computeFault"]
    assert fault["code"] == 500
    assert fault["message"] == GENERIC
    for leak in (SECRET, "Error", "Traceback", "x-openstack-request-id"):
        assert leak not in text and leak.lower() not in str(headers).lower()
    [record] = errors(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and SECRET in str(record.exc_info[1])
    message = record.getMessage()
    assert "POST '/v1/cats' failed (request -), answered 500" in message
    assert "x=1" not in message and "t0k" not in message


def test_second_start_response_carries_exc_info() -> None:
    recorder = Recorder()
    CatchErrors(raising(KeyError("k"), start_first=True))({"REQUEST_METHOD": "GET"}, recorder)
    (first, _, none), (second, _, exc_info) = recorder.calls
    assert (first, none, second) == ("200 OK", None, "500 Internal Server Error")
    assert isinstance(exc_info[1], KeyError)


def test_app_body_is_closed_when_its_first_chunk_fails() -> None:
    body = Body([], ValueError("x"))
    recorder = Recorder()
    CatchErrors(body_app(body))({"REQUEST_METHOD": "GET"}, recorder)
    assert body.closed == 1
    assert recorder.calls[-1][0] == "500 Internal Server Error"


def test_fault_carries_the_request_id_of_the_inner_request_id_filter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = CatchErrors(RequestId(raising(RuntimeError("x")), id_factory=lambda: "req-inner"))
    response = webob.Request.blank("/boom").get_response(app)
    assert response.status_int == 500
    assert response.json["computeFault"]["request_id"] == "req-inner"
    assert response.headers["x-openstack-request-id"] == "req-inner"
    [record] = errors(caplog)
    assert "(request req-inner)" in record.getMessage()
    assert record.__dict__["request_id"] == "req-inner"


def test_head_fault_has_no_body() -> None:
    response = webob.Request.blank("/", method="HEAD").get_response(
        CatchErrors(raising(RuntimeError("x")))
    )
    assert response.status_int == 500
    assert response.body == b""


@pytest.mark.parametrize(
    ("exc", "status", "level"),
    [
        pytest.param(webob.exc.HTTPNotFound(), 404, logging.INFO, id="404"),
        pytest.param(webob.exc.HTTPForbidden(detail="no"), 403, logging.INFO, id="403"),
        pytest.param(webob.exc.HTTPServiceUnavailable(), 503, logging.ERROR, id="503"),
    ],
)
def test_webob_http_exception_is_sent_as_that_response(
    exc: webob.exc.HTTPException, status: int, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    app = CatchErrors(RequestId(raising(exc), id_factory=lambda: "req-w"))
    response = webob.Request.blank("/").get_response(app)
    assert response.status_int == status
    assert response.headers["x-openstack-request-id"] == "req-w"
    [record] = errors(caplog)
    assert record.levelno == level
    assert bool(record.exc_info) == (level == logging.ERROR)


def test_webob_http_exception_after_start_response_carries_exc_info() -> None:
    recorder = Recorder()
    app = CatchErrors(raising(webob.exc.HTTPConflict(), start_first=True))
    b"".join(app({"REQUEST_METHOD": "GET", "SERVER_NAME": "x", "SERVER_PORT": "80"}, recorder))
    assert recorder.calls[-1][0] == "409 Conflict"
    assert isinstance(recorder.calls[-1][2][1], webob.exc.HTTPConflict)


@pytest.mark.parametrize(
    ("header", "masked"),
    [
        pytest.param("X-Auth-Token", True, id="x-auth-token"),
        pytest.param("X-Subject-Token", True, id="x-subject-token"),
        pytest.param("X-Service-Token", True, id="x-service-token"),
        pytest.param("Authorization", True, id="authorization"),
        pytest.param("Proxy-Authorization", True, id="proxy-authorization"),
        pytest.param("Cookie", True, id="cookie"),
        pytest.param("X-Api-Key", True, id="api-key"),
        pytest.param("X-Forwarded-For", False, id="x-forwarded-for"),
        pytest.param("User-Agent", False, id="user-agent"),
    ],
)
def test_logged_headers_are_masked(
    header: str, masked: bool, caplog: pytest.LogCaptureFixture
) -> None:
    request = webob.Request.blank("/", headers={header: "value-0123"})
    request.get_response(CatchErrors(raising(RuntimeError("x"))))
    [record] = errors(caplog)
    message = record.getMessage()
    assert ("value-0123" in message) != masked
    assert (f"'{header}': '***'" in message) == masked


def test_exception_after_the_first_chunk_is_logged_and_reraised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = Body([b"first", b"second"], RuntimeError("late"))
    recorder = Recorder()
    result = CatchErrors(body_app(body))({"REQUEST_METHOD": "GET", "PATH_INFO": "/s"}, recorder)
    chunks = iter(result)
    assert next(chunks) == b"first"
    assert next(chunks) == b"second"
    with pytest.raises(RuntimeError, match="late"):
        next(chunks)
    getattr(result, "close")()  # noqa: B009
    assert body.closed == 1
    assert [c[0] for c in recorder.calls] == ["200 OK"]
    [record] = errors(caplog)
    assert "GET '/s' failed (request -), aborted after the first body chunk" in record.getMessage()


def test_factory_takes_no_options() -> None:
    assert filter_factory({})(ok_app).app is ok_app  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="catch_errors: unknown option 'debug'"):
        filter_factory({}, debug="true")
    assert filter_factory == CatchErrors.factory


def test_loads_through_paste_egg(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = catch_errors request_id demo\n\n"
        "[filter:catch_errors]\nuse = egg:middleware_kit#catch_errors\n\n"
        "[filter:request_id]\nuse = egg:middleware_kit#request_id\n\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    app = loadapp(f"config:{ini}")
    response = webob.Request.blank("/boom").get_response(app)
    assert response.status_int == 500
    request_id = response.headers["x-openstack-request-id"]
    assert response.json["computeFault"]["request_id"] == request_id
    assert webob.Request.blank("/cats").get_response(app).status_int == 200


headers_strategy = st.dictionaries(
    st.sampled_from(["X-Auth-Token", "Cookie", "Authorization", "X-Foo", "Accept", "Host"]),
    st.text(st.characters(min_codepoint=0, max_codepoint=255)),
    max_size=4,
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=headers_strategy)
def test_random_headers_never_produce_a_500(headers: dict[str, str]) -> None:
    response = webob.Request.blank("/", headers=headers).get_response(CatchErrors(ok_app))
    assert (response.status_int, response.body) == (200, b"ok")


@settings(max_examples=100)
@given(headers=headers_strategy)
def test_random_headers_with_a_failing_app_give_a_fault_not_an_exception(
    headers: dict[str, str],
) -> None:
    response = webob.Request.blank("/", headers=headers).get_response(
        CatchErrors(raising(RuntimeError("x")))
    )
    assert response.status_int == 500
    assert response.json["computeFault"]["code"] == 500


@pytest.fixture
def failing_ini(tmp_path: Path) -> Path:
    ini = tmp_path / "failing.ini"
    ini.write_text(
        "[composite:main]\nuse = egg:Paste#urlmap\n"
        "/raise = raise\n/mid = mid\n/chunked = chunked\n"
        "\n[pipeline:raise]\npipeline = catch_errors request_id raises\n"
        "\n[pipeline:mid]\npipeline = catch_errors request_id mid_body\n"
        "\n[pipeline:chunked]\npipeline = catch_errors request_id mid_body_chunked\n"
        "\n[filter:catch_errors]\nuse = egg:middleware_kit#catch_errors\n"
        "\n[filter:request_id]\nuse = egg:middleware_kit#request_id\n"
        "\n[app:raises]\nuse = call:tests.support.apps:raises_factory\n"
        "\n[app:mid_body]\nuse = call:tests.support.apps:raises_mid_body_factory\n"
        "\n[app:mid_body_chunked]\nuse = call:tests.support.apps:raises_mid_body_factory\n"
        "content_length = false\n"
    )
    return ini


@pytest.mark.server
def test_served_exception_is_a_json_500_and_a_masked_log_line(failing_ini: Path) -> None:
    with served(failing_ini) as server:
        status, headers, body = server.request("/raise", headers={"X-Auth-Token": "t0k-secret"})
        server.stop()
        log = server.output()
    assert status == 500
    assert headers["content-type"] == "application/json; charset=UTF-8"
    assert json.loads(body)["computeFault"]["request_id"] == headers["x-openstack-request-id"]
    assert SECRET.encode() not in body
    request_id = headers["x-openstack-request-id"]
    assert f"ERROR middleware_kit.catch_errors [{request_id}] GET '/raise' failed" in log
    assert "'X-Auth-Token': '***'" in log and "t0k-secret" not in log
    assert log.count("middleware_kit.catch_errors") == 1


@pytest.mark.server
@pytest.mark.parametrize("path", ["/mid", "/chunked"], ids=["content-length", "chunked"])
def test_served_exception_mid_body_aborts_the_response(failing_ini: Path, path: str) -> None:
    with served(failing_ini) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            assert response.status == 200
            request_id = response.headers["x-openstack-request-id"]
            with pytest.raises(http.client.IncompleteRead) as error:
                response.read()
            assert 0 < len(error.value.partial) < 10 * 8192
        finally:
            connection.close()
        status, _, _ = server.request("/raise")  # the server still serves
        server.stop()
        log = server.output()
    assert status == 500
    assert re.search(
        rf"ERROR middleware_kit\.catch_errors \[{request_id}\] GET '{path}' failed "
        r"\(request req-[0-9a-f-]+\), aborted after the first body chunk",
        log,
    ), log
