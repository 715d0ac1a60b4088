"""middleware-kit inspect: resolution as PasteDeploy does it, text and JSON output, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import webob
from paste.deploy import loadapp

from middleware_kit import cli
from middleware_kit.inspector import UnreadableIniError, inspect_ini, render
from middleware_kit.inspector.model import Chain, Obj
from tests.support.servers import EXAMPLES

TAG = "call:tests.support.tagging:tag_filter_factory"
TRAIL = "call:tests.support.tagging:global_conf_app_factory"
COMMAND = Path(sys.executable).parent / "middleware-kit"


def write(tmp_path: Path, ini: str, name: str = "api-paste.ini") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(ini))
    return str(path)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def names(chain: Chain) -> list[str]:
    return [f.name for f in chain.filters] + [chain.app.name]


def strategy(composite: Obj, name: str) -> Chain:
    return next(s.chain for s in composite.strategies if s.name == name)


NESTED = f"""
[DEFAULT]
auth_strategy = noauth

[composite:main]
use = egg:Paste#urlmap
/ = versions
/v1 = api
not_found_app = versions

[app:versions]
use = {TRAIL}

[composite:api]
use = egg:middleware_kit#pipeline
noauth = one two trail
keystone = two wrapped

[filter:one]
use = {TAG}
tag = one

[filter:two]
use = one
tag = two
extra = yes

[app:trail]
use = {TRAIL}

[app:wrapped]
use = {TRAIL}
filter-with = one
"""


def test_urlmap_and_pipeline_resolve_as_paste_does(tmp_path: Path) -> None:
    report = inspect_ini(write(tmp_path, NESTED))
    assert report.problems == []
    main = report.root.app
    assert (main.type, main.shape, main.entry_point) == ("composite", "urlmap", "egg:Paste#urlmap")
    assert [(r.prefix, r.target) for r in main.routes] == [
        ("/", "versions"),
        ("/v1", "api"),
        ("(not found)", "versions"),
    ]
    api = main.routes[1].chain.app
    assert (api.shape, api.ours, api.selected, api.selected_by_default) == (
        "pipeline",
        "pipeline",
        "noauth",
        "noauth",
    )
    assert [(s.name, s.selected) for s in api.strategies] == [
        ("noauth", True),
        ("keystone", False),
    ]
    assert names(strategy(api, "noauth")) == ["one", "two", "trail"]
    # filter-with on the app wraps it: the filter comes right before it.
    assert names(strategy(api, "keystone")) == ["two", "one", "wrapped"]
    one, two = strategy(api, "noauth").filters
    # `use = one` takes [filter:one]'s options, its own override them.
    assert (one.options, two.options) == ({"tag": "one"}, {"tag": "two", "extra": "yes"})
    assert (two.section, two.entry_point, two.ours) == ("filter:two", TAG, None)


def test_set_selects_another_strategy(tmp_path: Path) -> None:
    report = inspect_ini(write(tmp_path, NESTED), settings={"auth_strategy": "keystone"})
    api = report.root.app.routes[1].chain.app
    assert (api.selected, api.selected_by_default) == ("keystone", "noauth")
    assert report.global_conf["auth_strategy"] == "keystone"


def test_default_set_and_get_options(tmp_path: Path) -> None:
    ini = f"""
    [DEFAULT]
    tag = from-default
    colour = blue

    [pipeline:main]
    pipeline = one trail

    [filter:one]
    use = {TAG}
    tag = ignored-as-global
    set size = 10
    get shade = colour

    [app:trail]
    use = {TRAIL}
    """
    report = inspect_ini(write(tmp_path, ini))
    one = report.root.filters[0]
    assert one.options == {"shade": "blue"}
    assert (one.global_conf["tag"], one.global_conf["size"]) == ("from-default", "10")


def test_filter_app_and_config_uri(tmp_path: Path) -> None:
    write(tmp_path, f"[app:inner]\nuse = {TRAIL}\n\n[filter:two]\nuse = {TAG}\ntag = 2\n", "o.ini")
    ini = f"""
    [filter-app:main]
    paste.filter_factory = {TAG.removeprefix("call:")}
    tag = one
    next = rest

    [pipeline:rest]
    pipeline = config:o.ini#two config:o.ini#inner
    """
    report = inspect_ini(write(tmp_path, ini))
    assert report.problems == []
    assert names(report.root) == ["main", "two", "inner"]
    assert [f.options for f in report.root.filters] == [{"tag": "one"}, {"tag": "2"}]


@pytest.mark.parametrize(
    "option", ["password", "admin_password", "memcache_secret_key", "admin_token", "Secret"]
)
def test_secrets_are_masked(tmp_path: Path, option: str) -> None:
    ini = f"[pipeline:main]\npipeline = one trail\n[filter:one]\nuse = {TAG}\n{option} = s3cr3t\n"
    ini += f"user = nova\n[app:trail]\nuse = {TRAIL}\n"
    report = inspect_ini(write(tmp_path, ini), settings={"service_token": "t0ken"})
    for output_format in ("text", "json"):
        out = render(report, output_format)
        assert "s3cr3t" not in out
        assert "t0ken" not in out
        assert "nova" in out
    assert json.loads(render(report, "json"))["app"]["filters"][0]["options"] == {
        option: "***",
        "user": "nova",
    }


def test_unreadable_ini(tmp_path: Path) -> None:
    with pytest.raises(UnreadableIniError, match="no such file"):
        inspect_ini(str(tmp_path / "missing.ini"))
    with pytest.raises(UnreadableIniError, match="contains no section headers"):
        inspect_ini(write(tmp_path, "use = egg:x\n"))


NOVA_STYLE = """
[composite:osapi_compute]
use = call:nova.api.openstack.urlmap:urlmap_factory
/: oscomputeversions
/v2.1: openstack_compute_api_v21

