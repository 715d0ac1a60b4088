"""authtoken: keystonemiddleware with our contract, first without Keystone, then with a
real one (marked ``keystone``) over HTTP, beside the noauth chain."""

from __future__ import annotations

import json
import logging
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webob
from hypothesis import given, settings
from hypothesis import strategies as st
from paste.deploy import loadapp

from middleware_kit._config import ConfigError
from middleware_kit._wsgi import WSGIApp
from middleware_kit.authtoken import AuthToken, filter_factory
from middleware_kit.authtoken._invalid_tokens import InvalidTokens
from middleware_kit.context import Context
from middleware_kit.noauth import FORGEABLE_HEADERS, FORGEABLE_KEYS
from tests.support.identity_echo import PROJECT_TOKEN_KEYS
from tests.support.identity_echo import app_factory as echo_factory
from tests.support.keystone import KeystoneServer, free_port
from tests.support.servers import ServedApp, served, start_memcached

VALIDATIONS = "GET /v3/auth/tokens"
# Nothing listens there: keystonemiddleware is never asked to reach it in these tests,
# or gets "connection refused" at once.
UNREACHABLE = f"http://127.0.0.1:{free_port()}/v3"
OFFLINE_OPTIONS = {
    "www_authenticate_uri": "http://keystone.example.org:5000/v3",
    "auth_url": UNREACHABLE,
    "auth_type": "password",
    "username": "nova",
    "password": "secret",
    "project_name": "service",
    "user_domain_name": "Default",
    "project_domain_name": "Default",
    "http_connect_timeout": "2",
    "http_request_max_retries": "0",
}
SPOOFED = {
    "X-User-Id": "spoofed-user",
    "X-Roles": "admin",
    "X-Identity-Status": "Confirmed",
    "OpenStack-System-Scope": "all",
    "X-Service-Roles": "service",
    "X-Tenant-Id": "spoofed-project",
    "X-Is-Admin-Project": "True",
}
# Context fields that say who the caller is (not the token, ids of the request, catalog).
IDENTITY_FIELDS = (
    "user",
    "user_name",
    "user_domain",
    "user_domain_name",
    "project_id",
    "project",
    "project_name",
    "project_domain",
    "project_domain_name",
    "domain",
    "roles",
    "is_admin",
    "is_admin_project",
    "system_scope",
    "user_identity",
    "read_only",
    "show_deleted",
    "remote_address",
)


@pytest.fixture(autouse=True)
def _quiet_keystonemiddleware(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL + 1, logger="keystonemiddleware")


def echo() -> WSGIApp:
    return echo_factory({})


def offline(**extra: str) -> WSGIApp:
    return filter_factory({}, **{**OFFLINE_OPTIONS, **extra})(echo())


class Clock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(app: WSGIApp, headers: dict[str, str] | None = None) -> webob.Response:
    request = webob.Request.blank("/v1/whoami", headers=headers or {})
    request.environ["openstack.request_id"] = "req-1"
    return request.get_response(app)


# --- without Keystone -------------------------------------------------------------------


def test_missing_token_is_a_401_fault_with_www_authenticate() -> None:
    response = get(offline())
    assert response.status_int == 401
    assert response.headers["WWW-Authenticate"] == (
        'Keystone uri="http://keystone.example.org:5000/v3"'
    )
    assert response.content_type == "application/json"
    assert response.json == {
        "unauthorized": {
            "code": 401,
            "message": "The request you have made requires authentication.",
            "request_id": "req-1",
        }
    }


def test_keystone_unreachable_is_a_503_fault() -> None:
    response = get(offline(), {"X-Auth-Token": "some-token"})
    assert response.status_int == 503
    assert response.json["serviceUnavailable"]["message"] == (
        "The Keystone service is temporarily unavailable."
    )
    assert "WWW-Authenticate" not in response.headers


