"""ip_blacklist: options, lists, trusted proxies, spoofing, reloaded files, paste, served."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
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
from middleware_kit.ip_blacklist import CLIENT_ADDR_KEY, IpBlacklist, filter_factory
from middleware_kit.ip_blacklist._lists import CACHE_SIZE
from middleware_kit.ip_blacklist._networks import NetworkSet, parse_address, parse_network
from tests.support.servers import served

LOGGER = "middleware_kit.ip_blacklist"
BLACKLIST = "192.0.2.0/24, 198.51.100.7 2001:db8:dead::/48 2001:db8::7"


class Recorder:
    """A downstream app that records the environ it was called with."""

    def __init__(self) -> None:
        self.environ: Environ | None = None

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        self.environ = environ
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(app: Any, remote: str | None = "203.0.113.5", **headers: str) -> webob.Response:
    request = webob.Request.blank("/v1/cats", headers=headers)
    if remote is None:
        request.environ.pop("REMOTE_ADDR", None)
    else:
        request.environ["REMOTE_ADDR"] = remote
    return request.get_response(app)


def verdict(app: Any, recorder: Recorder, remote: str | None, **headers: str) -> object:
    """The client address the app saw, or the status of the answer."""
    recorder.environ = None
    response = call(app, remote, **headers)
    if response.status_int == 200:
        assert recorder.environ is not None
        return recorder.environ[CLIENT_ADDR_KEY]
    assert recorder.environ is None
    return response.status_int


def load(**options: str) -> tuple[Any, Recorder]:
    recorder = Recorder()
    return filter_factory({}, **options)(recorder), recorder


# --- options ---------------------------------------------------------------------------


def test_factory_is_the_classmethod() -> None:
    assert filter_factory == IpBlacklist.factory


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"blacklist": "10.0.0.1/8"}, "10.0.0.1/8 has host bits set", id="host-bits"),
        pytest.param({"whitelist": "10.0.0.0/8, nope"}, "'nope' does not appear", id="bad-entry"),
        pytest.param({"blacklist": "2001:db8::/129"}, "2001:db8::/129", id="bad-prefix"),
        pytest.param({"trusted_proxies": "fe80::1%eth0"}, "zone ids", id="zone-in-list"),
        pytest.param({"trusted_proxies": "10.0.0.256"}, "10.0.0.256", id="bad-proxy"),
        pytest.param({"reload_interval": "-1"}, "at least 0", id="negative-interval"),
        pytest.param({"reload_interval": "soon"}, "expected a number", id="interval-text"),
        pytest.param({"blacklst": "10.0.0.0/8"}, "did you mean 'blacklist'", id="unknown"),
    ],
)
def test_bad_option_fails_the_load_naming_option_and_value(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        filter_factory({}, **options)(Recorder())
    text = str(caught.value)
    assert text.startswith("ip_blacklist: ")
    assert message in text
    name, value = next(iter(options.items()))
    if name != "blacklst":
        assert f"option {name} = {value!r}" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            "10.0.0.0/8\n# fine\n\n10.1.0.1/16\n", "line 4: 10.1.0.1/16 has host", id="line"
        ),
        pytest.param("10.0.0.0/8 10.1.0.0/16\n", "line 1:", id="two-on-a-line"),
        pytest.param(b"\xff\xfe10.0.0.1\n", "not UTF-8", id="binary"),
    ],
)
def test_bad_list_file_fails_the_load_naming_file_and_line(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / "blocked.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ConfigError, match="option blacklist_file = ") as caught:
        filter_factory({"here": str(tmp_path)}, blacklist_file="blocked.txt")  # as inspect does
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_list_file_fails_the_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"whitelist_file = .*No such file"):
        filter_factory({"here": str(tmp_path)}, whitelist_file="office.txt")


def test_whitelist_file_without_entries_fails_the_load(tmp_path: Path) -> None:
    (tmp_path / "office.txt").write_text("# nobody yet\n")
    with pytest.raises(ConfigError, match="no entries"):
        filter_factory({"here": str(tmp_path)}, whitelist_file="office.txt")


def test_empty_options_are_not_set() -> None:
    app, recorder = load(blacklist="", whitelist="", blacklist_file="", trusted_proxies="")
    assert verdict(app, recorder, "198.51.100.1") == "198.51.100.1"


# --- the rules, IPv4 and IPv6 ----------------------------------------------------------

RULES = [
    # (options, remote address, expected: client address seen or status)
    pytest.param({"blacklist": BLACKLIST}, "192.0.2.99", 403, id="v4-net-denied"),
    pytest.param({"blacklist": BLACKLIST}, "198.51.100.7", 403, id="v4-address-denied"),
    pytest.param({"blacklist": BLACKLIST}, "198.51.100.8", "198.51.100.8", id="v4-neighbour"),
    pytest.param({"blacklist": BLACKLIST}, "2001:db8:dead:1::5", 403, id="v6-net-denied"),
    pytest.param({"blacklist": BLACKLIST}, "2001:DB8::7", 403, id="v6-address-upper"),
    pytest.param({"blacklist": BLACKLIST}, "2001:db8:beef::1", "2001:db8:beef::1", id="v6-ok"),
    pytest.param({"blacklist": BLACKLIST}, "::ffff:192.0.2.1", 403, id="mapped-v6-in-v4-net"),
    pytest.param(
        {"blacklist": BLACKLIST}, "::ffff:10.0.0.1", "10.0.0.1", id="mapped-passes-as-v4"
    ),
    pytest.param({"blacklist": "::ffff:10.0.0.0/104"}, "10.9.9.9", 403, id="mapped-net-v4-addr"),
    pytest.param({"blacklist": "2001:db8::/32"}, "[2001:db8::1]", 403, id="brackets"),
    pytest.param({"blacklist": "fe80::/64"}, "fe80::1%eth0", 403, id="zone-id"),
    pytest.param({"blacklist": "2001:db8::/32"}, "fe80::1%eth0", "fe80::1", id="zone-dropped"),
    pytest.param({"whitelist": "10.0.0.0/8"}, "10.0.5.1", "10.0.5.1", id="whitelisted"),
    pytest.param({"whitelist": "10.0.0.0/8"}, "11.0.0.1", 403, id="not-whitelisted"),
    pytest.param({"whitelist": "2001:db8::/32"}, "2001:db9::1", 403, id="v6-not-whitelisted"),
    pytest.param({"whitelist": "2001:db8::/32"}, "10.0.0.1", 403, id="other-family"),
    pytest.param(
        {"whitelist": "10.0.0.0/8", "blacklist": "10.0.5.0/24"}, "10.0.5.1", 403, id="except"
    ),
    pytest.param(
        {"whitelist": "10.0.0.0/8", "blacklist": "10.0.5.0/24"},
        "10.0.6.1",
        "10.0.6.1",
        id="inside",
    ),
    pytest.param(
        {"whitelist": "2001:db8::/32", "blacklist": "2001:db8:5::/48"},
        "2001:db8:5::1",
        403,
        id="v6-except",
    ),
    pytest.param({"blacklist": "0.0.0.0/0, ::/0"}, "127.0.0.1", 403, id="everyone-denied"),
    pytest.param({}, "2001:0db8:0000::0001", "2001:db8::1", id="canonical-text"),
    pytest.param({}, "not-an-ip", 403, id="remote-garbage"),
    pytest.param({}, "", 403, id="remote-empty"),
    pytest.param({}, "10.0.0.1%eth0", 403, id="zone-on-v4"),
    pytest.param({}, None, 403, id="remote-missing"),
]


@pytest.mark.parametrize(("options", "remote", "expected"), RULES)
def test_rules(options: dict[str, str], remote: str | None, expected: object) -> None:
    app, recorder = load(**options)
    assert verdict(app, recorder, remote) == expected
    assert verdict(app, recorder, remote) == expected  # the cached verdict agrees


def test_denied_is_a_fault_that_does_not_reveal_the_lists() -> None:
    app, _ = load(blacklist=BLACKLIST, whitelist="192.0.2.0/24")
    response = call(app, "192.0.2.9")
    assert response.status_int == 403
    assert response.content_type == "application/json"
    assert response.json == {"forbidden": {"code": 403, "message": "Access denied."}}
    assert "192.0.2" not in response.text


def test_head_is_denied_without_a_body() -> None:
    app, _ = load(blacklist="192.0.2.0/24")
    request = webob.Request.blank("/", method="HEAD", remote_addr="192.0.2.1")
    response = request.get_response(app)
    assert (response.status_int, response.body) == (403, b"")


def test_missing_remote_addr_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = load()
    with caplog.at_level(logging.WARNING, LOGGER):
        call(app, None)
        call(app, "bogus\n")
    assert [r.getMessage() for r in caplog.records] == [
        "denied: REMOTE_ADDR None is not an address",
        "denied: REMOTE_ADDR 'bogus\\n' is not an address",
    ]


def test_python_api_takes_networks_and_strings() -> None:
    recorder = Recorder()
    app = IpBlacklist(recorder, blacklist=[ipaddress.ip_network("192.0.2.0/24"), "2001:db8::1"])
    assert verdict(app, recorder, "192.0.2.1") == 403
    assert verdict(app, recorder, "2001:db8::1") == 403
    with pytest.raises(ValueError, match="host bits"):
        IpBlacklist(recorder, whitelist=["10.0.0.1/8"])


def test_cache_stays_bounded_and_right() -> None:
    app, recorder = load(blacklist="10.0.0.0/16")
    for value in range(CACHE_SIZE + 10):
        address = str(ipaddress.IPv4Address(0x0A000000 + value * 64))
        expected = 403 if value * 64 < 1 << 16 else address
        assert verdict(app, recorder, address) == expected
    assert 0 < len(app.lists.rules.cache) <= CACHE_SIZE


# --- trusted proxies and spoofing ------------------------------------------------------

PROXIES = "10.0.0.10, 10.0.0.11 2001:db8:1b::/64"
PROXY = "10.0.0.10"
TRUSTED = NetworkSet(parse_network(entry) for entry in PROXIES.replace(",", " ").split())
FORWARDING = [
    # (remote, headers, expected client address or status)
    pytest.param(PROXY, {}, "10.0.0.10", id="proxy-itself"),
    pytest.param(PROXY, {"X-Forwarded-For": "203.0.113.9"}, "203.0.113.9", id="xff"),
    pytest.param(
        PROXY, {"X-Forwarded-For": " 203.0.113.9 , 10.0.0.11"}, "203.0.113.9", id="chain"
    ),
    pytest.param(
        PROXY,
        {"X-Forwarded-For": "192.0.2.1, 203.0.113.9, 10.0.0.11"},
        "203.0.113.9",
        id="client-in-the-middle-spoof-on-the-left",
    ),
    pytest.param(
        PROXY, {"X-Forwarded-For": "203.0.113.9, 192.0.2.1"}, 403, id="blacklisted-rightmost"
    ),
    pytest.param(
        PROXY, {"X-Forwarded-For": "10.0.0.11, 10.0.0.10"}, "10.0.0.11", id="all-trusted"
    ),
    pytest.param(PROXY, {"X-Forwarded-For": "junk, 203.0.113.9"}, "203.0.113.9", id="junk-left"),
    pytest.param(PROXY, {"X-Forwarded-For": "203.0.113.9, junk"}, 400, id="junk-right"),
    pytest.param(PROXY, {"X-Forwarded-For": "203.0.113.9,,10.0.0.11"}, 400, id="empty-item"),
    pytest.param(PROXY, {"X-Forwarded-For": "203.0.113.9:5050"}, "203.0.113.9", id="v4-port"),
    pytest.param(PROXY, {"X-Forwarded-For": "203.0.113.9:x"}, 400, id="bad-port"),
    pytest.param(PROXY, {"X-Forwarded-For": "[2001:db8::9]:443"}, "2001:db8::9", id="v6-port"),
    pytest.param(PROXY, {"X-Forwarded-For": "2001:db8:dead::9"}, 403, id="v6-blacklisted"),
    pytest.param(PROXY, {"X-Forwarded-For": "::ffff:192.0.2.1"}, 403, id="mapped-blacklisted"),
    pytest.param(PROXY, {"X-Forwarded-For": "unknown"}, 403, id="unknown"),
    pytest.param(PROXY, {"X-Forwarded-For": "  "}, "10.0.0.10", id="blank-header"),
    pytest.param(PROXY, {"Forwarded": "for=203.0.113.9"}, "203.0.113.9", id="forwarded"),
    pytest.param(
        PROXY,
        {"Forwarded": 'for=192.0.2.1, For="[2001:db8::9]:80";proto=https;by=10.0.0.10'},
        "2001:db8::9",
        id="forwarded-v6-quoted",
    ),
    pytest.param(
        "2001:db8:1b::2",
        {"Forwarded": 'for=203.0.113.9;proto=http, for="[2001:db8:1b::1]"'},
        "203.0.113.9",
        id="forwarded-v6-proxies",
    ),
    pytest.param(PROXY, {"Forwarded": "for=_hidden"}, 403, id="obfuscated"),
    pytest.param(PROXY, {"Forwarded": "for=203.0.113.9;for=1.2.3.4"}, 400, id="two-for"),
    pytest.param(PROXY, {"Forwarded": "proto=https"}, 400, id="no-for"),
    pytest.param(PROXY, {"Forwarded": 'for="203.0.113.9'}, 400, id="unterminated"),
    pytest.param(PROXY, {"Forwarded": "for"}, 400, id="no-value"),
    pytest.param(PROXY, {"Forwarded": "for=2001:db8::9"}, "2001:db8::9", id="unquoted-v6"),
    pytest.param(
        PROXY,
        {"Forwarded": "for=203.0.113.9", "X-Forwarded-For": "203.0.113.9"},
        "203.0.113.9",
        id="both-agree",
    ),
    pytest.param(
        PROXY,
        {"Forwarded": "for=203.0.113.1", "X-Forwarded-For": "203.0.113.9"},
        400,
        id="both-disagree",
    ),
    # From an untrusted peer every forwarding header is ignored.
    pytest.param("203.0.113.9", {"X-Forwarded-For": "10.1.1.1"}, "203.0.113.9", id="untrusted"),
    pytest.param("192.0.2.1", {"X-Forwarded-For": "203.0.113.9"}, 403, id="untrusted-denied"),
    pytest.param("203.0.113.9", {"Forwarded": "for=junk"}, "203.0.113.9", id="untrusted-junk"),
    pytest.param(
        "10.0.0.12", {"X-Forwarded-For": "203.0.113.7"}, "10.0.0.12", id="proxy-neighbour"
    ),
]


@pytest.mark.parametrize(("remote", "headers", "expected"), FORWARDING)
def test_client_behind_trusted_proxies(
    remote: str, headers: dict[str, str], expected: object
) -> None:
    app, recorder = load(blacklist=BLACKLIST, trusted_proxies=PROXIES)
    assert verdict(app, recorder, remote, **headers) == expected
    assert verdict(app, recorder, remote, **headers) == expected  # the cached verdict agrees


def test_malformed_header_is_a_400_fault_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = load(trusted_proxies=PROXY)
    with caplog.at_level(logging.INFO, LOGGER):
        response = call(app, PROXY, **{"X-Forwarded-For": "203.0.113.9, <script>"})
    assert response.status_int == 400
    assert response.json["badRequest"]["message"] == "Malformed forwarding header."
    assert "trusted proxy 10.0.0.10: X-Forwarded-For: not an address: '<script>'" in caplog.text


def test_logged_header_values_are_cut_short(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = load(trusted_proxies=PROXY)
    with caplog.at_level(logging.INFO, LOGGER):
        assert call(app, PROXY, Forwarded="for=" + "x" * 5000).status_int == 400
    assert "not an address: '" + "x" * 64 + "'..." in caplog.text
    assert "x" * 65 not in caplog.text


def test_verdicts_behind_a_proxy_are_cached_per_header_value(
    blocked: ListFileEditor, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    recorder = Recorder()
    app = IpBlacklist(
        recorder,
        blacklist_file=blocked.path,
        trusted_proxies=[PROXY],
        reload_interval=0,
        clock=clock,
    )
    xff = {"X-Forwarded-For": "198.51.100.1"}
    with caplog.at_level(logging.INFO, LOGGER):
        for _ in range(3):
            assert verdict(app, recorder, PROXY, **xff) == "198.51.100.1"
            assert verdict(app, recorder, PROXY, **{"X-Forwarded-For": "x"}) == 400
            assert (
                verdict(app, recorder, PROXY, **{"X-Forwarded-For": "x", "Forwarded": "for=x"})
                == 400
            )
    assert len(caplog.records) == 2, "logged once per distinct header value"
    blocked.write("198.51.100.0/24\n")
    clock.now += 1
    assert verdict(app, recorder, PROXY, **xff) == 403, "a new list version drops the verdicts"


def test_a_whitelisted_proxy_does_not_let_its_clients_in() -> None:
    app, recorder = load(whitelist="10.0.0.0/8", trusted_proxies=PROXY)
    assert verdict(app, recorder, PROXY) == PROXY
    assert verdict(app, recorder, PROXY, **{"X-Forwarded-For": "203.0.113.9"}) == 403
    assert verdict(app, recorder, PROXY, **{"X-Forwarded-For": "10.7.0.1"}) == "10.7.0.1"


# --- list files, reloaded ----------------------------------------------------------------


class ListFileEditor:
    """Writes a list file so that every version has a new modification time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime_ns = 1_700_000_000 * 10**9

    def write(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.path.write_bytes(data)
        self.mtime_ns += 10**9
        os.utime(self.path, ns=(self.mtime_ns, self.mtime_ns))


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[ListFileEditor]:
    editor = ListFileEditor(tmp_path / "blocked.txt")
    editor.write("# blocked clients\n192.0.2.0/24\n")
    yield editor


def test_blacklist_file_is_reloaded_changed_broken_removed_restored(
    blocked: ListFileEditor, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    recorder = Recorder()
    app = IpBlacklist(
        recorder, blacklist_file=blocked.path, blacklist=["2001:db8::/32"], clock=clock
    )
    assert verdict(app, recorder, "192.0.2.1") == 403
    assert verdict(app, recorder, "198.51.100.1") == "198.51.100.1"

    blocked.write("198.51.100.0/24\n")  # changed
    clock.now += 4.9
    assert verdict(app, recorder, "192.0.2.1") == 403, "checked before reload_interval"
    clock.now += 0.1
    assert verdict(app, recorder, "192.0.2.1") == "192.0.2.1"
    assert verdict(app, recorder, "198.51.100.1") == 403
    assert verdict(app, recorder, "2001:db8::1") == 403, "the option's entries stay"

    with caplog.at_level(logging.ERROR, LOGGER):
        blocked.write("198.51.100.0/24\n# next\n203.0.113.1/8\n")  # broken
        clock.now += 5
        assert verdict(app, recorder, "198.51.100.1") == 403
        assert verdict(app, recorder, "203.0.113.1") == "203.0.113.1"
        clock.now += 5
        assert verdict(app, recorder, "198.51.100.1") == 403
    [record] = caplog.records
    assert f"{blocked.path}, line 3: 203.0.113.1/8 has host bits set" in record.getMessage()
    assert "the previous list (1 entries) stays in force" in record.getMessage()
    caplog.clear()

    with caplog.at_level(logging.ERROR, LOGGER):
        blocked.path.unlink()  # removed
        clock.now += 5
        assert verdict(app, recorder, "198.51.100.1") == 403
        clock.now += 5
        assert verdict(app, recorder, "198.51.100.1") == 403
    [record] = caplog.records  # logged once, not every interval
    assert f"cannot use {blocked.path}: No such file or directory" in record.getMessage()

    blocked.write("203.0.113.0/24\n")  # restored
    clock.now += 5
    assert verdict(app, recorder, "198.51.100.1") == "198.51.100.1"
    assert verdict(app, recorder, "203.0.113.1") == 403


def test_unreadable_file_keeps_the_previous_list(
    blocked: ListFileEditor, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    recorder = Recorder()
    app = IpBlacklist(recorder, blacklist_file=blocked.path, reload_interval=0, clock=clock)
    blocked.path.unlink()
    blocked.path.mkdir()  # exists, cannot be read as a file
    with caplog.at_level(logging.ERROR, LOGGER):
        assert verdict(app, recorder, "192.0.2.1") == 403
    assert f"cannot use {blocked.path}: Is a directory" in caplog.text


def test_whitelist_file_emptied_keeps_the_previous_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    office = ListFileEditor(tmp_path / "office.txt")
    office.write("10.1.0.0/16\n2001:db8:0ff1::/48\n")
    clock = Clock()
    recorder = Recorder()
    app = IpBlacklist(recorder, whitelist_file=office.path, reload_interval=1, clock=clock)
    assert verdict(app, recorder, "10.1.2.3") == "10.1.2.3"
    assert verdict(app, recorder, "10.2.2.3") == 403
    office.write("# emptied by mistake\n")
    clock.now += 1
    with caplog.at_level(logging.ERROR, LOGGER):
        assert verdict(app, recorder, "10.1.2.3") == "10.1.2.3"
        assert verdict(app, recorder, "2001:db8:ff1::1") == "2001:db8:ff1::1"
        assert verdict(app, recorder, "10.2.2.3") == 403
    assert "no entries (it would deny every client)" in caplog.text


def test_file_is_not_stat_more_often_than_the_interval(blocked: ListFileEditor) -> None:
    clock = Clock()
    recorder = Recorder()
    app = IpBlacklist(recorder, blacklist_file=blocked.path, reload_interval=60, clock=clock)
    blocked.path.unlink()
    for _ in range(5):
        clock.now += 10
        assert verdict(app, recorder, "192.0.2.1") == 403
    assert app.lists.black_file is not None
    assert app.lists.black_file.stamp is not None, "the file was checked before 60 s"


# --- paste ---------------------------------------------------------------------------------


def write_ini(tmp_path: Path, options: str) -> Path:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = ip_blacklist demo\n\n"
        f"[filter:ip_blacklist]\nuse = egg:middleware_kit#ip_blacklist\n{options}\n\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    return ini


def whoami(app: Any, remote: str, **headers: str) -> object:
    response = call_path(app, "/whoami", remote, **headers)
    return response.json["client_addr"] if response.status_int == 200 else response.status_int


def call_path(app: Any, path: str, remote: str, **headers: str) -> webob.Response:
    return webob.Request.blank(path, remote_addr=remote, headers=headers).get_response(app)


def test_loads_through_paste_with_a_file_next_to_the_ini(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "blocked.txt").write_text("192.0.2.0/24\n2001:db8:dead::/48\n")
    ini = write_ini(
        tmp_path,
        "whitelist = 192.0.2.0/23, 2001:db8::/32\n"
        "blacklist_file = lists/blocked.txt\n"
        "trusted_proxies = 127.0.0.1 ::1\n",
    )
    app = loadapp(f"config:{ini}")
    assert whoami(app, "192.0.3.4") == "192.0.3.4"
    assert whoami(app, "192.0.2.4") == 403
    assert whoami(app, "2001:db8:beef::4") == "2001:db8:beef::4"
    assert whoami(app, "2001:db8:dead::4") == 403
    assert whoami(app, "198.51.100.4") == 403
    assert whoami(app, "::1", **{"X-Forwarded-For": "192.0.3.9"}) == "192.0.3.9"
    assert whoami(app, "127.0.0.1", Forwarded='for="[2001:db8:dead::1]"') == 403
    assert whoami(app, "192.0.3.4", **{"X-Forwarded-For": "192.0.2.1"}) == "192.0.3.4"


@pytest.mark.parametrize(("options", "remote", "expected"), [p for p in RULES if p.values[1]])
def test_rules_through_paste(
    tmp_path: Path, options: dict[str, str], remote: str, expected: object
) -> None:
    ini = write_ini(tmp_path, "".join(f"{name} = {value}\n" for name, value in options.items()))
    assert whoami(loadapp(f"config:{ini}"), remote) == expected


def test_bad_ini_fails_loadapp(tmp_path: Path) -> None:
    ini = write_ini(tmp_path, "blacklist = 192.0.2.1/24\n")
    with pytest.raises(ConfigError, match=r"option blacklist = '192.0.2.1/24'.*host bits"):
        loadapp(f"config:{ini}")


@pytest.mark.server
def test_served_behind_a_trusted_proxy(tmp_path: Path) -> None:
    (tmp_path / "blocked.txt").write_text("192.0.2.0/24\n")
    ini = write_ini(tmp_path, "blacklist_file = blocked.txt\ntrusted_proxies = 127.0.0.1\n")
    with served(ini) as server:
        mine = server.request("/whoami")
        forwarded = server.request("/whoami", headers={"X-Forwarded-For": "203.0.113.9"})
        denied = server.request("/whoami", headers={"X-Forwarded-For": "192.0.2.9"})
        malformed = server.request("/whoami", headers={"Forwarded": "for=nobody"})
    assert (mine[0], json.loads(mine[2])["client_addr"]) == (200, "127.0.0.1")
    assert (forwarded[0], json.loads(forwarded[2])["client_addr"]) == (200, "203.0.113.9")
    assert (denied[0], json.loads(denied[2])["forbidden"]["code"]) == (403, 403)
    assert malformed[0] == 400


# --- properties ----------------------------------------------------------------------------


def networks(version: int) -> st.SearchStrategy[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    width = 32 if version == 4 else 128
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    return st.builds(
        lambda value, prefix: cls((value >> (width - prefix) << (width - prefix), prefix)),
        st.integers(0, 2**width - 1),
        st.integers(0, width) | st.integers(width - 8, width),
    )


ANY_NETWORK = networks(4) | networks(6)


def equivalents(text: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The reference: an address and its IPv4 / IPv4-mapped IPv6 twin."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv4Address):
        return {address, ipaddress.IPv6Address(0xFFFF << 32 | int(address))}
    mapped = address.ipv4_mapped
    return {address} if mapped is None else {address, mapped}


def reference_match(text: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    return any(address in net for address in equivalents(text) for net in nets)


def canonical(text: str) -> str:
    """What the filter puts in the environ: an IPv4-mapped address as IPv4."""
    address = ipaddress.ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


@st.composite
def address_near(draw: st.DrawFn, nets: list[Any]) -> str:
    """Any address, or one inside (or at the edge of) a drawn network, as text."""
    if nets and draw(st.booleans()):
        net = draw(st.sampled_from(nets))
        offset = draw(
            st.integers(0, net.num_addresses - 1) | st.sampled_from([-1, net.num_addresses])
        )
        width = 32 if net.version == 4 else 128
        value = (int(net.network_address) + offset) % 2**width
        address = ipaddress.ip_address(value) if net.version == 4 else ipaddress.IPv6Address(value)
    else:
        address = draw(st.ip_addresses())
    if isinstance(address, ipaddress.IPv4Address) and draw(st.booleans()):
        return f"::ffff:{address}"
    return str(address)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_decisions_match_a_reference_check(data: st.DataObject) -> None:
    blacklist = data.draw(st.lists(ANY_NETWORK, max_size=12), label="blacklist")
    whitelist = data.draw(st.lists(ANY_NETWORK, max_size=6), label="whitelist")
    recorder = Recorder()
    app = IpBlacklist(recorder, blacklist=blacklist, whitelist=whitelist)
    for _ in range(4):
        remote = data.draw(address_near(blacklist + whitelist), label="remote")
        allowed = (not whitelist or reference_match(remote, whitelist)) and not reference_match(
            remote, blacklist
        )
        seen = verdict(app, recorder, remote)
        assert (seen != 403) == allowed, (remote, seen)
        if allowed:
            assert seen == canonical(remote)


@settings(max_examples=200, deadline=None)
@given(
    nets=st.lists(ANY_NETWORK, min_size=1, max_size=30),
    probes=st.lists(st.ip_addresses(), max_size=10),
)
def test_network_set_membership_is_a_scan_with_ipaddress(
    nets: list[Any], probes: list[Any]
) -> None:
    members = NetworkSet(parse_network(net) for net in nets)
    for net in nets:
        assert parse_address(str(net.network_address)) in members
    for probe in probes:
        assert (parse_address(str(probe)) in members) == reference_match(str(probe), nets)


SPOOF = st.text(max_size=20).filter(lambda s: "," not in s) | st.ip_addresses().map(str)


@settings(max_examples=200, deadline=None)
@given(
    client=(st.ip_addresses(v=4) | st.ip_addresses(v=6)).filter(
        lambda a: parse_address(str(a)) not in TRUSTED
    ),
    spoof=st.lists(SPOOF, max_size=4),
    hops=st.lists(st.sampled_from(["10.0.0.10", "10.0.0.11", "2001:db8:1b::7"]), max_size=3),
    use_forwarded=st.booleans(),
)
def test_whatever_a_client_writes_the_proxies_name_it(
    client: Any, spoof: list[str], hops: list[str], use_forwarded: bool
) -> None:
    """What the client wrote left of its address never changes who the client is."""
    app, recorder = load(trusted_proxies=PROXIES)
    chain = [*spoof, str(client), *hops]
    if use_forwarded:
        elements = [f"for={hop}" for hop in spoof]
        elements += [
            f'for="[{hop}]"' if ":" in hop else f"for={hop}" for hop in chain[len(spoof) :]
        ]
        headers = {"Forwarded": ", ".join(elements)}
    else:
        headers = {"X-Forwarded-For": ", ".join(chain)}
    assert verdict(app, recorder, PROXY, **headers) == canonical(str(client))


ADDRESS_TEXT = st.text(
    alphabet="0123456789abcdefABCDEF:./%[]x ", max_size=45
) | st.ip_addresses().map(str)


def reference_address(text: str) -> tuple[int, int] | None:
    """What ipaddress makes of an address text, brackets and zone id dropped."""
    if text[:1] == "[" and text[-1:] == "]":
        text = text[1:-1]
    if ":" in text:
        text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return (4, int(mapped)) if mapped is not None else (address.version, int(address))


@settings(max_examples=500, deadline=None)
@given(text=ADDRESS_TEXT)
def test_address_parsing_agrees_with_ipaddress(text: str) -> None:
    assert parse_address(text) == reference_address(text)


@settings(max_examples=500, deadline=None)
@given(
    text=st.tuples(
        ADDRESS_TEXT, st.sampled_from(["", "/"]), st.text("0123456789x", max_size=4)
    ).map("".join)
    | ANY_NETWORK.map(str)
)
def test_entry_parsing_agrees_with_ipaddress(text: str) -> None:
    try:
        network = ipaddress.ip_network(text.strip())
    except ValueError:
        network = None
    if network is None or "%" in text:
        with pytest.raises(ValueError):
            parse_network(text)
        return
    assert parse_network(text) == parse_network(network)  # inet_pton's way, ipaddress's way
