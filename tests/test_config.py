"""The typed option parser every filter uses."""

from __future__ import annotations

import pytest

from middleware_kit import _config
from middleware_kit._config import ConfigError, integer, parse_options, shown

PARSERS = {
    "max_request_body_size": _config.byte_size,
    "fail_open": _config.boolean,
    "names": _config.string_list,
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("114688", 114688, id="bytes"),
        pytest.param("112K", 112 * 1024, id="kib"),
        pytest.param("1m", 1024**2, id="mib-lowercase"),
        pytest.param("2G", 2 * 1024**3, id="gib"),
        pytest.param(" 10KiB ", 10 * 1024, id="kib-long-form"),
        pytest.param("0", 0, id="zero"),
    ],
)
def test_byte_size_accepts(raw: str, expected: int) -> None:
    assert _config.byte_size(raw) == expected


@pytest.mark.parametrize("raw", ["", "-1", "1.5K", "12X", "K", "1 0", "0x10"])
def test_byte_size_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="size in bytes"):
        _config.byte_size(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[pytest.param(v, True, id=f"true-{v}") for v in ("true", "YES", "On", "1")],
        *[pytest.param(v, False, id=f"false-{v}") for v in ("false", "no", "OFF", "0")],
    ],
)
def test_boolean(raw: str, expected: bool) -> None:
    assert _config.boolean(raw) is expected


@pytest.mark.parametrize("raw", ["", "maybe", "2", "truthy"])
def test_boolean_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="boolean"):
        _config.boolean(raw)


def test_string_list_splits_on_commas_and_white_space() -> None:
    assert _config.string_list(" a, b\n c,,d ") == ("a", "b", "c", "d")
    assert _config.string_list("") == ()


def test_integer_and_number_ranges() -> None:
    assert _config.integer(minimum=1)("5") == 5
    with pytest.raises(ValueError, match="at least 1"):
        _config.integer(minimum=1)("0")
    with pytest.raises(ValueError, match="whole number"):
        _config.integer()("1.5")
    assert _config.number(minimum=0)("0.25") == 0.25
    with pytest.raises(ValueError, match="finite"):
        _config.number()("nan")
    with pytest.raises(ValueError, match="at most 2"):
        _config.number(maximum=2)("3")


def test_choice_is_case_insensitive() -> None:
    parse = _config.choice("draft", "legacy", "none")
    assert parse("Draft") == "draft"
    with pytest.raises(ValueError, match="one of: draft, legacy, none"):
        parse("ietf")


def test_parse_options_returns_typed_values() -> None:
    options = parse_options(
        "filter x", {"max_request_body_size": "1K", "fail_open": "no"}, PARSERS
    )
    assert options == {"max_request_body_size": 1024, "fail_open": False}


def test_bad_value_names_filter_option_and_value() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_options("filter sizelimit", {"max_request_body_size": "12X"}, PARSERS)
    message = str(caught.value)
    assert "filter sizelimit" in message
    assert "max_request_body_size" in message
    assert "'12X'" in message


def test_unknown_option_suggests_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'max_request_body_size'"):
        parse_options("filter sizelimit", {"max_request_body_sise": "1"}, PARSERS)


def test_unknown_option_without_close_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="known options: fail_open, max_request_body_size"):
        parse_options("filter sizelimit", {"zzz": "1"}, PARSERS)


def test_unknown_option_of_filter_without_options() -> None:
    with pytest.raises(ConfigError, match="takes no options"):
        parse_options("app demo", {"color": "red"}, {})


def test_passthrough_keeps_raw_strings() -> None:
    options = parse_options(
        "filter authtoken",
        {"fail_open": "yes", "auth_url": "http://127.0.0.1:5000/v3"},
        PARSERS,
        passthrough=lambda name: name == "auth_url",
    )
    assert options == {"fail_open": True, "auth_url": "http://127.0.0.1:5000/v3"}


def test_config_error_is_a_lookup_error_and_a_value_error() -> None:
    assert issubclass(ConfigError, LookupError)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        pytest.param(
            "storage_url",
            "rediss://:s3cret@r.example.org:6380/0",
            "rediss://:***@r.example.org:6380/0",
            id="url-password",
        ),
        pytest.param("storage_url", "redis://user:pw@h:1/2", "redis://user:***@h:1/2", id="user"),
        pytest.param(
            "storage_url",
            "redis+sentinel://:p@ss@a:1,b:2/mymaster/0",
            "redis+sentinel://:***@a:1,b:2/mymaster/0",
            id="at-in-password",
        ),
        pytest.param("storage_url", "redis://h:1/0", "redis://h:1/0", id="no-userinfo"),
        pytest.param("storage_url", "memcached://a:1,b:2", "memcached://a:1,b:2", id="hosts"),
        pytest.param("storage_url", "redis://user@h:1/0", "redis://user@h:1/0", id="user-only"),
        pytest.param("admin_password", "hunter2", "***", id="secret-name"),
        pytest.param("memcache_secret_key", "k", "***", id="secret-key"),
    ],
)
def test_shown_masks_secrets(name: str, raw: str, expected: str) -> None:
    assert shown(name, raw) == expected


def test_a_bad_secret_value_is_not_in_the_error() -> None:
    with pytest.raises(ConfigError, match=r"option admin_password = '\*\*\*'") as caught:
        parse_options("f", {"admin_password": "hunter2"}, {"admin_password": integer()})
    assert "hunter2" not in str(caught.value)