def test_keystone_that_never_answers_is_a_503_fault() -> None:
    """keystonemiddleware lets a read timeout escape as ConnectTimeout; it is a 503 here."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are accepted by the kernel, never answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v3"
        app = offline(auth_url=url, http_connect_timeout="1")
        response = get(app, {"X-Auth-Token": "some-token"})
    assert response.status_int == 503
    assert response.json["serviceUnavailable"]["request_id"] == "req-1"


def test_delay_auth_decision_passes_as_invalid_without_forged_identity() -> None:
    response = get(offline(delay_auth_decision="true"), {**SPOOFED, "X-Auth-Token": "x"})
    assert response.status_int == 200
    headers = response.json["headers"]
    assert headers["HTTP_X_IDENTITY_STATUS"] == "Invalid"
    assert set(headers) == {"HTTP_HOST", "HTTP_X_AUTH_TOKEN", "HTTP_X_IDENTITY_STATUS"}


def test_delay_auth_decision_then_context_answers_401_with_www_authenticate() -> None:
    options = {**OFFLINE_OPTIONS, "delay_auth_decision": "true"}
    app = filter_factory({}, **options)(Context(echo()))
    response = get(app, SPOOFED)
    assert response.status_int == 401
    assert response.json["unauthorized"]["code"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Keystone uri=")


DELAYED = offline(delay_auth_decision="true")
FORGED_NAMES = st.sampled_from([*FORGEABLE_HEADERS, *(h.lower() for h in FORGEABLE_HEADERS)])
FORGED_VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16)


@settings(max_examples=100, deadline=None)
@given(forged=st.dictionaries(FORGED_NAMES, FORGED_VALUES, max_size=12))
def test_client_identity_headers_never_reach_the_app(forged: dict[str, str]) -> None:
    response = get(DELAYED, forged)
    assert response.status_int == 200
    assert response.json["headers"] == {
        "HTTP_HOST": "localhost:80",
        "HTTP_X_IDENTITY_STATUS": "Invalid",
    }
    assert response.json["catalog"] is False


@pytest.mark.parametrize(
    "option",
    [
        "www_authenticate_uri",
        "auth_url",
        "auth_type",
        "username",
        "password",
        "project_name",
        "user_domain_name",
        "project_domain_name",
        "memcached_servers",
        "memcache_servers",  # keystonemiddleware's deprecated name
        "delay_auth_decision",
        "service_token_roles",
        "service_token_roles_required",
        "include_service_catalog",
        "token_cache_time",
        "region_name",
        "interface",
        "cafile",
        "oslo_config_project",
        "application_credential_id",  # another keystoneauth plugin's option
    ],
)
def test_keystonemiddleware_options_are_accepted(option: str) -> None:
    values = {"delay_auth_decision": "false", "service_token_roles_required": "true"}
    factory = filter_factory({}, **{option: values.get(option, "x")})
    assert callable(factory)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        pytest.param("www_authenticate_url", "did you mean 'www_authenticate_uri'", id="typo"),
        pytest.param("delay_auth", "did you mean 'delay_auth_decision'", id="prefix"),
        pytest.param("colour", "unknown option 'colour'", id="unknown"),
    ],
)
def test_unknown_options_fail_the_load(option: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        filter_factory({}, **{option: "x"})
    assert str(error.value).startswith("authtoken: ")


def test_a_value_keystonemiddleware_rejects_fails_the_load() -> None:
    factory = filter_factory({}, **{**OFFLINE_OPTIONS, "http_connect_timeout": "soon"})
    with pytest.raises(ConfigError, match=r"authtoken: .*http_connect_timeout"):
        factory(echo())


def test_values_reach_keystonemiddleware_unchanged() -> None:
    uri = "http://keystone.example.org:5000/v3?a=b, c"
    response = get(offline(www_authenticate_uri=uri))
    assert response.headers["WWW-Authenticate"] == f'Keystone uri="{uri}"'


def test_global_conf_reaches_keystonemiddleware_as_with_its_factory() -> None:
    local = {k: v for k, v in OFFLINE_OPTIONS.items() if k != "www_authenticate_uri"}
    app = filter_factory({"www_authenticate_uri": "http://global.example/v3"}, **local)(echo())
    assert get(app).headers["WWW-Authenticate"] == 'Keystone uri="http://global.example/v3"'


def test_paste_loads_by_egg_name(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    options = "".join(f"{k} = {v}\n" for k, v in OFFLINE_OPTIONS.items())
    ini.write_text(
        "[pipeline:main]\npipeline = authtoken context echo\n"
        f"[filter:authtoken]\nuse = egg:middleware_kit#authtoken\n{options}"
        "[filter:context]\nuse = egg:middleware_kit#context\n"
        "[app:echo]\npaste.app_factory = tests.support.identity_echo:app_factory\n"
    )
    app = loadapp(f"config:{ini}")
    assert isinstance(app, AuthToken)
    assert get(app).status_int == 401


@pytest.mark.parametrize(
    ("options", "ttl_s", "size"),
    [
        pytest.param({}, 60.0, 10_000, id="defaults"),
        pytest.param({"invalid_token_cache_time": "0"}, 0.0, 10_000, id="off"),
        pytest.param({"invalid_token_cache_time": " 2.5 "}, 2.5, 10_000, id="decimal"),
        pytest.param({"invalid_token_cache_size": "3"}, 60.0, 3, id="size"),
    ],
)
def test_invalid_token_cache_options(options: dict[str, str], ttl_s: float, size: int) -> None:
    app = filter_factory({}, **OFFLINE_OPTIONS, **options)(echo())
    assert isinstance(app, AuthToken)
    assert (app.invalid_tokens.ttl_s, app.invalid_tokens.size) == (ttl_s, size)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        pytest.param("invalid_token_cache_time", "-1", "must be at least 0", id="negative"),
        pytest.param("invalid_token_cache_time", "soon", "expected a number", id="word"),
        pytest.param("invalid_token_cache_time", "inf", "finite", id="infinite"),
        pytest.param("invalid_token_cache_size", "0", "must be at least 1", id="empty"),
        pytest.param("invalid_token_cache_size", "1.5", "whole number", id="fraction"),
        pytest.param(
            "invalid_token_cache", "60", "did you mean 'invalid_token_cache_time'", id="typo"
        ),
    ],
)
def test_invalid_token_cache_bad_options_fail_the_load(
    option: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        filter_factory({}, **OFFLINE_OPTIONS, **{option: value})
    assert str(error.value).startswith("authtoken: ")


@pytest.mark.parametrize("delay", ["false", "true"])
def test_keystone_unreachable_is_never_remembered_as_an_invalid_token(delay: str) -> None:
    app = offline(delay_auth_decision=delay)
    assert isinstance(app, AuthToken)
    expected = 200 if delay == "true" else 503  # delayed: passed on as Invalid
    for _ in range(2):
        assert get(app, {"X-Auth-Token": "some-token"}).status_int == expected
    assert not app.invalid_tokens.expiries


def test_invalid_tokens_keeps_a_digest_until_the_ttl() -> None:
    clock = Clock()
    tokens = InvalidTokens(ttl_s=60, size=10, clock=clock)
    key = tokens.key("gAAAA-secret", False)
    assert key is not None
    assert b"secret" not in key[0] and len(key[0]) == 32  # sha256, not the token
    assert not tokens.rejected(key)
    tokens.add(key)
    clock.now += 59.9
    assert tokens.rejected(key)
    assert not tokens.rejected(tokens.key("gAAAA-secret", True))  # allow_expired differs
    clock.now += 0.1
    assert not tokens.rejected(key)
    assert not tokens.expiries  # an expired entry is dropped when it is looked up


def test_invalid_tokens_forgets_the_oldest_past_its_size() -> None:
    clock = Clock()
    tokens = InvalidTokens(ttl_s=60, size=2, clock=clock)
    first, second, third = (tokens.key(t, False) for t in ("a", "b", "c"))
    for key in (first, second, first, third):  # first is re-added: second is the oldest
        tokens.add(key)
        clock.now += 1
    assert len(tokens.expiries) == 2
    assert [tokens.rejected(k) for k in (first, second, third)] == [True, False, True]


def test_invalid_tokens_with_a_ttl_of_0_is_off() -> None:
    tokens = InvalidTokens(ttl_s=0, size=2, clock=Clock())
    key = tokens.key("a", False)
    tokens.add(key)
    assert key is None and not tokens.rejected(key) and not tokens.expiries


# --- with a real Keystone, over HTTP ----------------------------------------------------

SERVED_INI = """\
[DEFAULT]
auth_strategy = keystone

