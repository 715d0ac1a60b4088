"""Hostile input over the chain: in-process properties (hypothesis) and raw bytes served.

In-process, ``chains.CHAIN`` is built around a downstream app drawn among a recording
app, the demo and apps that fail (``tests/support/hostile_apps.py``), and called as a
WSGI server would. Requests carry random methods, paths, query strings, header names
and values (CR/LF, NUL, very long, latin-1 decoded non-UTF-8 bytes, duplicates),
Content-Length and Transfer-Encoding combinations, forged identity and forwarding
headers, tokens and credentials, from trusted, untrusted and denied peers.
Properties (``tests/support/properties.py``, shared with ``benchmarks/fuzz_chain.py``):
no exception escapes the outermost filter; the status and headers are valid HTTP;
every error is in the project's fault format; an app that never fails gets no 5xx; no
credential appears in a log record or the response; the app never reads more than the
body limit nor sees a client's identity headers; only the trusted proxy names
another client.

Served, raw requests (malformed request lines, bad framing, binary) are sent over a
socket: the server answers with a valid status line or closes, and keeps serving.
Known defects outside the chain are strict xfails: they turn red when fixed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import string
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import webob
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from middleware_kit import demo
from middleware_kit._wsgi import Environ, WSGIApp
from tests.support.chains import (
    BLACKLIST,
    CLIENT_HEADER_LINES,
    CLIENT_HEADERS,
    KEYSTONE_CHAIN,
    MAX_REQUEST_BODY_SIZE,
    TRUSTED_PROXY,
    chain_ini,
    keystone_options,
    names,
)
from tests.support.keystone import KeystoneServer
from tests.support.properties import (
    FILTER_ANSWERS,
    KNOWN_HEADERS,
    METHODS,
    SECRET_HEADERS,
    SECRET_PREFIX,
    Outcome,
    Recorder,
    assert_answer,
    assert_no_credential_leaks,
    call,
    call_downstream,
    downstream_chains,
    server_input,
)
from tests.support.servers import LOOPBACK, ServedApp, served

LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
AUTH_FILTERS = frozenset({"noauth", "authtoken"})
# What an auth filter sets for the app (and a client must not): the demo's list, and the
# service token's.
IDENTITY_HEADERS = (
    *demo.IDENTITY_HEADERS,
    "X-Service-Identity-Status",
    "X-Service-User-Id",
    "X-Service-Project-Id",
    "X-Service-Roles",
    "X-Service-Catalog",
)
FORGED = "forged-"


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def chains(recorder: Recorder) -> dict[str, WSGIApp]:
    return downstream_chains(recorder)


# --- requests ----------------------------------------------------------------------

header_value = st.one_of(
    st.text(LATIN1, max_size=40),
    st.sampled_from(["\r\n", "a\r\nX-Injected: 1", "\x00", "req-" + "0" * 36, "127.0.0.1, ::1"]),
    st.builds(lambda char, n: char * n, LATIN1, st.integers(1_000, 20_000)),
    st.binary(max_size=40).map(lambda raw: raw.decode("latin-1")),  # non-UTF-8 bytes
)
header_name = st.one_of(st.sampled_from(KNOWN_HEADERS), st.text(LATIN1, min_size=1, max_size=20))
secret = st.text(string.ascii_letters + string.digits, min_size=8, max_size=24).map(
    lambda tail: SECRET_PREFIX + tail
)
REMOTE_ADDRS = ("127.0.0.1", TRUSTED_PROXY, "::1", "::ffff:192.0.2.9", "192.0.2.9", "", "x")
forwarded_value = st.one_of(
    st.sampled_from(
        [
            "192.0.2.7",
            "203.0.113.5, " + TRUSTED_PROXY,
            "for=192.0.2.7",
            'for="[2001:db8::1]:80", for=' + TRUSTED_PROXY,
            "unknown",
            "_hidden",
            "",
            ",,",
        ]
    ),
    st.text(LATIN1, max_size=40),
)
noauth_token = st.builds(
    lambda user, project: f"{user}:{project}",
    st.text(LATIN1, max_size=12),
    st.text(LATIN1, max_size=12),
)
content_length = st.one_of(
    st.none(),
    st.integers(-5, 10**12).map(str),
    st.sampled_from(["", " 5", "5, 5", "0x10", "1e3", "+3", "٣", "99999999999999999999999"]),
)
transfer_encoding = st.one_of(
    st.none(), st.sampled_from(["chunked", "gzip, chunked", "identity", "chunked, chunked", "x"])
)
path = st.one_of(
    st.sampled_from(["/", "/cats", "/cats/1", "/whoami", "/boom", "/dogs", "/dogs/../cats"]),
    st.text(LATIN1, max_size=300),
    st.builds(lambda n: "/" + "a" * n, st.integers(1_000, 20_000)),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[Environ, list[str]]:
    """A WSGI environ and the credentials it carries."""
    environ: Environ = {
        "REQUEST_METHOD": draw(st.one_of(st.sampled_from(METHODS), st.text(LATIN1, max_size=12))),
        "SCRIPT_NAME": "",
        "PATH_INFO": draw(path),
        "QUERY_STRING": draw(st.text(LATIN1, max_size=60)),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"])),
        "REMOTE_ADDR": draw(st.sampled_from(REMOTE_ADDRS)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    headers: dict[str, list[str]] = {}
    for name, value in draw(st.lists(st.tuples(header_name, header_value), max_size=8)):
        headers.setdefault(name, []).append(value)  # duplicates, joined as servers do
    for name in draw(st.lists(st.sampled_from(["X-Forwarded-For", "Forwarded"]), max_size=2)):
        headers.setdefault(name, []).append(draw(forwarded_value))
    for name in draw(st.lists(st.sampled_from(IDENTITY_HEADERS), max_size=4)):
        headers.setdefault(name, []).append(FORGED + draw(st.text(LATIN1, max_size=10)))
    # A noauth token is the caller's <user>:<project>, a name (SECRET_HEADERS); else a secret.
    token = draw(st.one_of(st.none(), noauth_token if "noauth" in names() else secret))
    if token is not None:
        headers.setdefault("X-Auth-Token", []).append(token)
    credentials = draw(st.lists(st.tuples(st.sampled_from(SECRET_HEADERS), secret)))
    if token is not None and "X-Auth-Token" in SECRET_HEADERS and token.startswith(SECRET_PREFIX):
        credentials.append(("X-Auth-Token", token))
    for name, value in credentials:
        shown = f"Bearer {value}" if name == "Authorization" else value
        headers.setdefault(name, []).append(f"session={value}" if name == "Cookie" else shown)
    for name, values in headers.items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = ",".join(values)
        else:
            environ["HTTP_" + key] = ",".join(values)
    body_secret = draw(secret)
    body = draw(
        st.one_of(
            st.binary(max_size=2_000),
            st.integers(0, 4 * MAX_REQUEST_BODY_SIZE).map(lambda n: b"b" * n),
            st.just(json.dumps({"auth": {"password": body_secret}}).encode()),
        )
    )
    framing = draw(st.sampled_from(["none", "exact", "chunked", "any"]))
    length = {"none": None, "exact": str(len(body)), "chunked": None}.get(framing)
    encoding = "chunked" if framing == "chunked" else None
    if framing == "any":  # every combination, malformed ones included
        length, encoding = draw(content_length), draw(transfer_encoding)
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    if encoding is not None:
        environ["HTTP_TRANSFER_ENCODING"] = encoding
    environ["wsgi.input"] = server_input(environ, body)
    return environ, [value for _, value in credentials] + [body_secret]


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as formatted (tracebacks included) and its raw attributes."""
    return caplog.text + "".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


