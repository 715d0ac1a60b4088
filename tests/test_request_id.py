"""request_id: the id, the headers, the global id, the log filter, paste and eventlet."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webob
from hypothesis import given, settings
from hypothesis import strategies as st
from paste.deploy import loadapp

from middleware_kit._config import ConfigError
from middleware_kit._wsgi import Environ, StartResponse
from middleware_kit.request_id import (
    GLOBAL_REQUEST_ID_KEY,
    ID_BATCH,
    REQUEST_ID_KEY,
    RequestId,
    RequestIdLogFilter,
    filter_factory,
    new_request_id,
)
from tests.support.servers import served

ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
GOOD_GLOBAL = "req-0123abcd-4567-89ab-cdef-0123456789ab"
LOG = logging.getLogger("tests.request_id")


class Recorder:
    """A downstream app that records its environ and logs one line."""

    def __init__(self, headers: list[tuple[str, str]] | None = None) -> None:
        self.environ: Environ = {}
        self.headers = headers or []

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        self.environ = environ
        LOG.info("in app")
        start_response("200 OK", [("Content-Type", "text/plain"), *self.headers])
        return [b"ok"]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str, str]] = []
        self.addFilter(RequestIdLogFilter())

    def emit(self, record: logging.LogRecord) -> None:
        fields = record.__dict__
        self.lines.append((record.getMessage(), fields["request_id"], fields["global_request_id"]))


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        LOG.removeHandler(handler)


def test_fresh_request_id_in_environ_and_header() -> None:
    app = Recorder()
    filtered = RequestId(app)
    first = webob.Request.blank("/").get_response(filtered)
    request_id = app.environ[REQUEST_ID_KEY]
    second = webob.Request.blank("/").get_response(filtered)
    assert ID.fullmatch(request_id)
    assert first.headers["x-openstack-request-id"] == request_id
    assert second.headers["x-openstack-request-id"] == app.environ[REQUEST_ID_KEY] != request_id
    assert GLOBAL_REQUEST_ID_KEY not in app.environ


def test_new_request_id_is_a_version_4_uuid() -> None:
    ids = {new_request_id() for _ in range(3 * ID_BATCH + 1)}
    assert len(ids) == 3 * ID_BATCH + 1
    for request_id in ids:
        parsed = uuid.UUID(request_id.removeprefix("req-"))
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert request_id == f"req-{parsed}"


def test_forked_child_does_not_reuse_the_parents_batch_of_ids() -> None:
    new_request_id()  # the parent now holds a batch of ids made in advance
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, new_request_id().encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_id = pipe.read().decode()
    os.waitpid(pid, 0)
    parent_ids = {new_request_id() for _ in range(ID_BATCH)}
    assert ID.fullmatch(child_id)
    assert child_id not in parent_ids


def test_id_factory_seam() -> None:
    app = Recorder()
    response = webob.Request.blank("/").get_response(RequestId(app, id_factory=lambda: "req-x"))
    assert app.environ[REQUEST_ID_KEY] == response.headers["x-openstack-request-id"] == "req-x"


@pytest.mark.parametrize(
    ("app_headers", "expected"),
    [
        pytest.param([], "req-ours", id="ours-everywhere"),
        pytest.param([("X-OpenStack-Request-ID", "req-app")], "req-app", id="app-id-kept"),
        pytest.param(
            [("x-compute-request-id", "req-stale")], "req-ours", id="app-compat-replaced"
        ),
        pytest.param(
            [("x-compute-request-id", "req-stale"), ("x-openstack-request-id", "req-app")],
            "req-app",
            id="compat-follows-app-id",
        ),
    ],
)
def test_compat_headers_carry_the_response_id(
    app_headers: list[tuple[str, str]], expected: str
) -> None:
    filtered = RequestId(
        Recorder(app_headers),
        compat_headers=("X-Compute-Request-ID", "x-volume-request-id", "x-openstack-request-id"),
        id_factory=lambda: "req-ours",
    )
    response = webob.Request.blank("/").get_response(filtered)
    for name in ("x-openstack-request-id", "x-compute-request-id", "x-volume-request-id"):
        assert response.headers.getall(name) == [expected], name


def test_valid_inbound_global_id_is_stored_not_echoed() -> None:
    app = Recorder()
    request = webob.Request.blank("/", headers={"X-OpenStack-Request-ID": GOOD_GLOBAL})
    response = request.get_response(RequestId(app))
    assert app.environ[GLOBAL_REQUEST_ID_KEY] == GOOD_GLOBAL
    assert app.environ[REQUEST_ID_KEY] != GOOD_GLOBAL
    assert response.headers["x-openstack-request-id"] == app.environ[REQUEST_ID_KEY]


@pytest.mark.parametrize(
    "inbound",
    [
        pytest.param(GOOD_GLOBAL.upper().replace("REQ-", "req-"), id="uppercase"),
        pytest.param(GOOD_GLOBAL + "0", id="too-long"),
        pytest.param(GOOD_GLOBAL[:-1], id="too-short"),
        pytest.param(GOOD_GLOBAL + "\n", id="trailing-newline"),
        pytest.param(GOOD_GLOBAL + "\r\nX-Evil: 1", id="crlf"),
        pytest.param(f"{GOOD_GLOBAL},{GOOD_GLOBAL}", id="list"),
        pytest.param(" " + GOOD_GLOBAL, id="leading-space"),
        pytest.param(GOOD_GLOBAL.replace("req-", ""), id="no-prefix"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_inbound_global_id_is_ignored(inbound: str) -> None:
    app = Recorder()
    environ = {"HTTP_X_OPENSTACK_REQUEST_ID": inbound}
    response = webob.Request.blank("/", environ=environ).get_response(RequestId(app))
    assert GLOBAL_REQUEST_ID_KEY not in app.environ
    assert response.status_int == 200
    assert all(inbound not in value for value in response.headers.values()) or not inbound


def test_inbound_value_that_is_not_a_string_is_ignored() -> None:
    app = Recorder()
    environ = {"HTTP_X_OPENSTACK_REQUEST_ID": [GOOD_GLOBAL]}
    assert webob.Request.blank("/", environ=environ).get_response(RequestId(app)).status_int == 200
    assert GLOBAL_REQUEST_ID_KEY not in app.environ


def test_late_start_response_and_exc_info(records: Records) -> None:
    seen: list[Any] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        LOG.info("first chunk")
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            start_response("503 Service Unavailable", [], sys.exc_info())
        yield b"late"

    def server_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((status, headers, exc_info))
        return lambda data: None

    body = RequestId(app, id_factory=lambda: "req-late")({}, server_start)
    assert seen == []  # nothing started before the body is iterated
    assert list(body) == [b"late"]
    getattr(body, "close")()  # noqa: B009 - the WSGI server's call
    assert [s[0] for s in seen] == ["500 Internal Server Error", "503 Service Unavailable"]
    assert seen[0][2] is None
    assert isinstance(seen[1][2][1], ValueError)
    assert ("x-openstack-request-id", "req-late") in seen[1][1]
    assert records.lines == [("first chunk", "req-late", "-")]


def test_log_records_carry_the_ids_only_during_the_request(records: Records) -> None:
    LOG.info("before")
    request = webob.Request.blank("/", headers={"X-OpenStack-Request-ID": GOOD_GLOBAL})
    request.get_response(RequestId(Recorder(), id_factory=lambda: "req-1"))
    LOG.info("after")
    LOG.info("explicit", extra={"request_id": "req-given", "global_request_id": "g"})
    assert records.lines == [
        ("before", "-", "-"),
        ("in app", "req-1", GOOD_GLOBAL),
        ("after", "-", "-"),
        ("explicit", "req-given", "g"),
    ]


def test_generator_body_keeps_the_id_until_closed(records: Records) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            LOG.info("chunk")
            yield b"a"

        def close(self) -> None:
            closed.append(True)
            LOG.info("closing")

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [])
        return Body()

    body = RequestId(app, id_factory=lambda: "req-gen")({}, lambda *a: lambda d: None)
    assert list(body) == [b"a"]
    getattr(body, "close")()  # noqa: B009
    LOG.info("after close")
    assert closed == [True]
    assert records.lines == [
        ("chunk", "req-gen", "-"),
        ("closing", "req-gen", "-"),
        ("after close", "-", "-"),
    ]


def test_exception_from_app_propagates_and_resets_the_log_id(records: Records) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        LOG.info("raising")
        raise KeyError("x")

    with pytest.raises(KeyError):
        RequestId(app, id_factory=lambda: "req-e")({}, lambda *a: lambda d: None)
    LOG.info("after")
    assert records.lines == [("raising", "req-e", "-"), ("after", "-", "-")]


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        pytest.param({}, (), id="default"),
        pytest.param({"compat_headers": ""}, (), id="empty"),
        pytest.param(
            {"compat_headers": "x-compute-request-id, X-Volume-Request-Id\n x-a"},
            ("x-compute-request-id", "x-volume-request-id", "x-a"),
            id="commas-and-space",
        ),
    ],
)
def test_factory_options(conf: dict[str, str], expected: tuple[str, ...]) -> None:
    filtered = filter_factory({}, **conf)(Recorder())
    assert isinstance(filtered, RequestId)
    assert filtered.compat_headers == expected


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        pytest.param({"compat_headers": "x-a x:b"}, "compat_headers = 'x-a x:b'", id="bad-name"),
        pytest.param({"compat_header": "x-a"}, "did you mean 'compat_headers'", id="unknown"),
    ],
)
def test_factory_rejects(conf: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        filter_factory({}, **conf)
    assert "request_id" in str(error.value)


def test_factory_is_the_classmethod() -> None:
    assert filter_factory == RequestId.factory


def test_loads_through_paste_egg(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = request_id demo\n\n"
        "[filter:request_id]\nuse = egg:middleware_kit#request_id\n"
        "compat_headers = x-compute-request-id\n\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    app = loadapp(f"config:{ini}")
    request = webob.Request.blank("/whoami", headers={"X-OpenStack-Request-ID": GOOD_GLOBAL})
    response = request.get_response(app)
    shown = response.json
    assert ID.fullmatch(response.headers["x-openstack-request-id"])
    assert response.headers["x-compute-request-id"] == response.headers["x-openstack-request-id"]
    assert shown["request_id"] == response.headers["x-openstack-request-id"]
    assert shown["global_request_id"] == GOOD_GLOBAL


@settings(max_examples=200)
@given(value=st.text() | st.binary().map(lambda b: b.decode("latin-1")))
def test_random_inbound_header_never_breaks_the_request(value: str) -> None:
    app = Recorder()
    environ = {"HTTP_X_OPENSTACK_REQUEST_ID": value}
    response = webob.Request.blank("/", environ=environ).get_response(RequestId(app))
    assert response.status_int == 200
    assert ID.fullmatch(response.headers["x-openstack-request-id"])
    assert (GLOBAL_REQUEST_ID_KEY in app.environ) == bool(
        re.fullmatch(r"req-[a-f0-9]{8}(-[a-f0-9]{4}){3}-[a-f0-9]{12}", value)
    )


@pytest.mark.server
def test_log_ids_follow_each_green_thread_under_eventlet(tmp_path: Path) -> None:
    ini = tmp_path / "logging.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = request_id app\n\n"
        "[filter:request_id]\nuse = egg:middleware_kit#request_id\n\n"
        "[app:app]\nuse = call:tests.support.apps:logging_app_factory\npause_s = 0.1\n"
    )
    markers = [f"m{i}" for i in range(12)]
    with served(ini) as server:
        with concurrent.futures.ThreadPoolExecutor(len(markers)) as pool:
            answers = dict(
                zip(markers, pool.map(lambda m: server.request(f"/?{m}"), markers), strict=True)
            )
        server.stop()
        log = server.output()
    lines = re.findall(r"tests\.support\.apps \[(\S+)\] (begin|end|body) (m\d+)", log)
    assert len(lines) == 3 * len(markers), log
    for request_id, _, marker in lines:
        status, headers, body = answers[marker]
        assert (status, body) == (200, marker.encode())
        assert request_id == headers["x-openstack-request-id"], (marker, log)
    steps = [step for _, step, _ in lines]
    assert steps.index("end") > 1, "the requests did not overlap"
    assert re.search(r"INFO middleware_kit\.server \[-\] listening", log), log
