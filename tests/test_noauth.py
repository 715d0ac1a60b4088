"""noauth: nova's protocol, the identity contract, stripped forgeries, options, paste."""

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
from middleware_kit.noauth import FORGEABLE_HEADERS, FORGEABLE_KEYS, NoAuth, filter_factory
from tests.support.identity_echo import PROJECT_TOKEN_KEYS
from tests.support.servers import served


class Recorder:
    """A downstream app that records the environ it was called with."""

    def __init__(self) -> None:
        self.environ: Environ | None = None

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        self.environ = dict(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def identity(self) -> dict[str, str]:
        assert self.environ is not None, "the app was not called"
        return {k: v for k, v in self.environ.items() if k in FORGEABLE_KEYS}


def call(filter_: NoAuth, headers: dict[str, str], path: str = "/v1") -> webob.Response:
    return webob.Request.blank(path, headers=headers).get_response(filter_)


@pytest.mark.parametrize(
    ("token", "user", "project"),
    [
        pytest.param("alice:p1", "alice", "p1", id="user-and-project"),
        pytest.param("alice", "alice", "alice", id="no-colon"),
        pytest.param("alice:", "alice", "alice", id="nothing-after-colon"),
        pytest.param("alice:p1:x", "alice", "p1:x", id="second-colon-is-project"),
    ],
)
def test_token_sets_the_contract_headers(token: str, user: str, project: str) -> None:
    app = Recorder()
    response = call(NoAuth(app), {"X-Auth-Token": token})
    assert response.status_int == 200
    assert app.identity() == {
        "HTTP_X_IDENTITY_STATUS": "Confirmed",
        "HTTP_X_USER_ID": user,
        "HTTP_X_USER_NAME": user,
        "HTTP_X_USER_DOMAIN_ID": "default",
        "HTTP_X_USER_DOMAIN_NAME": "Default",
        "HTTP_X_PROJECT_ID": project,
        "HTTP_X_PROJECT_NAME": project,
        "HTTP_X_PROJECT_DOMAIN_ID": "default",
        "HTTP_X_PROJECT_DOMAIN_NAME": "Default",
        "HTTP_X_ROLES": "member,reader",
        "HTTP_X_IS_ADMIN_PROJECT": "False",
        "HTTP_X_ROLE": "member,reader",
        "HTTP_X_USER": user,
        "HTTP_X_TENANT_ID": project,
        "HTTP_X_TENANT_NAME": project,
        "HTTP_X_TENANT": project,
    }
    assert set(app.identity()) == PROJECT_TOKEN_KEYS
    assert app.environ is not None and app.environ["HTTP_X_AUTH_TOKEN"] == token


def test_admin_users_get_admin_roles_and_the_admin_project() -> None:
    app = Recorder()
    call(NoAuth(app), {"X-Auth-Token": "admin:ops"})
    identity = app.identity()
    assert identity["HTTP_X_ROLES"] == "admin,member,reader"
    assert identity["HTTP_X_IS_ADMIN_PROJECT"] == "True"


def test_options_choose_roles_and_admins() -> None:
    app = Recorder()
    filtered = filter_factory(
        {}, roles="viewer", admin_users="root, boss", admin_roles="admin admin reader"
    )(app)
    call(filtered, {"X-Auth-Token": "boss:p"})
    assert app.identity()["HTTP_X_ROLES"] == "admin,reader"  # duplicates dropped
    call(filtered, {"X-Auth-Token": "admin:p"})
    assert app.identity()["HTTP_X_ROLES"] == "viewer"
    assert app.identity()["HTTP_X_IS_ADMIN_PROJECT"] == "False"


@pytest.mark.parametrize(
    ("local_conf", "message"),
    [
        pytest.param({"role": "x"}, "did you mean 'roles'", id="typo"),
        pytest.param({"admin_user": "x"}, "did you mean 'admin_users'", id="typo-admin"),
        pytest.param({"colour": "x"}, "unknown option 'colour'", id="unknown"),
    ],
)
def test_unknown_options_fail_the_load(local_conf: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        filter_factory({}, **local_conf)
    assert "noauth" in str(error.value)


def test_every_forgeable_header_is_stripped() -> None:
    app = Recorder()
    forged = {name: "forged" for name in FORGEABLE_HEADERS}
    call(NoAuth(app), {**forged, "X-Auth-Token": "bob:p2"})
    identity = app.identity()
    assert set(identity) == PROJECT_TOKEN_KEYS
    assert "forged" not in identity.values()


def test_forgeable_set_is_auth_tokens_and_system_scope() -> None:
    from keystonemiddleware.auth_token._request import _AuthTokenRequest

    stripped = set(_AuthTokenRequest.blank("/")._all_auth_headers())
    assert set(FORGEABLE_HEADERS) == stripped | {"OpenStack-System-Scope"}
    assert {"X-Service-Roles", "X-Service-User-Id", "X-Tenant", "X-Role"} <= stripped


def test_no_token_answers_204_with_a_token_and_management_url() -> None:
    app = Recorder()
    response = call(
        NoAuth(app),
        {"X-Auth-User": "carol", "X-Auth-Project-Id": "p9"},
        path="http://api.example.org:8774/v2.1/",
    )
    assert response.status_int == 204
    assert response.headers["X-Auth-Token"] == "carol:p9"
    assert response.headers["X-Server-Management-Url"] == "http://api.example.org:8774/v2.1/p9"
    assert response.body == b""
    assert "Content-Length" not in response.headers
    assert app.environ is None


def test_no_token_defaults_to_admin() -> None:
    response = call(NoAuth(Recorder()), {}, path="/v2.1")
    assert response.status_int == 204
    assert response.headers["X-Auth-Token"] == "admin:admin"
    assert response.headers["X-Server-Management-Url"] == "http://localhost/v2.1/admin"


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        pytest.param(
            {"QUERY_STRING": "a=%00&b=\x7f\x00"},
            "http://localhost/v2.1/admin",
            id="query-string-dropped",
        ),
        pytest.param(
            {"PATH_INFO": "/v2.1/\xff\x00 x/"},
            "http://localhost/v2.1/%FF%00%20x/admin",
            id="path-not-utf8-is-percent-encoded",
        ),
        pytest.param(
            {"HTTP_HOST": "evil\x00.example.org"},
            "http://localhost/v2.1/admin",
            id="bad-host-falls-back-to-server-name",
        ),
        pytest.param(
            {"HTTP_HOST": "api.example.org:443", "wsgi.url_scheme": "https"},
            "https://api.example.org/v2.1/admin",
            id="https-default-port",
        ),
        pytest.param(
            {"HTTP_HOST": "[2001:db8::1]:8774"}, "http://[2001:db8::1]:8774/v2.1/admin", id="v6"
        ),
        pytest.param(
            {"HTTP_X_AUTH_PROJECT_ID": "p/../x"}, "http://localhost/v2.1/p%2F..%2Fx", id="quoted"
        ),
    ],
)
def test_management_url_carries_nothing_raw_from_the_client(
    environ: dict[str, str], url: str
) -> None:
    request = webob.Request.blank("/v2.1")
    request.environ.update(environ)
    response = request.get_response(NoAuth(Recorder()))
    assert response.status_int == 204
    assert response.headers["X-Server-Management-Url"] == url


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Auth-User": "a\x7fb"}, id="user-control"),
        pytest.param({"X-Auth-User": "a:b"}, id="user-colon"),
        pytest.param({"X-Auth-User": "caf\xe9"}, id="user-not-ascii"),
        pytest.param({"X-Auth-Project-Id": "p q"}, id="project-space"),
        pytest.param({"X-Auth-Project-Id": ""}, id="project-empty"),
    ],
)
def test_token_request_with_unusable_names_is_a_400_fault(headers: dict[str, str]) -> None:
    response = call(NoAuth(Recorder()), headers)
    assert response.status_int == 400
    assert response.json["badRequest"]["message"].startswith("X-Auth-User and X-Auth-Project-Id")
    assert "X-Auth-Token" not in response.headers


