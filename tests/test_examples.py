"""Every bundled paste example loads, with every strategy, and answers a request."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import webob
from paste.deploy import loadapp

from tests.support.servers import EXAMPLES, served

# (file, app name, URL prefix of the API, strategies)
EXAMPLE_APPS = [
    ("api-paste.ini", "main", "/v1", ("noauth", "keystone")),
    ("neutron-style.ini", "neutron", "/v2.0", ("noauth", "keystone")),
    ("minimal.ini", "main", "", ()),
]
TOKEN = {"X-Auth-Token": "demo:demo"}


def test_examples_directory_matches_bundled_package_data() -> None:
    bundled = Path(__file__).resolve().parents[1] / "middleware_kit" / "examples"
    assert sorted(p.name for p in EXAMPLES.glob("*.ini")) == sorted(
        p.name for p in bundled.glob("*.ini")
    )
    for path in EXAMPLES.glob("*.ini"):
        assert path.read_text() == (bundled / path.name).read_text()


def test_nova_style_example_loads_as_documented() -> None:
    # The exact call the README and the issue give, run from the repository root.
    cwd = os.getcwd()
    os.chdir(EXAMPLES.parent)
    try:
        app = loadapp("config:paste-examples/api-paste.ini", name="main", relative_to=".")
    finally:
        os.chdir(cwd)
    response = webob.Request.blank("/v1/cats", headers=TOKEN).get_response(app)
    assert response.status_int == 200
    assert response.json == {"cats": []}


@pytest.mark.parametrize(
    ("ini", "name", "prefix", "strategy"),
    [
        pytest.param(ini, name, prefix, strategy, id=f"{ini}-{strategy}")
        for ini, name, prefix, strategies in EXAMPLE_APPS
        for strategy in strategies
    ],
)
def test_each_strategy_loads(ini: str, name: str, prefix: str, strategy: str) -> None:
    app = loadapp(f"config:{EXAMPLES / ini}", name=name, global_conf={"auth_strategy": strategy})
    versions = webob.Request.blank("/").get_response(app)
    assert versions.status_int == 200
    assert "versions" in versions.json


@pytest.mark.parametrize(("ini", "name", "prefix", "strategies"), EXAMPLE_APPS)
def test_request_goes_through_in_process(
    ini: str, name: str, prefix: str, strategies: tuple[str, ...]
) -> None:
    app = loadapp(f"config:{EXAMPLES / ini}", name=name)
    response = webob.Request.blank(
        f"{prefix}/cats",
        method="POST",
        headers=TOKEN,
        body=b'{"cat": {"name": "tom"}}',
        remote_addr="127.0.0.1",  # as every server sets it; ip_blacklist denies a request without
    ).get_response(app)
    assert response.status_int == 201, response.body
    assert response.json["cat"]["name"] == "tom"
    assert response.headers["x-openstack-request-id"].startswith("req-")


@pytest.mark.server
@pytest.mark.parametrize(("ini", "name", "prefix", "strategies"), EXAMPLE_APPS)
def test_example_is_served(ini: str, name: str, prefix: str, strategies: tuple[str, ...]) -> None:
    with served(EXAMPLES / ini, name=name) as server:
        status, headers, body = server.request(f"{prefix}/cats", headers=TOKEN)
        assert status == 200, body
        assert json.loads(body) == {"cats": []}
        assert headers["x-openstack-request-id"].startswith("req-")
        status, _, body = server.request(f"{prefix}/whoami", headers=TOKEN)
        assert status == 200
        assert json.loads(body)["client_addr"] == "127.0.0.1"
