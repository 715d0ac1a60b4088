"""context: the oslo.context request context, 401 without identity, catalog, paste."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import webob
from hypothesis import given, settings
from hypothesis import strategies as st
from oslo_context import context as oslo_context
from paste.deploy import loadapp

from middleware_kit._config import ConfigError
from middleware_kit._wsgi import Environ, StartResponse
from middleware_kit.context import (
    DEFAULT_CONTEXT_KEY,
    SOURCES,
    Context,
    RequestContext,
    filter_factory,
)

ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
IDENTITY = {
    "X-Identity-Status": "Confirmed",
    "X-User-Id": "u1",
    "X-User-Name": "alice",
    "X-User-Domain-Id": "default",
    "X-User-Domain-Name": "Default",
    "X-Project-Id": "p1",
    "X-Project-Name": "demo",
    "X-Project-Domain-Id": "default",
    "X-Project-Domain-Name": "Default",
    "X-Roles": "member,reader",
    "X-Is-Admin-Project": "False",
    "X-Auth-Token": "tok",
}


class Recorder:
    """A downstream app that records the environ it was called with."""

    def __init__(self) -> None:
        self.environ: Environ | None = None

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        self.environ = environ
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def context(self, key: str = DEFAULT_CONTEXT_KEY) -> RequestContext:
        assert self.environ is not None, "the app was not called"
        context = self.environ[key]
        assert isinstance(context, RequestContext)
        return context


def call(filter_: Any, headers: dict[str, str], **environ: Any) -> webob.Response:
    request = webob.Request.blank("/v1/cats", headers=headers)
    request.environ.update(environ)
    return request.get_response(filter_)


def test_builds_an_oslo_context_from_the_identity_headers() -> None:
    app = Recorder()
    response = call(
        Context(app),
        IDENTITY,
        REMOTE_ADDR="192.0.2.9",
        **{
            "openstack.request_id": "req-local",
            "openstack.global_request_id": "req-global",
        },
    )
    assert response.status_int == 200
    context = app.context()
    assert isinstance(context, oslo_context.RequestContext)
    assert oslo_context.get_current() is context
    assert context.to_dict() == {
        "user": "u1",
        "project_id": "p1",
        "system_scope": None,
        "project": "p1",
        "domain": None,
        "user_domain": "default",
        "project_domain": "default",
        "is_admin": False,
        "read_only": False,
        "show_deleted": False,
        "auth_token": "tok",
        "request_id": "req-local",
        "global_request_id": "req-global",
        "resource_uuid": None,
        "roles": ["member", "reader"],
        "user_identity": "u1 p1 - default default",
        "is_admin_project": False,
        "user_name": "alice",
        "project_name": "demo",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "remote_address": "192.0.2.9",
        "service_catalog": [],
    }


def test_client_address_from_a_filter_before_wins() -> None:
    app = Recorder()
    call(Context(app), IDENTITY, REMOTE_ADDR="10.0.0.1", **{"middleware_kit.client_addr": "::1"})
    assert app.context().remote_address == "::1"


def test_request_id_is_made_when_no_filter_set_one() -> None:
    app = Recorder()
    call(Context(app), IDENTITY)
    assert ID.fullmatch(app.context().request_id)


def test_system_scope_and_admin_project_default() -> None:
    app = Recorder()
    headers = {**IDENTITY, "OpenStack-System-Scope": "all"}
    del headers["X-Is-Admin-Project"], headers["X-Project-Id"]
    call(Context(app), headers)
    context = app.context()
    assert context.system_scope == "all"
    assert context.project_id is None
    assert context.is_admin_project is True  # oslo.context's default without the header


@pytest.mark.parametrize(
    ("raw", "roles"),
    [
        pytest.param("member,reader", ["member", "reader"], id="plain"),
        pytest.param("a,,b", ["a", "b"], id="empty-between"),
        pytest.param(" a , b ,", ["a", "b"], id="spaces-and-trailing-comma"),
        pytest.param(",", [], id="only-comma"),
        pytest.param("", [], id="empty"),
        pytest.param("a,\tb", ["a", "b"], id="tab"),
    ],
)
def test_roles_never_contain_empty_strings(raw: str, roles: list[str]) -> None:
    app = Recorder()
    call(Context(app), {**IDENTITY, "X-Roles": raw, "X-Service-Roles": raw})
    assert app.context().roles == roles
    assert app.context().service_roles == roles


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"X-Identity-Status": "Invalid"}, id="invalid"),
        pytest.param({"X-Identity-Status": None}, id="no-status"),
        pytest.param({"X-Identity-Status": "confirmed"}, id="lower-case-status"),
        pytest.param({"X-User-Id": None}, id="no-user-id"),
        pytest.param({"X-User-Id": ""}, id="empty-user-id"),
    ],
)
def test_no_confirmed_identity_is_a_401_fault(change: dict[str, str | None]) -> None:
    headers = {**IDENTITY, **change}
    app = Recorder()
    response = call(
        Context(app),
        {k: v for k, v in headers.items() if v is not None},
        **{"openstack.request_id": "req-1"},
    )
    assert response.status_int == 401
    assert response.content_type == "application/json"
    assert response.json == {
        "unauthorized": {
            "code": 401,
            "message": "The request requires authentication.",
            "request_id": "req-1",
        }
    }
    assert app.environ is None


def test_deprecated_user_header_is_a_user_id_as_in_oslo() -> None:
    headers = {k: v for k, v in IDENTITY.items() if k != "X-User-Id"}
    app = Recorder()
    call(Context(app), {**headers, "X-User": "legacy", "X-Tenant-Id": "t9"})
    assert app.context().user_id == "legacy"
    assert app.context().project_id == "p1"  # X-Project-Id comes first


def test_service_catalog_is_parsed() -> None:
    catalog = [{"type": "identity", "endpoints": []}]
    app = Recorder()
    call(Context(app), {**IDENTITY, "X-Service-Catalog": json.dumps(catalog)})
    assert app.context().service_catalog == catalog
    assert app.context().to_dict()["service_catalog"] == catalog


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        pytest.param("[{", "not JSON", id="not-json"),
        pytest.param('{"a": 1}', "expected a JSON list", id="object"),
        pytest.param("", "not JSON", id="empty"),
    ],
)
def test_malformed_service_catalog_is_a_500_fault(raw: str, why: str) -> None:
    app = Recorder()
    response = call(Context(app), {**IDENTITY, "X-Service-Catalog": raw})
    assert response.status_int == 500
    message = response.json["computeFault"]["message"]
    assert message.startswith("Invalid X-Service-Catalog: ") and why in message
    assert app.environ is None


def test_context_key_option() -> None:
    app = Recorder()
    call(filter_factory({}, context_key="nova.context")(app), IDENTITY)
    assert app.context("nova.context").user_id == "u1"
    assert app.environ is not None and DEFAULT_CONTEXT_KEY not in app.environ


@pytest.mark.parametrize(
    ("local_conf", "message"),
    [
        pytest.param({"context_key": "  "}, "context_key = '  ': must not be empty", id="empty"),
        pytest.param({"contextkey": "x"}, "did you mean 'context_key'", id="typo"),
    ],
)
def test_bad_options_fail_the_load(local_conf: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        filter_factory({}, **local_conf)


def test_dict_round_trip_keeps_the_added_fields() -> None:
    app = Recorder()
    call(Context(app), IDENTITY, REMOTE_ADDR="192.0.2.1")
    values = app.context().to_dict()
    again = RequestContext.from_dict(values, overwrite=False)
    assert again.to_dict() == values
    assert again.redacted_copy(overwrite=False).remote_address is None  # oslo's fields only


def test_sources_are_oslo_contexts() -> None:
    from oslo_context.context import _ENVIRON_HEADERS

    assert {k: tuple(v) for k, v in _ENVIRON_HEADERS.items()} == SOURCES


ENVIRON_KEYS = st.sampled_from(
    sorted(
        {key for keys in SOURCES.values() for key in keys}
        | {"HTTP_X_ROLES", "HTTP_X_ROLE", "HTTP_X_SERVICE_ROLES", "HTTP_X_IS_ADMIN_PROJECT"}
    )
)
VALUES = st.text(st.sampled_from("ab, \tTrue"), max_size=8)


@settings(max_examples=300, deadline=None)
@given(extra=st.dictionaries(ENVIRON_KEYS, VALUES, max_size=15), user=st.sampled_from("uv"))
def test_same_context_as_from_environ(extra: dict[str, str], user: str) -> None:
    """Built without __init__, the context has the attributes from_environ gives it."""
    environ = {
        **extra,
        "HTTP_X_IDENTITY_STATUS": "Confirmed",
        "HTTP_X_USER_ID": user,
        "openstack.request_id": "req-1",
        "REMOTE_ADDR": "192.0.2.3",
    }
    app = Recorder()
    Context(app)(dict(environ), lambda status, headers, exc_info=None: lambda data: None)
    expected = RequestContext.from_environ(environ, remote_address="192.0.2.3")
    expected.roles = [role for role in expected.roles if role]
    expected.service_roles = [role for role in expected.service_roles if role]
    context = app.context()
    assert {name: getattr(context, name) for name in vars(expected)} == vars(expected)
    assert set(vars(context)) <= set(vars(expected))


def test_paste_noauth_context_demo_whoami(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[pipeline:main]\n"
        "pipeline = noauth context demo\n"
        "[filter:noauth]\n"
        "use = egg:middleware_kit#noauth\n"
        "admin_users = root\n"
        "[filter:context]\n"
        "use = egg:middleware_kit#context\n"
        "context_key = nova.context\n"
        "[app:demo]\n"
        "use = egg:middleware_kit#demo\n"
    )
    app = loadapp(f"config:{ini}")
    request = webob.Request.blank("/whoami", headers={"X-Auth-Token": "root:ops"})
    request.remote_addr = "192.0.2.7"
    response = request.get_response(app)
    assert response.status_int == 200, response.body
    context = json.loads(response.body)["context"]
    assert (context["user"], context["user_name"]) == ("root", "root")
    assert (context["project_id"], context["project_name"]) == ("ops", "ops")
    assert context["roles"] == ["admin", "member", "reader"]
    assert context["is_admin_project"] is True
    assert context["remote_address"] == "192.0.2.7"
    assert context["auth_token"] == "***"  # the demo never echoes a token