CLIENT_WRITTEN_KEYS = (
    *("HTTP_HOST", "PATH_INFO", "SCRIPT_NAME", "QUERY_STRING"),
    *("HTTP_X_AUTH_USER", "HTTP_X_AUTH_PROJECT_ID"),
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(CLIENT_WRITTEN_KEYS),
        st.text(st.characters(max_codepoint=0xFF)),
    )
)
def test_token_answer_headers_are_always_printable_ascii(values: dict[str, str]) -> None:
    request = webob.Request.blank("/")
    request.environ.update(values)
    response = request.get_response(NoAuth(Recorder()))
    assert response.status_int in (204, 400)
    for name, value in response.headerlist:
        assert all(" " <= char <= "~" for char in name + value), (name, value)


@pytest.mark.parametrize("token", [pytest.param("", id="empty"), pytest.param(":p", id="no-user")])
def test_empty_user_is_a_401_fault(token: str) -> None:
    app = Recorder()
    response = call(NoAuth(app), {"X-Auth-Token": token})
    assert response.status_int == 401
    assert response.json["unauthorized"]["code"] == 401
    assert app.environ is None


def test_warns_at_load(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="middleware_kit.noauth"):
        filter_factory({})(Recorder())
    assert any("every request is trusted" in r.getMessage() for r in caplog.records)