# --- in-process properties ---------------------------------------------------------


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    request=requests(),
    downstream=st.sampled_from(
        ["recorder", "demo", "raises", "raises_first_chunk", "non_iterable", "raises_mid_body"]
    ),
)
def test_any_request_gets_a_valid_answer_and_leaks_no_credential(
    chains: dict[str, WSGIApp],
    caplog: pytest.LogCaptureFixture,
    request: tuple[Environ, list[str]],
    downstream: str,
) -> None:
    environ, credentials = request
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    sent = dict(environ)
    outcome = call_downstream(chains, downstream, environ)  # raises if anything escapes
    if outcome is None:  # aborted after the first chunk, as designed: logged, masked
        assert "aborted after the first body chunk" in caplog.text
        outcome = Outcome("", [], b"")
    else:
        assert_answer(downstream, outcome, sent)
    assert_no_credential_leaks(credentials, outcome, logged(caplog))


@settings(max_examples=200, deadline=None)
@given(request=requests())
def test_the_app_sees_what_the_chain_lets_through(
    chains: dict[str, WSGIApp], recorder: Recorder, request: tuple[Environ, list[str]]
) -> None:
    environ, _ = request
    sent = dict(environ)
    recorder.environ, recorder.body_bytes = None, 0
    outcome = call(chains["recorder"], environ)
    if "sizelimit" in names():  # never more than the limit, even when rejected midway
        assert recorder.body_bytes <= MAX_REQUEST_BODY_SIZE
    if not outcome.status.startswith("200 "):  # a filter's answer: a 4xx, noauth's 204
        code = outcome.status[:3]
        assert code[0] == "4" or (code, "noauth") in FILTER_ANSWERS, outcome.status
        return
    seen = recorder.environ
    assert seen is not None
    # request_id: a fresh local id always; an inbound global id only when well formed.
    assert re.fullmatch(r"req-[0-9a-f-]{36}", seen["openstack.request_id"])
    inbound = sent.get("HTTP_X_OPENSTACK_REQUEST_ID")
    if "openstack.global_request_id" in seen:
        assert seen["openstack.global_request_id"] == inbound
    assert recorder.body_bytes <= len(sent["wsgi.input"].getvalue())
    if "ip_blacklist" in names():  # never a denied client; a forwarded one only via a proxy
        client = ipaddress.ip_address(seen[demo.CLIENT_ADDR_KEY])
        assert client not in ipaddress.ip_network(BLACKLIST)
        if sent["REMOTE_ADDR"] != TRUSTED_PROXY:
            assert client == ipaddress.ip_address(sent["REMOTE_ADDR"])
    if AUTH_FILTERS & set(names()):  # identity comes from the auth filter, never the client
        for name in IDENTITY_HEADERS:
            assert FORGED not in seen.get("HTTP_" + name.upper().replace("-", "_"), "")


