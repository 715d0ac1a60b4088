"""The demo app: versions, resources, whoami, boom, and its JSON errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
import webob

from middleware_kit.demo import Demo, app_factory


def call(
    app: Demo, path: str, method: str = "GET", body: Any = None, **environ: Any
) -> webob.Response:
    request = webob.Request.blank(path, method=method, environ=environ)
    if body is not None:
        request.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        request.content_type = "application/json"
    return request.get_response(app)


@pytest.fixture
def app() -> Demo:
    return app_factory({})


def test_versions_document(app: Demo) -> None:
    response = call(app, "/")
    assert response.status_int == 200
    assert response.content_type == "application/json"
    versions = response.json["versions"]
    assert versions[0]["id"] == "v1.0"
    assert versions[0]["links"][0]["href"] == "http://localhost/v1/"


@pytest.mark.parametrize(("member", "collection"), [("cat", "cats"), ("dog", "dogs")])
def test_resource_lifecycle(app: Demo, member: str, collection: str) -> None:
    assert call(app, f"/{collection}").json == {collection: []}

    created = call(app, f"/{collection}", "POST", {member: {"name": "rex"}})
    assert created.status_int == 201
    item = created.json[member]
    assert item["name"] == "rex"

    assert call(app, f"/{collection}/{item['id']}").json == {member: item}

    updated = call(app, f"/{collection}/{item['id']}", "PUT", {"age": 3})
    assert updated.json[member] == {**item, "age": 3}
    assert call(app, f"/{collection}").json == {collection: [{**item, "age": 3}]}

    deleted = call(app, f"/{collection}/{item['id']}", "DELETE")
    assert deleted.status_int == 204
    assert deleted.body == b""
    assert call(app, f"/{collection}/{item['id']}").status_int == 404


def test_update_cannot_change_the_id(app: Demo) -> None:
    item = call(app, "/cats", "POST", {"name": "tom"}).json["cat"]
    updated = call(app, f"/cats/{item['id']}", "PUT", {"id": "999", "name": "tim"})
    assert updated.json["cat"] == {"id": item["id"], "name": "tim"}


def test_ids_are_distinct(app: Demo) -> None:
    ids = {call(app, "/dogs", "POST", {"n": i}).json["dog"]["id"] for i in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"text"', id="string"),
        pytest.param(b"", id="empty"),
    ],
)
def test_bad_json_is_400(app: Demo, body: bytes) -> None:
    response = call(app, "/cats", "POST", body)
    assert response.status_int == 400
    assert response.json["badRequest"]["code"] == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/cats/42", id="show"),
        pytest.param("PUT", "/cats/42", id="update"),
        pytest.param("DELETE", "/cats/42", id="delete"),
        pytest.param("GET", "/nowhere", id="unknown-path"),
        pytest.param("GET", "/cats/new", id="new-is-not-a-page"),
    ],
)
def test_not_found_is_404_json(app: Demo, method: str, path: str) -> None:
    body = {"x": 1} if method == "PUT" else None
    response = call(app, path, method, body)
    assert response.status_int == 404
    assert response.json["itemNotFound"]["code"] == 404


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        pytest.param("PATCH", "/cats/1", "GET, HEAD, PUT, DELETE", id="member"),
        pytest.param("DELETE", "/cats", "GET, HEAD, POST", id="collection"),
        pytest.param("POST", "/whoami", "GET, HEAD", id="whoami"),
    ],
)
def test_wrong_method_is_405_with_allow(app: Demo, method: str, path: str, allow: str) -> None:
    response = call(app, path, method)
    assert response.status_int == 405
    assert response.headers["Allow"] == allow
    assert response.json["badMethod"]["code"] == 405


def test_head_answers_like_get_without_body(app: Demo) -> None:
    response = call(app, "/cats", "HEAD")
    assert response.status_int == 200
    assert response.body == b""
    assert int(response.headers["Content-Length"]) == len(b'{"cats": []}')


def test_whoami_reports_what_filters_set(app: Demo) -> None:
    class FakeContext:
        def to_dict(self) -> dict[str, str]:
            return {"user_id": "u1"}

    response = call(
        app,
        "/whoami",
        HTTP_X_USER_ID="u1",
        HTTP_X_ROLES="member,reader",
        HTTP_X_SECRET="not an identity header",
        REMOTE_ADDR="127.0.0.9",
        **{
            "openstack.request_id": "req-1",
            "openstack.global_request_id": "req-2",
            "nova.context": FakeContext(),
            "middleware_kit.ratelimit": [{"verb": "POST", "remaining": 3}],
        },
    )
    assert response.json == {
        "request_id": "req-1",
        "global_request_id": "req-2",
        "identity": {"X-User-Id": "u1", "X-Roles": "member,reader"},
        "context": {"user_id": "u1"},
        "client_addr": "127.0.0.9",
        "ratelimit": [{"verb": "POST", "remaining": 3}],
    }


def test_whoami_prefers_resolved_client_address(app: Demo) -> None:
    response = call(
        app, "/whoami", REMOTE_ADDR="127.0.0.1", **{"middleware_kit.client_addr": "192.0.2.7"}
    )
    assert response.json["client_addr"] == "192.0.2.7"


def test_boom_raises(app: Demo) -> None:
    with pytest.raises(RuntimeError, match="always fails"):
        call(app, "/boom")


def test_demo_rejects_options() -> None:
    with pytest.raises(LookupError, match="unknown option 'colour'"):
        app_factory({}, colour="red")


def test_state_is_per_app_instance() -> None:
    first, second = app_factory({}), app_factory({})
    call(first, "/cats", "POST", {"name": "a"})
    assert call(second, "/cats").json == {"cats": []}
