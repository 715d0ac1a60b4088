"""The pipeline composite: chain selection and load-time errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import webob
from paste.deploy import loadapp

from middleware_kit._config import ConfigError

INI = """
[DEFAULT]
{defaults}

[composite:main]
use = egg:middleware_kit#pipeline
noauth = one two trail
keystone = two one trail
keystone_nolimit = one trail
{extra}

[filter:one]
use = call:tests.support.tagging:tag_filter_factory
tag = one

[filter:two]
use = call:tests.support.tagging:tag_filter_factory
tag = two

[app:trail]
use = call:tests.support.tagging:global_conf_app_factory
"""


def write_ini(tmp_path: Path, defaults: str = "", extra: str = "") -> str:
    path = tmp_path / "api-paste.ini"
    path.write_text(INI.format(defaults=defaults, extra=extra))
    return f"config:{path}"


def trail(app: object) -> str:
    response = webob.Request.blank("/").get_response(app)
    assert response.status_int == 200
    return str(response.text)


def test_default_strategy_is_keystone(tmp_path: Path) -> None:
    assert trail(loadapp(write_ini(tmp_path))) == "two one"


def test_strategy_from_default_section(tmp_path: Path) -> None:
    assert trail(loadapp(write_ini(tmp_path, "auth_strategy = noauth"))) == "one two"


def test_global_conf_overrides_default_section(tmp_path: Path) -> None:
    uri = write_ini(tmp_path, "auth_strategy = noauth")
    assert trail(loadapp(uri, global_conf={"auth_strategy": "keystone"})) == "two one"


def test_first_listed_filter_is_outermost(tmp_path: Path) -> None:
    response = webob.Request.blank("/").get_response(
        loadapp(write_ini(tmp_path, "auth_strategy = noauth"))
    )
    # The innermost filter adds its header first, the outermost last.
    assert response.headers.getall("X-Trail") == ["two", "one"]


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        pytest.param("false", "one", id="false"),
        pytest.param("No", "one", id="no"),
        pytest.param("OFF", "one", id="off"),
        pytest.param("0", "one", id="zero"),
        pytest.param("true", "two one", id="true"),
        pytest.param("yes", "two one", id="yes"),
    ],
)
def test_api_rate_limit_selects_nolimit_variant(tmp_path: Path, flag: str, expected: str) -> None:
    app = loadapp(write_ini(tmp_path), global_conf={"api_rate_limit": flag})
    assert trail(app) == expected


def test_nolimit_falls_back_to_strategy_without_variant(tmp_path: Path) -> None:
    uri = write_ini(tmp_path, "auth_strategy = noauth\napi_rate_limit = false")
    assert trail(loadapp(uri)) == "one two"


def test_unknown_strategy_names_section_strategy_and_choices(tmp_path: Path) -> None:
    with pytest.raises(LookupError) as caught:
        loadapp(write_ini(tmp_path), global_conf={"auth_strategy": "keystonee"})
    message = str(caught.value)
    assert "[composite:main]" in message
    assert "'keystonee'" in message
    assert "keystone, keystone_nolimit, noauth" in message


def test_bad_boolean_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"api_rate_limit = 'sometimes'.*boolean"):
        loadapp(write_ini(tmp_path), global_conf={"api_rate_limit": "sometimes"})


def test_empty_chain(tmp_path: Path) -> None:
    uri = write_ini(tmp_path, extra="hollow =")
    with pytest.raises(ConfigError, match=r"\[composite:main\]: chain 'hollow' is empty"):
        loadapp(uri, global_conf={"auth_strategy": "hollow"})


@pytest.mark.parametrize(
    ("chain", "missing"),
    [
        pytest.param("one nosuchfilter trail", "nosuchfilter", id="filter"),
        pytest.param("one nosuchapp", "nosuchapp", id="app"),
    ],
)
def test_name_that_does_not_resolve(tmp_path: Path, chain: str, missing: str) -> None:
    uri = write_ini(tmp_path, extra=f"broken = {chain}")
    with pytest.raises(ConfigError) as caught:
        loadapp(uri, global_conf={"auth_strategy": "broken"})
    assert f"'{missing}' does not resolve" in str(caught.value)
    assert "[composite:main]" in str(caught.value)


def test_unknown_egg_name_does_not_resolve(tmp_path: Path) -> None:
    extra = "broken = bogus trail\n\n[filter:bogus]\nuse = egg:middleware_kit#no_such_filter"
    with pytest.raises(ConfigError, match="'bogus' does not resolve"):
        loadapp(write_ini(tmp_path, extra=extra), global_conf={"auth_strategy": "broken"})


def test_filter_option_error_names_the_composite_and_filter(tmp_path: Path) -> None:
    extra = "broken = strict trail\n\n[filter:strict]\nuse = egg:middleware_kit#demo"
    # demo is an app, not a filter: PasteDeploy cannot load it as one.
    with pytest.raises(ConfigError, match=r"\[composite:main\] chain 'broken'"):
        loadapp(write_ini(tmp_path, extra=extra), global_conf={"auth_strategy": "broken"})


def test_app_option_error_carries_section_context(tmp_path: Path) -> None:
    extra = (
        "broken = one strictapp\n\n[app:strictapp]\nuse = egg:middleware_kit#demo\ncolour = red"
    )
    with pytest.raises(ConfigError) as caught:
        loadapp(write_ini(tmp_path, extra=extra), global_conf={"auth_strategy": "broken"})
    message = str(caught.value)
    assert "[composite:main] chain 'broken', 'strictapp'" in message
    assert "unknown option 'colour'" in message