@pytest.mark.skipif("ip_blacklist" not in names(), reason="ip_blacklist is not in CHAIN")
@settings(max_examples=150, deadline=None)
@given(
    remote=st.sampled_from(REMOTE_ADDRS),
    forwarded=st.lists(
        st.tuples(st.sampled_from(["X-Forwarded-For", "Forwarded"]), forwarded_value),
        max_size=3,
    ),
)
def test_only_a_trusted_proxy_names_another_client(
    chains: dict[str, WSGIApp],
    recorder: Recorder,
    remote: str,
    forwarded: list[tuple[str, str]],
) -> None:
    headers: dict[str, str] = dict(CLIENT_HEADERS)
    for name, value in forwarded:
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    environ = webob.Request.blank("/", headers=headers, environ={"REMOTE_ADDR": remote}).environ
    recorder.environ = None
    outcome = call(chains["recorder"], environ)
    try:
        peer = ipaddress.ip_address(remote)
    except ValueError:
        peer = None
    mapped = getattr(peer, "ipv4_mapped", None)
    if peer is None or any(a in ipaddress.ip_network(BLACKLIST) for a in (peer, mapped) if a):
        assert outcome.status.startswith("403 ")  # whatever it forwards
        return
    if remote != TRUSTED_PROXY:  # forwarding headers from anyone else are ignored
        assert outcome.status.startswith("200 ")
        assert recorder.environ is not None
        assert ipaddress.ip_address(recorder.environ[demo.CLIENT_ADDR_KEY]) == peer
    elif outcome.status.startswith("200 "):
        assert recorder.environ is not None
        client = ipaddress.ip_address(recorder.environ[demo.CLIENT_ADDR_KEY])
        assert client not in ipaddress.ip_network(BLACKLIST)