IDENTITY_HEADER_NAMES = st.sampled_from(
    [*FORGEABLE_HEADERS, *(name.lower() for name in FORGEABLE_HEADERS)]
)
HEADER_VALUES = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=20
)


CLIENT_WRITTEN_KEYS = (
    *("HTTP_HOST", "PATH_INFO", "SCRIPT_NAME", "QUERY_STRING"),
    *("HTTP_X_AUTH_USER", "HTTP_X_AUTH_PROJECT_ID"),
)


@settings(max_examples=200, deadline=None)
@given(
    forged=st.dictionaries(IDENTITY_HEADER_NAMES, HEADER_VALUES, max_size=12),
    user=st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1, max_size=8),
)
def test_client_identity_headers_never_reach_the_app(forged: dict[str, str], user: str) -> None:
    app = Recorder()
    call(NoAuth(app), {**forged, "X-Auth-Token": f"{user}:proj"})
    identity = app.identity()
    assert set(identity) == PROJECT_TOKEN_KEYS
    assert identity["HTTP_X_USER_ID"] == user
    assert identity["HTTP_X_PROJECT_ID"] == "proj"
    assert identity["HTTP_X_IDENTITY_STATUS"] == "Confirmed"


def test_paste_loads_by_egg_name_and_demo_shows_the_identity(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[pipeline:main]\n"
        "pipeline = noauth demo\n"
        "[filter:noauth]\n"
        "use = egg:middleware_kit#noauth\n"
        "admin_users = root\n"
        "[app:demo]\n"
        "use = egg:middleware_kit#demo\n"
    )
    app = loadapp(f"config:{ini}")
    headers = {"X-Auth-Token": "root:ops", "X-Roles": "forged", "OpenStack-System-Scope": "all"}
    response = webob.Request.blank("/whoami", headers=headers).get_response(app)
    assert response.status_int == 200, response.body
    identity = json.loads(response.body)["identity"]
    assert identity["X-Roles"] == "admin,member,reader"
    assert identity["X-User-Id"] == "root"
    assert identity["X-Project-Name"] == "ops"
    assert identity["X-Is-Admin-Project"] == "True"
    assert "OpenStack-System-Scope" not in identity


def test_paste_rejects_an_unknown_option(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = noauth demo\n"
        "[filter:noauth]\nuse = egg:middleware_kit#noauth\nadmin_role = admin\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    with pytest.raises(ConfigError, match="did you mean 'admin_roles'"):
        loadapp(f"config:{ini}")


@pytest.mark.server
def test_served_204_token_flow_then_a_request_with_the_token(tmp_path: Path) -> None:
    ini = tmp_path / "api.ini"
    ini.write_text(
        "[composite:main]\nuse = egg:Paste#urlmap\n/v2.1 = api\n"
        "[pipeline:api]\npipeline = noauth context demo\n"
        "[filter:noauth]\nuse = egg:middleware_kit#noauth\n"
        "[filter:context]\nuse = egg:middleware_kit#context\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    with served(ini) as server:
        status, headers, body = server.request(
            "/v2.1/", headers={"X-Auth-User": "dave", "X-Auth-Project-Id": "p7"}
        )
        assert status == 204
        assert body == b""
        assert headers["x-auth-token"] == "dave:p7"
        assert headers["x-server-management-url"] == f"{server.url}/v2.1/p7"
        assert "transfer-encoding" not in headers

        status, _, body = server.request(
            "/v2.1/whoami", headers={"X-Auth-Token": headers["x-auth-token"]}
        )
        assert status == 200
        context = json.loads(body)["context"]
        assert (context["user"], context["project_id"]) == ("dave", "p7")
        assert context["remote_address"] == "127.0.0.1"
