"""ratelimit: rules, options, responses, headers, keys, overrides, memory storage, paste."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import webob
from hypothesis import given, settings
from hypothesis import strategies as st
from paste.deploy import loadapp

from middleware_kit._config import ConfigError
from middleware_kit._wsgi import Environ, StartResponse
from middleware_kit.ratelimit import ENVIRON_KEY, RateLimit, filter_factory
from middleware_kit.ratelimit.memory import MemoryStorage
from middleware_kit.ratelimit.rules import DEFAULT_RULES, parse_rules
from middleware_kit.ratelimit.storage import check_url
from tests.support.servers import free_port

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.calls = 0
        self.environ: Environ = {}

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        self.calls += 1
        self.environ = environ
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def limiter(rules: str, clock: Clock | None = None, **options: object) -> RateLimit:
    return RateLimit(Recorder(), limits=parse_rules(rules), clock=clock or Clock(), **options)  # type: ignore[arg-type]


def call(app: object, path: str = "/v2/servers", method: str = "POST", **headers: str):  # type: ignore[no-untyped-def]
    request = webob.Request.blank(path, method=method, remote_addr="192.0.2.7")
    if method in ("POST", "PUT"):
        request.body, request.content_type = b"{}", "application/json"
    for name, value in headers.items():
        request.headers[name.replace("_", "-")] = value
    return request.get_response(app)


# --- rules ----------------------------------------------------------------------------


def test_nova_syntax_parses() -> None:
    rules = parse_rules(
        '(POST, "*", .*, 10, MINUTE);(PUT, "*", .*, 10, minute);'
        '(GET, "*changes-since*", .*changes-since.*, 3, Minute);(*, /x, ^/x{1,3}, 5, day)'
    )
    assert [(r.verb, r.uri, r.regex, r.value, r.unit) for r in rules] == [
        ("POST", "*", ".*", 10, "MINUTE"),
        ("PUT", "*", ".*", 10, "MINUTE"),
        ("GET", "*changes-since*", ".*changes-since.*", 3, "MINUTE"),
        ("*", "/x", "^/x{1,3}", 5, "DAY"),
    ]
    assert rules[3].window_ms == 86_400_000
    assert rules[0].details == "Only 10 POST request(s) can be made to * every minute."


def test_empty_limits_is_no_rules() -> None:
    assert parse_rules("") == ()
    assert parse_rules("  ") == ()


@pytest.mark.parametrize(
    ("raw", "quoted", "reason"),
    [
        pytest.param(
            "POST, *, .*, 10, MINUTE", "POST, *, .*, 10, MINUTE", "parentheses", id="bare"
        ),
        pytest.param("(POST, *, .*, 10)", "(POST, *, .*, 10)", "five parts", id="four-parts"),
        pytest.param(
            "(POST, *, .*, ten, MINUTE)", "(POST, *, .*, ten, MINUTE)", "'ten'", id="nan"
        ),
        pytest.param(
            "(POST, *, .*, 0, MINUTE)", "(POST, *, .*, 0, MINUTE)", "positive", id="zero"
        ),
        pytest.param("(POST, *, .*, 1, WEEK)", "(POST, *, .*, 1, WEEK)", "'WEEK'", id="unit"),
        pytest.param("(PO ST, *, .*, 1, DAY)", "(PO ST, *, .*, 1, DAY)", "verb", id="verb"),
        pytest.param("(POST, *, ([, 1, DAY)", "(POST, *, ([, 1, DAY)", "compile", id="regex"),
        pytest.param('(POST, "*, .*, 1, DAY)', '(POST, "*, .*, 1, DAY)', "quote", id="quote"),
        pytest.param(
            '(POST, "*", .*, 1, DAY);(GET, x, .*, -1, DAY)',
            "(GET, x, .*, -1, DAY)",
            "positive",
            id="second-group",
        ),
    ],
)
def test_malformed_rule_quotes_the_group(raw: str, quoted: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        filter_factory({}, limits=raw)
    message = str(info.value)
    assert "ratelimit" in message
    assert "option limits" in message
    assert f"bad rule {quoted!r}" in message
    assert reason in message
    assert '(VERB, "URI", REGEX, VALUE, UNIT)' in message


def test_bad_override_names_its_option() -> None:
    with pytest.raises(ConfigError, match=r"option limits\.alice = .*bad rule"):
        filter_factory({}, **{"limits.alice": "(POST, *, .*, 0, MINUTE)"})


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        pytest.param("key", "tenant", "expected one of: user, project, ip", id="key"),
        pytest.param("headers", "ietf", "expected one of: draft, legacy, none", id="headers"),
        pytest.param("storage_timeout", "0", "at least", id="timeout"),
        pytest.param("fail_open", "perhaps", "boolean", id="fail_open"),
        pytest.param("storage_url", "mongodb://x", "expected memory://", id="scheme"),
        pytest.param("storage_url", "redis://127.0.0.1:99999/0", "bad host:port", id="port"),
        pytest.param("storage_url", "redis://127.0.0.1:6379/zero", "database", id="db"),
        pytest.param("storage_url", "memcached://:11211", "bad host:port", id="no-host"),
        pytest.param("storage_url", "redis+sentinel://127.0.0.1:26379", "service", id="sentinel"),
    ],
)
def test_bad_option_values(option: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        filter_factory({}, **{option: value})
    assert f"ratelimit: option {option} = {value!r}" in str(info.value)
    assert expected in str(info.value)


def test_unknown_option_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean 'storage_url'"):
        filter_factory({}, storage_uri="memory://")


@pytest.mark.parametrize(
    "url",
    [
        "memory://",
        "memcached://127.0.0.1:11211,127.0.0.2:11212",
        "redis://127.0.0.1:6379/0",
        "rediss://127.0.0.1:6380/1",
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/2",
    ],
)
def test_good_storage_urls(url: str) -> None:
    assert check_url(f" {url} ") == url


@pytest.mark.parametrize("option", ["limits", "limits.alice"])
def test_a_rule_too_large_for_memcached_fails_the_load(option: str) -> None:
    url = f"memcached://127.0.0.1:{free_port()}"
    rules = '(GET, "*", .*, 100, MINUTE);(POST, "*", .*, 10001, HOUR)'
    with pytest.raises(ConfigError) as info:
        filter_factory({}, storage_url=url, **{option: rules})
    message = str(info.value)
    assert f"ratelimit: option {option!r}: 10001 per hour (POST .*)" in message
    assert "at most 10000" in message and "redis://" in message
    # Redis and memory keep such logs where they belong: the same rules load there.
    assert callable(filter_factory({}, storage_url="memory://", **{option: rules}))


def test_unreachable_storage_at_load_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there: refused at once
    for url in (f"redis://127.0.0.1:{port}/0", f"memcached://127.0.0.1:{port}"):
        with caplog.at_level(logging.WARNING, logger="middleware_kit.ratelimit"):
            factory = filter_factory({}, storage_url=url)
        assert callable(factory(Recorder()))
        assert f"storage {url} is not usable now" in caplog.text
        caplog.clear()


# --- behaviour ---------------------------------------------------------------------------


def test_defaults_limit_writes_only() -> None:
    clock = Clock()
    app = RateLimit(Recorder(), clock=clock)
    assert [(r.verb, r.value, r.unit) for r in DEFAULT_RULES] == [
        ("POST", 120, "MINUTE"),
        ("PUT", 120, "MINUTE"),
        ("DELETE", 120, "MINUTE"),
    ]
    for _ in range(120):
        assert call(app, method="DELETE").status_int == 200
    assert call(app, method="DELETE").status_int == 429
    assert call(app, method="POST").status_int == 200  # its own rule
    get = call(app, method="GET")
    assert get.status_int == 200
    assert "RateLimit" not in get.headers


def test_empty_limits_means_no_limits() -> None:
    app = filter_factory({}, limits="")(Recorder())
    for _ in range(200):
        response = call(app)
        assert response.status_int == 200
        assert "RateLimit-Policy" not in response.headers


def test_denied_body_and_retry_after() -> None:
    clock = Clock()
    app = limiter('(POST, "*", .*, 2, MINUTE)', clock)
    assert call(app).status_int == 200
    clock.now += 20.5
    assert call(app).status_int == 200
    clock.now += 1
    denied = call(app)
    assert denied.status_int == 429
    assert denied.content_type == "application/json"
    assert json.loads(denied.body) == {
        "overLimit": {
            "code": 429,
            "message": "This request was rate-limited.",
            "details": "Only 2 POST request(s) can be made to * every minute.",
            "retryAfter": "39",
        }
    }
    assert denied.headers["Retry-After"] == "39"  # 38.5 s rounded up
    assert denied.headers["RateLimit"] == '"post-minute";r=0;t=39'


def test_retry_after_is_at_least_one_second() -> None:
    clock = Clock()
    app = limiter('(POST, "*", .*, 1, SECOND)', clock)
    assert call(app).status_int == 200
    clock.now += 0.9995
    denied = call(app)
    assert denied.status_int == 429
    assert denied.headers["Retry-After"] == "1"
    clock.now += 0.0005
    assert call(app).status_int == 200


def test_sliding_window_not_fixed() -> None:
    """A fixed window would let 2N through across the minute boundary."""
    clock = Clock(T0 + 59)  # one second before a fixed window would reset
    app = limiter('(POST, "*", .*, 3, MINUTE)', clock)
    assert [call(app).status_int for _ in range(3)] == [200, 200, 200]
    clock.now += 2  # a fixed window would have reset here
    assert call(app).status_int == 429
    clock.now += 57.999
    assert call(app).status_int == 429
    clock.now += 0.001  # exactly one minute after the first three
    assert [call(app).status_int for _ in range(4)] == [200, 200, 200, 429]


def test_all_matched_rules_checked_together_and_a_denial_counts_nowhere() -> None:
    clock = Clock()
    app = limiter('(POST, "*", .*, 2, MINUTE);(POST, "/x", ^/x, 1, MINUTE)', clock)
    assert call(app, "/x").status_int == 200
    denied = call(app, "/x")
    assert denied.status_int == 429
    assert json.loads(denied.body)["overLimit"]["details"] == (
        "Only 1 POST request(s) can be made to /x every minute."
    )
    assert call(app, "/y").status_int == 200  # the denied /x did not count for rule one
    assert call(app, "/y").status_int == 429


def test_draft_headers_name_every_matched_rule() -> None:
    clock = Clock()
    app = limiter('(POST, "*", .*, 5, MINUTE);(*, "*", .*, 100, HOUR)', clock)
    first = call(app)
    assert first.headers["RateLimit-Policy"] == '"post-minute";q=5;w=60, "any-hour";q=100;w=3600'
    assert first.headers["RateLimit"] == '"post-minute";r=4;t=60, "any-hour";r=99;t=3600'
    clock.now += 10
    second = call(app)
    assert second.headers["RateLimit"] == '"post-minute";r=3;t=50, "any-hour";r=98;t=3590'
    get = call(app, method="GET")
    assert get.headers["RateLimit-Policy"] == '"any-hour";q=100;w=3600'


def test_legacy_headers_show_the_tightest_rule() -> None:
    clock = Clock()
    app = limiter('(POST, "*", .*, 5, MINUTE);(*, "*", .*, 100, HOUR)', clock, headers="legacy")
    response = call(app)
    assert response.headers["X-RateLimit-Limit"] == "5"
    assert response.headers["X-RateLimit-Remaining"] == "4"
    assert response.headers["X-RateLimit-Reset"] == str(int(T0) + 60)
    assert "RateLimit" not in response.headers


def test_no_headers() -> None:
    app = limiter('(POST, "*", .*, 1, MINUTE)', headers="none")
    assert not any("ratelimit" in name.lower() for name in call(app).headers)
    denied = call(app)
    assert denied.status_int == 429
    assert denied.headers["Retry-After"] == "60"


def test_environ_state_for_a_limits_view() -> None:
    recorder = Recorder()
    clock = Clock()
    rules = parse_rules('(GET, "*changes-since*", .*changes-since.*, 3, MINUTE)')
    app = RateLimit(recorder, limits=rules, clock=clock)
    call(app, "/v2/servers?changes-since=2020", method="GET")
    assert recorder.environ[ENVIRON_KEY] == [
        {
            "verb": "GET",
            "uri": "*changes-since*",
            "regex": ".*changes-since.*",
            "value": 3,
            "unit": "MINUTE",
            "remaining": 2,
            "reset": 60,
        }
    ]


@pytest.mark.parametrize(
    ("path", "matched"),
    [
        pytest.param("/servers", True, id="path"),
        pytest.param("/servers/1?x=1", True, id="query"),
        pytest.param("/v2/servers", False, id="anchored-like-nova"),
        pytest.param("/images?next=/servers", False, id="not-search"),
    ],
)
def test_regex_is_matched_against_the_path(path: str, matched: bool) -> None:
    app = limiter('(GET, "/servers", ^/servers, 1, MINUTE)')
    first = call(app, path, method="GET")
    assert ("RateLimit" in first.headers) is matched
    assert call(app, path, method="GET").status_int == (429 if matched else 200)


def test_query_string_is_part_of_the_path() -> None:
    app = limiter('(GET, "*changes-since*", .*changes-since.*, 1, MINUTE)')
    assert call(app, "/v2/servers", method="GET").status_int == 200
    assert call(app, "/v2/servers", method="GET").status_int == 200
    assert call(app, "/v2/servers?changes-since=1", method="GET").status_int == 200
    assert call(app, "/v2/servers?changes-since=1", method="GET").status_int == 429


def test_script_name_is_part_of_the_path() -> None:
    app = limiter('(POST, "/compute", ^/compute/, 1, MINUTE)')
    request = webob.Request.blank("/servers", method="POST", remote_addr="192.0.2.7")
    request.script_name = "/compute"
    assert request.get_response(app).headers["RateLimit"].startswith('"post-minute";r=0')


@pytest.mark.parametrize(
    ("key", "same", "different"),
    [
        pytest.param(
            "user",
            [{"X_User_Id": "alice", "X_Project_Id": "p1"}, {"X_User_Id": "alice"}],
            {"X_User_Id": "bob"},
            id="user",
        ),
        pytest.param(
            "project",
            [
                {"X_User_Id": "alice", "X_Project_Id": "p1"},
                {"X_User_Id": "bob", "X_Project_Id": "p1"},
            ],
            {"X_User_Id": "alice", "X_Project_Id": "p2"},
            id="project",
        ),
        pytest.param(
            "ip",
            [{"X_User_Id": "alice"}, {"X_User_Id": "bob"}],
            {"X_Forwarded_For": "ignored", "X_User_Id": "carol", "addr": "192.0.2.8"},
            id="ip",
        ),
    ],
)
def test_keys(key: str, same: list[dict[str, str]], different: dict[str, str]) -> None:
    app = limiter('(POST, "*", .*, 1, MINUTE)', key=key)
    assert call(app, **same[0]).status_int == 200
    assert call(app, **same[1]).status_int == 429
    headers = dict(different)
    addr = headers.pop("addr", None)
    request = webob.Request.blank("/", method="POST", remote_addr=addr or "192.0.2.7")
    for name, value in headers.items():
        request.headers[name.replace("_", "-")] = value
    assert request.get_response(app).status_int == 200


def test_user_key_falls_back_to_the_client_address() -> None:
    app = limiter('(POST, "*", .*, 1, MINUTE)')
    assert call(app).status_int == 200
    assert call(app).status_int == 429  # same address, no identity
    assert call(app, X_User_Id="192.0.2.7").status_int == 200  # a user is not an address


def test_ip_key_uses_the_address_ip_blacklist_resolved() -> None:
    app = limiter('(POST, "*", .*, 1, MINUTE)', key="ip")
    environ = {"middleware_kit.client_addr": "203.0.113.9"}
    first = webob.Request.blank("/", method="POST", remote_addr="10.0.0.1", environ=environ)
    assert first.get_response(app).status_int == 200
    second = webob.Request.blank("/", method="POST", remote_addr="10.0.0.2", environ=environ)
    assert second.get_response(app).status_int == 429
    other = webob.Request.blank("/", method="POST", remote_addr="10.0.0.1")
    assert other.get_response(app).status_int == 200


def test_overrides_replace_the_rules_of_one_user() -> None:
    app = filter_factory(
        {},
        limits='(POST, "*", .*, 1, MINUTE)',
        **{"limits.admin": "", "limits.bulk": '(POST, "*", .*, 3, MINUTE);(GET, "*", .*, 1, DAY)'},
    )(Recorder())
    assert [call(app, X_User_Id="admin").status_int for _ in range(5)] == [200] * 5
    assert [call(app, X_User_Id="bulk").status_int for _ in range(4)] == [200, 200, 200, 429]
    assert [call(app, X_User_Id="bulk", method="GET").status_int for _ in range(2)] == [200, 429]
    assert [call(app, X_User_Id="carol").status_int for _ in range(2)] == [200, 429]
    assert call(app, X_User_Id="carol", method="GET").status_int == 200


def test_override_without_user_id_fails() -> None:
    with pytest.raises(ConfigError, match="names no user id"):
        filter_factory({}, **{"limits.": ""})


def test_head_denial_has_no_body() -> None:
    app = limiter('(HEAD, "*", .*, 1, MINUTE)')
    assert call(app, method="HEAD").status_int == 200
    denied = call(app, method="HEAD")
    assert denied.status_int == 429
    assert denied.body == b""
    assert denied.headers["Retry-After"] == "60"


def test_unmatched_requests_pass_untouched() -> None:
    recorder = Recorder()
    app = RateLimit(recorder, limits=parse_rules('(POST, "*", ^/x, 1, MINUTE)'), clock=Clock())
    for _ in range(3):
        response = call(app, "/y")
        assert response.status_int == 200
        assert "RateLimit" not in response.headers
    assert ENVIRON_KEY not in recorder.environ
    assert recorder.calls == 3


def test_many_rules_beyond_the_planned_subsets() -> None:
    rules = ";".join(f'(POST, "/{i}", ^/{i}, {i + 1}, MINUTE)' for i in range(8))
    app = limiter(rules + ';(POST, "*", .*, 100, MINUTE)')
    assert call(app, "/0").status_int == 200
    assert call(app, "/0").status_int == 429
    response = call(app, "/1")
    assert response.headers["RateLimit"] == '"post-minute-2";r=1;t=60, "post-minute-9";r=98;t=60'


# --- exactness: the sliding log against an oracle -------------------------------------------


def oracle(times_ms: list[int], limit: int, window_ms: int) -> list[bool]:
    admitted: list[int] = []
    out = []
    for now in times_ms:
        ok = sum(1 for t in admitted if t > now - window_ms) < limit
        if ok:
            admitted.append(now)
        out.append(ok)
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5),
    st.lists(st.integers(0, 1500), min_size=1, max_size=60),
)
def test_memory_storage_admits_at_most_n_in_any_window(limit: int, gaps: list[int]) -> None:
    storage = MemoryStorage()
    now, times = 1_000_000, []
    for gap in gaps:
        now += gap
        times.append(now)
    decisions = [storage.hit(["k"], [limit], [1000], t)[0] for t in times]
    assert decisions == oracle(times, limit, 1000)
    admitted = [t for t, ok in zip(times, decisions, strict=True) if ok]
    for start in admitted:
        assert sum(1 for t in admitted if start <= t < start + 1000) <= limit


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 700), st.sampled_from(["a", "b", "ab"])), min_size=1, max_size=60
    )
)
def test_rules_together_all_or_none(requests: list[tuple[int, str]]) -> None:
    """Rule a (3 per 1 s) and rule b (2 per 2 s); each request matches a, b or both.
    A request is admitted only if every matched rule admits, and then counts in each."""
    storage = MemoryStorage()
    rules = {"a": (3, 1000), "b": (2, 2000)}
    admitted: dict[str, list[int]] = {"a": [], "b": []}
    now = 1_000_000
    for gap, matched in requests:
        now += gap
        expected = all(
            sum(1 for t in admitted[r] if t > now - rules[r][1]) < rules[r][0] for r in matched
        )
        got, states = storage.hit(
            [f"k{r}" for r in matched],
            [rules[r][0] for r in matched],
            [rules[r][1] for r in matched],
            now,
        )
        assert got == expected
        if got:
            for r in matched:
                admitted[r].append(now)
        for r, (count, _free_at) in zip(matched, states, strict=True):
            assert count == sum(1 for t in admitted[r] if t > now - rules[r][1])


# --- memory storage is bounded -------------------------------------------------------------


def test_a_million_keys_are_reclaimed_after_their_window() -> None:
    storage = MemoryStorage()
    now = 1_000_000_000
    for i in range(1_000_000):  # a million distinct keys, 1 ms apart: all in one hour
        storage.hit([f"k{i}"], [1], [3_600_000], now + i // 1000)
    assert len(storage) <= 1_000_000
    later = now + 3_600_000 + 1000
    admitted, _ = storage.hit(["fresh"], [1], [3_600_000], later)
    assert admitted
    assert len(storage) == 1


def test_dead_logs_are_swept_while_new_keys_arrive() -> None:
    storage = MemoryStorage()
    now = 1_000_000_000
    for i in range(50_000):  # each key's window (1 s) passes long before the end
        storage.hit([f"k{i}"], [1], [1000], now + i)
    assert len(storage) < 10_000


# --- paste -----------------------------------------------------------------------------------


def test_loads_from_an_ini(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = ratelimit demo\n\n"
        "[filter:ratelimit]\nuse = egg:middleware_kit#ratelimit\n"
        'limits = (POST, "*", .*, 1, MINUTE)\n'
        "limits.admin =\nkey = user\nheaders = draft\nstorage_url = memory://\n"
        "storage_timeout = 0.05\nfail_open = false\n\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    app = loadapp(f"config:{ini}")
    assert call(app, "/cats", X_User_Id="u").status_int == 201
    assert call(app, "/cats", X_User_Id="u").status_int == 429
    assert call(app, "/cats", X_User_Id="admin").status_int == 201
    whoami = call(app, "/whoami", method="GET", X_User_Id="u")
    assert json.loads(whoami.body)["ratelimit"] is None  # GET is not limited here


def test_demo_whoami_shows_the_state(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = ratelimit demo\n\n"
        "[filter:ratelimit]\nuse = egg:middleware_kit#ratelimit\n"
        'limits = (GET, "/whoami", ^/whoami, 5, MINUTE)\n\n'
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    app = loadapp(f"config:{ini}")
    call(app, "/whoami", method="GET", X_User_Id="u")
    shown = json.loads(call(app, "/whoami", method="GET", X_User_Id="u").body)["ratelimit"]
    assert shown == [
        {
            "verb": "GET",
            "uri": "/whoami",
            "regex": "^/whoami",
            "value": 5,
            "unit": "MINUTE",
            "remaining": 3,
            "reset": 60,
        }
    ]


def test_unreachable_storage_warning_masks_the_password(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.WARNING, logger="middleware_kit.ratelimit"):
        filter_factory({}, storage_url=url)(Recorder()).storage.close()  # type: ignore[attr-defined]
    assert "redis://:***@127.0.0.1:" in caplog.text
    assert "hunter2" not in caplog.text


def test_a_bad_storage_url_fails_the_load_without_its_password() -> None:
    with pytest.raises(ConfigError, match=r"storage_url = 'redis://:\*\*\*@h:1/x'") as caught:
        filter_factory({}, storage_url="redis://:hunter2@h:1/x")
    assert "hunter2" not in str(caught.value)


def test_policy_names_are_per_rule_set() -> None:
    app = filter_factory(
        {},
        limits='(POST, "*", .*, 10, MINUTE);(POST, "*", ^/x, 5, MINUTE)',
        **{"limits.bulk": '(POST, "*", .*, 1000, MINUTE)'},
    )(Recorder())
    assert call(app, "/x").headers["RateLimit-Policy"] == (
        '"post-minute";q=10;w=60, "post-minute-2";q=5;w=60'
    )
    bulk = call(app, "/x", X_User_Id="bulk")
    assert bulk.headers["RateLimit-Policy"] == '"post-minute";q=1000;w=60'