def test_fuzz_target_holds_for_a_bounded_random_loop() -> None:
    """benchmarks/fuzz_chain.py (make fuzz) decodes and checks; a smoke run keeps it honest."""
    from benchmarks.fuzz_chain import Target, run_random

    target = Target()
    try:
        assert run_random(target, seconds=60.0, runs=500, seed=9) == 500
    finally:
        target.close()


# --- served: raw bytes on a socket -------------------------------------------------

SOCKET_TIMEOUT_S = 2.0
CLIENT_TIMEOUT_S = 15.0
SERVED_SECRET = SECRET_PREFIX + "served-token-0123456789"
STATUS_LINE = re.compile(rb"HTTP/1\.[01] [1-5][0-9]{2} [^\r\n]*\r\n")

# A body shorter than its Content-Length, then the client closes: webob raises
# DisconnectionError in the demo and faultwrap answers 400.
DISCONNECTED = frozenset({"cl-short-body"})

RAW_REQUESTS = [
    pytest.param(b"GARBAGE\r\n\r\n", id="one-word-line"),
    pytest.param(b"GET\r\n\r\n", id="method-only"),
    pytest.param(b"GET /\r\n\r\n", id="http-0.9"),
    pytest.param(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", id="http-9.9"),
    pytest.param(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", id="four-words"),
    pytest.param(b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", id="nul-in-method"),
    pytest.param(b"GET /\x00cats HTTP/1.1\r\nHost: x\r\n\r\n", id="nul-in-path"),
    pytest.param(b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", id="non-utf8-path"),
    pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="long-line"),
    pytest.param(b"GET / HTTP/1.1\r\nX: " + b"v" * 9000 + b"\r\n\r\n", id="long-header"),
    pytest.param(b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n", id="many-headers"),
    pytest.param(b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", id="header-without-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n: empty-name\r\n\r\n", id="empty-header-name"),
    pytest.param(b"GET / HTTP/1.1\r\nX\x00Y: 1\r\n\r\n", id="nul-in-header-name"),
    pytest.param(b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", id="bare-cr-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n folded: x\r\n\r\n", id="leading-fold"),
    pytest.param(b"GET / HTTP/1.1\nHost: x\n\n", id="bare-lf"),
    pytest.param(b"POST /cats HTTP/1.1\r\nContent-Length: -1\r\n\r\n{}", id="cl-negative"),
    pytest.param(b"POST /cats HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}", id="cl-not-a-number"),
    pytest.param(
        b"POST /cats HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
        id="cl-twice-differing",
    ),
    pytest.param(
        b"POST /cats HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n{}", id="cl-huge"
    ),
    pytest.param(b"POST /cats HTTP/1.1\r\nContent-Length: 100\r\n\r\n{}", id="cl-short-body"),
    pytest.param(
        b"POST /cats HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        id="te-bad-chunk-size",
    ),
    pytest.param(
        b"POST /cats HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
        id="te-no-last-chunk",
    ),
    pytest.param(b"POST /cats HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n{}", id="te-not-chunked"),
    pytest.param(
        b"POST /cats HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /boom HTTP/1.1\r\nHost: x\r\n\r\n",
        id="cl-and-te",
    ),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32), id="tls-hello"),
    pytest.param(bytes(range(256)), id="every-byte"),
    pytest.param(b"\r\n\r\n\r\n", id="blank-lines"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    ini = tmp_path_factory.mktemp("hostile") / "chain.ini"
    ini.write_text(chain_ini())
    with served(ini, extra_args=["--socket-timeout", str(SOCKET_TIMEOUT_S)]) as app:
        yield app


def send_raw(port: int, data: bytes) -> bytes:
    """Send ``data``, close our side, read until the server closes (bounded)."""
    with socket.create_connection((LOOPBACK, port), timeout=CLIENT_TIMEOUT_S) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # it answered and closed before we were done: fine
            pass
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def with_client_headers(data: bytes) -> bytes:
    """``data`` with CLIENT_HEADERS after its first line, so that it may reach the app."""
    line, sep, rest = data.partition(b"\r\n")
    return line + sep + CLIENT_HEADER_LINES + rest if sep else data


def assert_answer_or_close(reply: bytes, *, head: bool = False) -> int | None:
    """The status of the first reply; None for a close.

    More replies may follow (bytes after a request are read as the next one).
    """
    assert b"Traceback" not in reply
    assert SERVED_SECRET.encode() not in reply
    if reply == b"":
        return None
    assert STATUS_LINE.match(reply), reply[:120]
    code = int(reply[9:12])
    if code == 505:  # the HTTP parser's answer to a version it does not speak: a fault too
        assert b'{"computeFault": {"code": 505, ' in reply, reply
        return code
    if code >= 500:  # only ever our own fault (without a body for HEAD), never the server's
        head, _, body = reply.partition(b"\r\n\r\n")
        assert b"\r\nContent-Type: application/json; charset=UTF-8\r\n" in head, head
        assert b"\r\nx-openstack-request-id: req-" in head.lower(), head
        if not head:  # after a HEAD's headers comes the next reply, if any
            assert body.startswith(b'{"computeFault": {"code": 500, '), body
    return code


def assert_still_serving(server: ServedApp) -> None:
    status, _, body = server.request("/", headers=CLIENT_HEADERS, timeout_s=CLIENT_TIMEOUT_S)
    assert status == 200 and b'"versions"' in body


@pytest.mark.server
@pytest.mark.parametrize("data", RAW_REQUESTS)
def test_raw_hostile_request_is_answered_or_closed(
    server: ServedApp, data: bytes, request: pytest.FixtureRequest
) -> None:
    code = assert_answer_or_close(send_raw(server.port, with_client_headers(data)))
    if request.node.callspec.id in DISCONNECTED:
        assert code == 400
    else:
        assert code is None or code < 500 or code == 505
    assert_still_serving(server)


@pytest.mark.server
@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"GARBAGE\r\n\r\n", 400, "Bad request syntax."),
        (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, "Bad request version."),
        (b"GET / HTTP/1.x\r\nHost: x\r\n\r\n", 400, "Bad request version."),
        (b"POST /\r\n\r\n", 400, "Bad HTTP/0.9 request type."),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "Invalid HTTP version."),
    ],
    ids=["one-word", "four-words", "bad-version", "post-0.9", "http-2"],
)
def test_request_line_the_parser_rejects_gets_a_json_fault(
    server: ServedApp, data: bytes, code: int, message: str
) -> None:
    """Not an HTML page without a status line (the stdlib's HTTP/0.9 answer)."""
    reply = send_raw(server.port, data)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {code} ".encode()), reply[:200]
    assert b"\r\nContent-Type: application/json; charset=UTF-8\r\n" in head + b"\r\n"
    assert b"\r\nConnection: close" in head
    assert b"\r\nServer: middleware-kit\r\n" in head  # no Python version
    [fault] = json.loads(body).values()
    assert fault == {"code": code, "message": message}
    assert data.split(b" ")[0].decode(errors="replace") not in body.decode()


raw_line = st.binary(max_size=120).filter(lambda b: b"\r\n" not in b)
raw_header = st.one_of(
    st.tuples(
        st.sampled_from(
            [
                b"Host",
                b"Content-Length",
                b"Transfer-Encoding",
                b"X-Forwarded-For",
                b"Expect",
                b"Connection",
            ]
        ),
        st.binary(max_size=30),
    ),
    st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=60)),
).map(lambda pair: pair[0] + b": " + pair[1])


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    method = draw(st.one_of(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD"]), raw_line))
    target = draw(st.one_of(st.sampled_from([b"/", b"/cats", b"/whoami", b"/boom"]), raw_line))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.x", b""]))
    headers = draw(st.lists(raw_header, max_size=6))
    headers.append(b"X-Subject-Token: " + SERVED_SECRET.encode())
    headers += CLIENT_HEADER_LINES.splitlines()
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    body = draw(st.binary(max_size=200))
    return b" ".join([method, target, version]) + eol + eol.join(headers) + eol + eol + body


@pytest.mark.server
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=raw_requests())
def test_random_raw_requests_are_answered_or_closed(server: ServedApp, data: bytes) -> None:
    assert_answer_or_close(send_raw(server.port, data), head=data.startswith(b"HEAD "))
    assert_still_serving(server)


@pytest.mark.server
def test_served_credentials_never_reach_the_log(server: ServedApp) -> None:
    """Runs after the raw tests of this module: they all sent SERVED_SECRET."""
    for path in ("/boom", "/cats", "/nowhere"):
        send_raw(
            server.port,
            f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Subject-Token: {SERVED_SECRET}\r\n"
            f"Authorization: Bearer {SERVED_SECRET}\r\n".encode()
            + CLIENT_HEADER_LINES
            + b"\r\n",
        )
    deadline = time.monotonic() + 5  # the server writes its log after it answers
    while "GET /boom" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.02)
    log = server.output()
    assert "GET /boom" in log
    assert SERVED_SECRET not in log