[composite:openstack_compute_api_v21]
use = call:nova.api.auth:pipeline_factory_v21
keystone = cors http_proxy_to_wsgi compute_req_id request_log sizelimit authtoken
    keystonecontext osapi_compute_app_v21
noauth2 = cors compute_req_id sizelimit noauth2 osapi_compute_app_v21

[pipeline:oscomputeversions]
pipeline = cors faultwrap http_proxy_to_wsgi oscomputeversionapp

[app:oscomputeversionapp]
paste.app_factory = nova.api.openstack.compute.versions:Versions.factory

[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = nova

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory

[filter:compute_req_id]
use = egg:oslo.middleware#request_id

[filter:request_log]
paste.filter_factory = nova.api.openstack.requestlog:RequestLog.factory

[filter:faultwrap]
paste.filter_factory = nova.api.openstack:FaultWrapper.factory

[filter:sizelimit]
use = egg:oslo.middleware#sizelimit

[filter:noauth2]
paste.filter_factory = nova.api.openstack.auth:NoAuthMiddleware.factory

[filter:keystonecontext]
paste.filter_factory = nova.api.auth:NovaKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
admin_password = hunter2
memcache_secret_key = s3cr3t

[app:osapi_compute_app_v21]
paste.app_factory = nova.api.openstack.compute:APIRouterV21.factory
"""


def test_nova_style_ini_with_other_packages(tmp_path: Path) -> None:
    # nova is not installed: nothing of other packages is imported, only named.
    report = inspect_ini(write(tmp_path, NOVA_STYLE), "osapi_compute")
    assert report.problems == []
    assert report.exit_status(strict=True) == 0
    urlmap = report.root.app
    assert (urlmap.shape, urlmap.target) == ("urlmap", "nova.api.openstack.urlmap:urlmap_factory")
    versions, api = (route.chain for route in urlmap.routes)
    assert names(versions) == ["cors", "faultwrap", "http_proxy_to_wsgi", "oscomputeversionapp"]
    composite = api.app
    assert (composite.shape, composite.selected, composite.entry_point) == (
        "pipeline",
        None,
        "call:nova.api.auth:pipeline_factory_v21",
    )
    keystone = strategy(composite, "keystone")
    assert names(keystone) == [
        "cors",
        "http_proxy_to_wsgi",
        "compute_req_id",
        "request_log",
        "sizelimit",
        "authtoken",
        "keystonecontext",
        "osapi_compute_app_v21",
    ]
    req_id, authtoken = keystone.filters[2], keystone.filters[5]
    assert (req_id.entry_point, req_id.target) == (
        "egg:oslo.middleware#request_id",
        "oslo_middleware:RequestId.factory",
    )
    assert authtoken.entry_point == (
        "paste.filter_factory = keystonemiddleware.auth_token:filter_factory"
    )
    assert all(f.ours is None for f in keystone.filters)

    text = render(report, "text")
    assert "authtoken" in text
    assert "admin_password = ***" in text
    assert "hunter2" not in text
    assert "s3cr3t" not in text
    assert "(other package)" in text
    assert "(the service chooses among these; not judged here)" in text


def test_unknown_composite_is_shown_not_expanded(tmp_path: Path) -> None:
    ini = "[composite:main]\nuse = call:some.where:mapper\n/a = nowhere\n"
    report = inspect_ini(write(tmp_path, ini))
    assert report.problems == []
    assert (report.root.app.shape, report.root.app.options) == ("other", {"/a": "nowhere"})
    assert "(composite of unknown shape: not expanded)" in render(report)


def test_json_shape(tmp_path: Path) -> None:
    path = write(tmp_path, NESTED + "\n[composite:broken]\nuse = egg:Paste#urlmap\n/ = gone\n")
    document = json.loads(render(inspect_ini(path, settings={"x": "1"}), "json"))
    assert set(document) == {"ini", "name", "global_conf", "app", "problems", "errors", "warnings"}
    assert (document["ini"], document["name"]) == (path, "main")
    assert document["global_conf"] == {"auth_strategy": "noauth", "x": "1"}
    assert (document["errors"], document["warnings"], document["problems"]) == (0, 0, [])
    main = document["app"]
    assert set(main) == {"filters", "app"}
    composite_keys = {"shape", "routes", "strategies", "selected", "selected_by_default"}
    object_keys = {"type", "name", "section", "entry_point", "ours", "options"}
    assert set(main["app"]) == object_keys | composite_keys
    route = main["app"]["routes"][1]
    assert (set(route), route["prefix"], route["target"]) == (
        {"prefix", "target", "chain"},
        "/v1",
        "api",
    )
    api = route["chain"]["app"]
    assert (api["selected"], api["selected_by_default"], api["ours"]) == (
        "noauth",
        "noauth",
        "pipeline",
    )
    noauth = api["strategies"][0]
    assert (set(noauth), noauth["name"], noauth["selected"]) == (
        {"name", "selected", "chain"},
        "noauth",
        True,
    )
    one = noauth["chain"]["filters"][0]
    assert one == {
        "type": "filter",
        "name": "one",
        "section": "filter:one",
        "entry_point": TAG,
        "ours": None,
        "options": {"tag": "one"},
    }
    assert set(noauth["chain"]["app"]) == object_keys

    broken = json.loads(render(inspect_ini(path, "broken"), "json"))
    gone = broken["app"]["app"]["routes"][0]["chain"]["app"]
    assert (gone["type"], gone["reason"]) == ("unresolved", gone["reason"])
    assert gone["reason"].startswith("no section [app:gone]")
    assert broken["problems"] == [
        {
            "severity": "error",
            "section": "composite:broken",
            "chain": None,
            "message": f"'gone' does not resolve: {gone['reason']}",
        }
    ]
    assert broken["errors"] == 1


def test_text_output(tmp_path: Path) -> None:
    text = render(inspect_ini(write(tmp_path, NESTED)))
    lines = text.splitlines()
    assert lines[0].endswith("api-paste.ini: app 'main'")
    assert lines[1] == "global conf: auth_strategy = noauth"
    assert "main  composite egg:Paste#urlmap" in lines
    assert f"  / -> versions  app {TRAIL}  (other package)" in lines
    assert "    noauth (selected, the ini's default):" in lines
    assert f"      1. one      filter {TAG}  (other package)" in lines
    assert "          tag = one" in lines
    assert lines[-1] == "0 errors, 0 warnings"


# --- the command ---------------------------------------------------------------------


CLEAN = f"[pipeline:main]\npipeline = one trail\n[filter:one]\nuse = {TAG}\ntag = 1\n"
CLEAN += f"[app:trail]\nuse = {TRAIL}\n"


def test_cli_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(["inspect", write(tmp_path, CLEAN), "--strict"], capsys)
    assert (status, err) == (0, "")
    assert "1. one" in out
    assert out.endswith("0 errors, 0 warnings\n")


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(["inspect", write(tmp_path, CLEAN), "--name", "nope"], capsys)
    assert (status, err) == (2, "")
    assert "error [nope]: 'nope' does not resolve: no section [app:nope]" in out


def test_cli_json_and_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "inspect",
        write(tmp_path, NESTED),
        "--format",
        "json",
        "--set",
        "auth_strategy=keystone",
    ]
    status, out, _ = run(argv, capsys)
    assert status == 0
    api = json.loads(out)["app"]["app"]["routes"][1]["chain"]["app"]
    assert api["selected"] == "keystone"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["inspect", "/nonexistent/api-paste.ini"], "no such file", id="missing"),
        pytest.param(["inspect", "--set", "novalue"], "expected KEY=VALUE", id="bad-set"),
    ],
)
def test_cli_unusable_input(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(argv, capsys)
    assert (status, out) == (2, "")
    assert err.startswith("middleware-kit: ")
    assert expected in err
    assert len(err.splitlines()) == 1


def test_cli_strict_turns_warnings_into_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = "[pipeline:main]\npipeline = noauth demo\n[filter:noauth]\n"
    ini += "use = egg:middleware_kit#noauth\n[app:demo]\nuse = egg:middleware_kit#demo\n"
    path = write(tmp_path, ini)
    assert run(["inspect", path], capsys)[0] == 0
    status, out, _ = run(["inspect", path, "--strict"], capsys)
    assert status == 1
    assert "0 errors, 1 warning\n" in out


def test_command_subprocess(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(COMMAND), "inspect", write(tmp_path, CLEAN), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["app"]["filters"][0]["options"] == {"tag": "1"}


# --- the bundled examples ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ini", "name", "warnings"),
    [
        pytest.param("api-paste.ini", "main", 1, id="api-paste"),
        pytest.param("neutron-style.ini", "neutron", 1, id="neutron-style"),
        pytest.param("minimal.ini", "main", 0, id="minimal"),
    ],
)
def test_bundled_examples_inspect_clean(
    ini: str, name: str, warnings: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(EXAMPLES / ini)
    report = inspect_ini(path, name)
    assert report.errors == 0, report.problems
    # The only warning the examples have: noauth served by default, on purpose.
    assert report.warnings == warnings
    assert all("noauth is in a chain served by default" in p.message for p in report.problems)
    status, out, _ = run(["inspect", path, "--name", name], capsys)
    assert status == 0
    assert "noauth (selected, the ini's default):" in out or not warnings


def test_bundled_example_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["inspect"], capsys)
    assert out.startswith(f"{cli.bundled_ini_path()}: app 'main'")
    assert "/v1 -> api_v1  composite egg:middleware_kit#pipeline" in out


@pytest.mark.parametrize(
    ("ini", "settings", "path"),
    [
        pytest.param(NESTED, {}, "/v1", id="nested-noauth"),
        pytest.param(NESTED, {"auth_strategy": "keystone"}, "/v1", id="nested-keystone"),
        pytest.param(
            f"""
            [pipeline:main]
            pipeline = outer inner

            [filter:outer]
            use = {TAG}
            tag = outer
            filter-with = first

            [filter:first]
            use = {TAG}
            tag = first

            [filter-app:inner]
            paste.filter_factory = {TAG.removeprefix("call:")}
            tag = inner
            next = trail

            [app:trail]
            use = {TRAIL}
            filter-with = last

            [filter:last]
            use = {TAG}
            tag = last
            """,
            {},
            "/",
            id="filter-with-and-filter-app",
        ),
    ],
)
def test_chain_order_is_what_paste_builds(
    tmp_path: Path, ini: str, settings: dict[str, str], path: str
) -> None:
    # The tagging filters record the order requests really go through them.
    ini_path = write(tmp_path, ini)
    app = loadapp(f"config:{ini_path}", global_conf=dict(settings))
    trail = webob.Request.blank(path).get_response(app).text

    report = inspect_ini(ini_path, settings=settings)
    assert report.problems == []
    chain = report.root
    while chain.app.type == "composite":
        composite = chain.app
        if composite.routes:
            chain = next(r.chain for r in composite.routes if r.prefix == path)
        else:
            chain = next(s.chain for s in composite.strategies if s.selected)
    assert " ".join(f.options["tag"] for f in chain.filters) == trail