[composite:main]
use = egg:Paste#urlmap
/v1 = api
/raw = raw
/noauthraw = noauthraw
/delay = delay
/delayctx = delayctx

[composite:api]
use = egg:middleware_kit#pipeline
noauth = request_id noauth context demo
keystone = request_id authtoken context demo

[pipeline:raw]
pipeline = authtoken echo

[pipeline:noauthraw]
pipeline = noauth echo

[pipeline:delay]
pipeline = authtoken_delay echo

[pipeline:delayctx]
pipeline = authtoken_delay context echo

[filter:request_id]
use = egg:middleware_kit#request_id

[filter:noauth]
use = egg:middleware_kit#noauth

[filter:authtoken]
use = egg:middleware_kit#authtoken
{authtoken}

[filter:authtoken_delay]
use = egg:middleware_kit#authtoken
delay_auth_decision = true
{authtoken}

[filter:context]
use = egg:middleware_kit#context
context_key = nova.context

[app:demo]
use = egg:middleware_kit#demo

[app:echo]
paste.app_factory = tests.support.identity_echo:app_factory
"""


def write_ini(path: Path, server: KeystoneServer, **extra: str) -> Path:
    options = {
        **server.authtoken_settings(),
        "http_connect_timeout": "3",
        "http_request_max_retries": "0",
        **extra,
    }
    path.write_text(
        SERVED_INI.format(authtoken="\n".join(f"{k} = {v}" for k, v in options.items()))
    )
    return path


@pytest.fixture(scope="module")
def served_ini(keystone: KeystoneServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ini(tmp_path_factory.mktemp("authtoken") / "api.ini", keystone)


@pytest.fixture(scope="module")
def keystone_chain(served_ini: Path) -> Iterator[ServedApp]:
    with served(served_ini) as app:
        yield app


@pytest.fixture(scope="module")
def noauth_chain(served_ini: Path) -> Iterator[ServedApp]:
    with served(served_ini, settings={"auth_strategy": "noauth"}) as app:
        yield app


def member_token(server: KeystoneServer) -> str:
    """A fresh token: never validated by any filter yet."""
    token, _ = server.issue_token(
        server.member_username, server.member_password, server.project_name
    )
    return token


def fetch(
    app: ServedApp, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    status, reply_headers, body = app.request(path, headers=headers, timeout_s=30.0)
    return status, reply_headers, json.loads(body) if body else None


@pytest.mark.keystone
def test_valid_token_gives_the_contract_and_the_context(
    keystone: KeystoneServer,
    keystone_chain: ServedApp,
) -> None:
    token = member_token(keystone)
    status, _, whoami = fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": token})
    assert status == 200, whoami
    assert sorted(whoami["identity"].pop("X-Roles").split(",")) == ["member", "reader"]
    assert whoami["identity"] == {
        "X-Identity-Status": "Confirmed",
        "X-User-Id": keystone.member_user_id,
        "X-User-Name": keystone.member_username,
        "X-User-Domain-Id": "default",
        "X-User-Domain-Name": "Default",
        "X-Project-Id": keystone.project_id,
        "X-Project-Name": keystone.project_name,
        "X-Project-Domain-Id": "default",
        "X-Project-Domain-Name": "Default",
        "X-Is-Admin-Project": "False",
    }
    context = whoami["context"]
    assert context["user"] == keystone.member_user_id
    assert context["project_id"] == keystone.project_id
    assert sorted(context["roles"]) == ["member", "reader"]
    assert context["request_id"] == whoami["request_id"]
    assert context["remote_address"] == "127.0.0.1"
    assert context["service_catalog"][0]["type"] == "identity"

    status, _, raw = fetch(keystone_chain, "/raw/", {"X-Auth-Token": token})
    assert status == 200
    assert set(raw["headers"]) & (FORGEABLE_KEYS | PROJECT_TOKEN_KEYS) == PROJECT_TOKEN_KEYS
    assert None not in raw["headers"].values()
    assert raw["catalog"] is True


@pytest.mark.keystone
def test_spoofed_identity_never_reaches_the_app(
    keystone: KeystoneServer,
    keystone_chain: ServedApp,
) -> None:
    token = member_token(keystone)
    status, _, raw = fetch(keystone_chain, "/raw/", {**SPOOFED, "X-Auth-Token": token})
    assert status == 200
    headers = raw["headers"]
    assert headers["HTTP_X_USER_ID"] == keystone.member_user_id
    assert sorted(headers["HTTP_X_ROLES"].split(",")) == ["member", "reader"]
    assert headers["HTTP_X_TENANT_ID"] == keystone.project_id
    assert headers["HTTP_X_IS_ADMIN_PROJECT"] == "False"
    assert "HTTP_OPENSTACK_SYSTEM_SCOPE" not in headers
    assert "HTTP_X_SERVICE_ROLES" not in headers


@pytest.mark.keystone
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"X-Auth-Token": "not-a-token"}, id="invalid"),
        pytest.param({**SPOOFED, "X-Auth-Token": "not-a-token"}, id="invalid-and-spoofed"),
    ],
)
def test_missing_or_invalid_token_is_401_with_www_authenticate(
    keystone: KeystoneServer,
    keystone_chain: ServedApp,
    headers: dict[str, str],
) -> None:
    status, reply_headers, body = fetch(keystone_chain, "/v1/whoami", headers)
    assert status == 401
    assert reply_headers["www-authenticate"] == f'Keystone uri="{keystone.auth_url}"'
    assert body["unauthorized"]["code"] == 401
    assert body["unauthorized"]["request_id"] == reply_headers["x-openstack-request-id"]


@pytest.mark.keystone
def test_delay_auth_decision_passes_invalid_and_context_answers_401(
    keystone_chain: ServedApp,
) -> None:
    status, _, raw = fetch(keystone_chain, "/delay/", {**SPOOFED, "X-Auth-Token": "bad"})
    assert status == 200
    assert raw["headers"]["HTTP_X_IDENTITY_STATUS"] == "Invalid"
    assert not set(raw["headers"]) & {
        "HTTP_X_USER_ID",
        "HTTP_X_ROLES",
        "HTTP_OPENSTACK_SYSTEM_SCOPE",
    }

    status, headers, body = fetch(keystone_chain, "/delayctx/", {**SPOOFED, "X-Auth-Token": "bad"})
    assert status == 401
    assert body["unauthorized"]["code"] == 401
    assert headers["www-authenticate"].startswith("Keystone uri=")


@pytest.mark.keystone
def test_system_scope_comes_only_from_a_system_scoped_token(
    keystone: KeystoneServer,
    keystone_chain: ServedApp,
) -> None:
    token, _ = keystone.issue_token(
        keystone.admin_username, keystone.admin_password, system_scope=True
    )
    spoofed = {"OpenStack-System-Scope": "forged", "X-Project-Id": "forged"}
    status, _, raw = fetch(keystone_chain, "/raw/", {**spoofed, "X-Auth-Token": token})
    assert status == 200
    assert raw["headers"]["HTTP_OPENSTACK_SYSTEM_SCOPE"] == "all"
    assert "HTTP_X_PROJECT_ID" not in raw["headers"]  # None in keystonemiddleware's environ
    assert None not in raw["headers"].values()
    status, _, whoami = fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": token})
    assert status == 200
    assert whoami["context"]["system_scope"] == "all"
    assert whoami["context"]["project_id"] is None


@pytest.mark.keystone
def test_cached_validation_does_not_call_keystone(
    keystone: KeystoneServer,
    keystone_chain: ServedApp,
) -> None:
    token, fence = member_token(keystone), member_token(keystone)
    before = keystone.access_log_count(VALIDATIONS)
    assert fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": token})[0] == 200
    after_first = keystone.access_log_count(VALIDATIONS, at_least=before + 1)
    assert after_first == before + 1
    for _ in range(3):
        assert fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": token})[0] == 200
    # A new token is validated: its line comes after any the cached ones would have made.
    assert fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": fence})[0] == 200
    assert keystone.access_log_count(VALIDATIONS, at_least=after_first + 1) == after_first + 1


@pytest.mark.keystone
@pytest.mark.memcached
def test_second_process_reuses_the_validation_cached_in_memcached(
    keystone: KeystoneServer,
    tmp_path: Path,
) -> None:
    cache, url = start_memcached()
    try:
        servers = url.removeprefix("memcached://")
        ini = write_ini(tmp_path / "api.ini", keystone, memcached_servers=servers)
        token, fence = member_token(keystone), member_token(keystone)
        before = keystone.access_log_count(VALIDATIONS)
        with served(ini) as first:
            assert fetch(first, "/v1/whoami", {"X-Auth-Token": token})[0] == 200
        after_first = keystone.access_log_count(VALIDATIONS, at_least=before + 1)
        assert after_first == before + 1
        with served(ini) as second:
            status, _, whoami = fetch(second, "/v1/whoami", {"X-Auth-Token": token})
            assert status == 200
            assert whoami["context"]["user"] == keystone.member_user_id
            assert fetch(second, "/v1/whoami", {"X-Auth-Token": fence})[0] == 200
        assert keystone.access_log_count(VALIDATIONS, at_least=after_first + 1) == after_first + 1
    finally:
        cache.stop()


@pytest.mark.keystone
def test_keystone_stopped_is_a_503_within_the_timeout(
    keystone: KeystoneServer,
    keystone_chain: ServedApp,
) -> None:
    token = member_token(keystone)
    try:
        keystone.stop()
        # http_connect_timeout = 3, no retries: the client's 30 s bound is never reached.
        status, headers, body = fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": token})
    finally:
        keystone.start()
    assert status == 503
    assert (
        body["serviceUnavailable"]["message"] == "The Keystone service is temporarily unavailable."
    )
    assert "www-authenticate" not in headers
    assert fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": token})[0] == 200


def equal_name_and_id_member(server: KeystoneServer) -> tuple[str, str, str]:
    """A user and a project whose names are their ids, with member and reader on it.

    noauth uses the token's user and project as both ids and names: only such a user
    and project can be the same caller in both chains. Returns (user, project, password)."""
    admin, _ = server.issue_token(server.admin_username, server.admin_password, system_scope=True)

    def call(method: str, path: str, body: Any = None) -> Any:
        status, _, reply = server.request(method, path, token=admin, body=body)
        assert status in (200, 201, 204), (method, path, status, reply)
        return reply

    password = secrets.token_urlsafe(12)
    project = call("POST", "/v3/projects", {"project": {"name": "tmp-p", "domain_id": "default"}})
    project_id = project["project"]["id"]
    call("PATCH", f"/v3/projects/{project_id}", {"project": {"name": project_id}})
    user = call(
        "POST",
        "/v3/users",
        {"user": {"name": "tmp-u", "password": password, "domain_id": "default"}},
    )
    user_id = user["user"]["id"]
    call("PATCH", f"/v3/users/{user_id}", {"user": {"name": user_id}})
    roles = {role["name"]: role["id"] for role in call("GET", "/v3/roles")["roles"]}
    for role in ("member", "reader"):
        call("PUT", f"/v3/projects/{project_id}/users/{user_id}/roles/{roles[role]}")
    return user_id, project_id, password


@pytest.mark.keystone
def test_noauth_and_keystone_chains_give_equal_contexts(
    keystone: KeystoneServer,
    keystone_chain: ServedApp,
    noauth_chain: ServedApp,
) -> None:
    user, project, password = equal_name_and_id_member(keystone)
    token, _ = keystone.issue_token(user, password, project)

    status, _, by_keystone = fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": token})
    assert status == 200, by_keystone
    status, _, by_noauth = fetch(noauth_chain, "/v1/whoami", {"X-Auth-Token": f"{user}:{project}"})
    assert status == 200, by_noauth

    # Keystone lists a token's roles in no fixed order; policy reads them as a set.
    for context in (by_keystone["context"], by_noauth["context"]):
        context["roles"] = sorted(context["roles"])
    for reply in (by_keystone, by_noauth):
        reply["identity"]["X-Roles"] = sorted(reply["identity"]["X-Roles"].split(","))
    keystone_context, noauth_context = by_keystone["context"], by_noauth["context"]
    assert {f: keystone_context[f] for f in IDENTITY_FIELDS} == {
        f: noauth_context[f] for f in IDENTITY_FIELDS
    }
    assert keystone_context["user"] == user and keystone_context["project_name"] == project
    assert by_keystone["identity"] == by_noauth["identity"]

    # And the same identity headers, by name and value, apart from the catalog.
    keystone_raw = fetch(keystone_chain, "/raw/", {"X-Auth-Token": token})[2]
    noauth_raw = fetch(noauth_chain, "/noauthraw/", {"X-Auth-Token": f"{user}:{project}"})[2]
    for raw in (keystone_raw, noauth_raw):
        headers = raw["headers"]
        del headers["HTTP_X_AUTH_TOKEN"], headers["HTTP_HOST"]
        assert headers["HTTP_X_ROLE"] == headers["HTTP_X_ROLES"]
        headers["HTTP_X_ROLES"] = headers["HTTP_X_ROLE"] = sorted(
            headers["HTTP_X_ROLES"].split(",")
        )
    assert keystone_raw["headers"] == noauth_raw["headers"]


@pytest.fixture(scope="module")
def in_process(keystone: KeystoneServer) -> tuple[WSGIApp, str]:
    """authtoken over the echo app in this process, and a member token it has cached."""
    app = filter_factory({}, **keystone.authtoken_settings())(echo())
    token = member_token(keystone)
    assert get(app, {"X-Auth-Token": token}).status_int == 200
    return app, token


@pytest.mark.keystone
@settings(max_examples=100, deadline=None)
@given(forged=st.dictionaries(FORGED_NAMES, FORGED_VALUES, max_size=12))
def test_forged_identity_never_reaches_the_app_with_a_valid_token(
    keystone: KeystoneServer,
    in_process: tuple[WSGIApp, str],
    forged: dict[str, str],
) -> None:
    app, token = in_process
    response = get(app, {**forged, "X-Auth-Token": token})
    assert response.status_int == 200
    headers = response.json["headers"]
    identity = {k: v for k, v in headers.items() if k in FORGEABLE_KEYS | PROJECT_TOKEN_KEYS}
    assert set(identity) == PROJECT_TOKEN_KEYS
    assert identity["HTTP_X_USER_ID"] == keystone.member_user_id
    assert identity["HTTP_X_PROJECT_ID"] == keystone.project_id
    assert sorted(identity["HTTP_X_ROLES"].split(",")) == ["member", "reader"]
    assert identity["HTTP_X_IS_ADMIN_PROJECT"] == "False"


# --- the invalid-token cache, with a real Keystone --------------------------------------


def bad_token() -> str:
    return f"gAAAAA-not-a-token-{secrets.token_urlsafe(8)}"


def in_process_app(server: KeystoneServer, **kwargs: Any) -> AuthToken:
    conf = {
        **server.authtoken_settings(),
        "http_connect_timeout": "3",
        "http_request_max_retries": "0",
        **kwargs.pop("conf", {}),
    }
    return AuthToken(echo(), conf=conf, **kwargs)


@pytest.mark.keystone
def test_a_bad_token_is_validated_once_then_answered_401_from_memory(
    keystone: KeystoneServer,
    keystone_chain: ServedApp,
) -> None:
    token, other = bad_token(), bad_token()
    before = keystone.token_validations()
    for _ in range(5):
        status, headers, body = fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": token})
        assert status == 401
        assert headers["www-authenticate"] == f'Keystone uri="{keystone.auth_url}"'
        assert body["unauthorized"]["request_id"] == headers["x-openstack-request-id"]
    after = keystone.token_validations()
    assert after == before + 1
    # Another bad token is not the remembered one: Keystone validates it.
    assert fetch(keystone_chain, "/v1/whoami", {"X-Auth-Token": other})[0] == 401
    assert keystone.token_validations() == after + 1


@pytest.mark.keystone
def test_a_remembered_token_is_validated_again_after_the_ttl(keystone: KeystoneServer) -> None:
    clock = Clock()
    app = in_process_app(keystone, invalid_token_cache_time=60, clock=clock)
    token = bad_token()
    before = keystone.token_validations()
    assert get(app, {"X-Auth-Token": token}).status_int == 401
    clock.now += 59.9
    response = get(app, {"X-Auth-Token": token})
    assert response.status_int == 401
    assert response.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.auth_url}"'
    assert keystone.token_validations() == before + 1
    clock.now += 0.1
    assert get(app, {"X-Auth-Token": token}).status_int == 401
    assert keystone.token_validations() == before + 2


@pytest.mark.keystone
def test_with_a_ttl_of_0_every_request_validates(keystone: KeystoneServer) -> None:
    app = in_process_app(keystone, invalid_token_cache_time=0)
    token = bad_token()
    before = keystone.token_validations()
    for _ in range(3):
        assert get(app, {"X-Auth-Token": token}).status_int == 401
    assert keystone.token_validations() == before + 3


@pytest.mark.keystone
def test_the_oldest_remembered_token_is_forgotten_past_the_size(
    keystone: KeystoneServer,
) -> None:
    app = in_process_app(keystone, invalid_token_cache_size=2)
    first, second, third = bad_token(), bad_token(), bad_token()
    before = keystone.token_validations()
    for token in (first, second, third, third, second):
        assert get(app, {"X-Auth-Token": token}).status_int == 401
    assert keystone.token_validations() == before + 3
    assert get(app, {"X-Auth-Token": first}).status_int == 401
    assert keystone.token_validations() == before + 4


@pytest.mark.keystone
def test_delay_auth_decision_passes_a_remembered_token_as_invalid(
    keystone: KeystoneServer,
) -> None:
    app = in_process_app(keystone, conf={"delay_auth_decision": "true"})
    token = bad_token()
    before = keystone.token_validations()
    for _ in range(3):
        response = get(app, {**SPOOFED, "X-Auth-Token": token})
        assert response.status_int == 200
        headers = response.json["headers"]
        assert headers["HTTP_X_IDENTITY_STATUS"] == "Invalid"
        assert not set(headers) & {"HTTP_X_USER_ID", "HTTP_X_ROLES"}
    assert keystone.token_validations() == before + 1


@pytest.mark.keystone
def test_keystone_stopped_is_a_503_and_nothing_is_remembered(keystone: KeystoneServer) -> None:
    strict = in_process_app(keystone)
    delayed = in_process_app(keystone, conf={"delay_auth_decision": "true"})
    warm, valid, token = member_token(keystone), member_token(keystone), bad_token()
    for app in (strict, delayed):  # its own service token and discovery, before the outage
        assert get(app, {"X-Auth-Token": warm}).status_int == 200
    try:
        keystone.stop()
        for headers in ({"X-Auth-Token": token}, {"X-Auth-Token": valid}):
            assert get(strict, headers).status_int == 503
            response = get(delayed, headers)
            assert response.status_int == 200
            assert response.json["headers"]["HTTP_X_IDENTITY_STATUS"] == "Invalid"
    finally:
        keystone.start()
    assert not strict.invalid_tokens.expiries
    assert not delayed.invalid_tokens.expiries
    for app, rejected in ((strict, 401), (delayed, 200)):  # 200: passed on as Invalid
        assert get(app, {"X-Auth-Token": valid}).status_int == 200
        before = keystone.token_validations()
        assert get(app, {"X-Auth-Token": token}).status_int == rejected
        assert keystone.token_validations() == before + 1