@pytest.mark.server
@pytest.mark.parametrize("target", [b"*", b"cats", b""], ids=["asterisk", "relative", "empty"])
def test_urlmap_in_front_of_the_chain_answers_an_odd_target_with_a_4xx(
    tmp_path: Path, target: bytes
) -> None:
    """Paste's urlmap, outside catch_errors, asserts on such a target (a bare 500); the
    server's guard answers it first (fixed in ``middleware_kit.server``)."""
    ini = tmp_path / "urlmap.ini"
    ini.write_text(chain_ini(mounts={"/v1": "egg:middleware_kit#demo"}))
    with served(ini) as app:
        request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + CLIENT_HEADER_LINES
        reply = send_raw(app.port, request + b"\r\n")
        assert_still_serving(app)
    assert reply.startswith(b"HTTP/1.1 4"), reply[:60]


@pytest.mark.server
@pytest.mark.skipif("noauth" not in names(), reason="noauth is not in CHAIN")
@pytest.mark.parametrize("query", [b"a\x00b", b"a\x7fb", b"a\x01b"], ids=["nul", "del", "soh"])
def test_noauth_management_url_never_carries_control_characters(
    server: ServedApp, query: bytes
) -> None:
    """Found by this module (the raw query string went into the header); fixed in noauth."""
    reply = send_raw(server.port, b"GET /?" + query + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    head = reply.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 204 ")
    assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", head.replace(b"\r\n", b"")), head


@pytest.mark.server
@pytest.mark.skipif("noauth" not in names(), reason="noauth is not in CHAIN")
@pytest.mark.parametrize("path", [b"/%ff", b"/\xff", b"/cats/%c3"], ids=["quoted", "raw", "cut"])
def test_noauth_answers_a_non_utf8_path_without_a_500(server: ServedApp, path: bytes) -> None:
    """Found by this module and the fuzz target (webob could not decode it); fixed."""
    reply = send_raw(server.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith((b"HTTP/1.1 204 ", b"HTTP/1.1 4")), reply[:60]


@pytest.mark.keystone
@pytest.mark.server
def test_a_bad_token_costs_keystone_one_validation(
    keystone: KeystoneServer, tmp_path: Path
) -> None:
    """Found by this module (each repeat cost a validation: under load, 503s instead of
    401s); fixed by authtoken's invalid-token cache."""
    ini = tmp_path / "keystone.ini"
    ini.write_text(
        chain_ini(chain=KEYSTONE_CHAIN, options=keystone_options(keystone.authtoken_settings()))
    )
    with served(ini) as app:
        before = keystone.token_validations()
        for _ in range(5):
            status, _, _ = app.request("/cats", headers={"X-Auth-Token": "not-a-token"})
            assert status == 401
        after = keystone.token_validations()
    assert after - before == 1
