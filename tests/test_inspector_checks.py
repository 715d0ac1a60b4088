"""middleware-kit inspect: every check, with an ini that triggers it and one that does not.

Order checks look at our filters by entry point only, so they hold whether or not the
filter modules are importable yet; the problems they assert on are warnings.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from middleware_kit.inspector import Report, inspect_ini
from middleware_kit.inspector.model import ERROR, WARNING

FILTERS = (
    "request_id catch_errors faultwrap sizelimit ratelimit noauth authtoken context ip_blacklist"
)
# One [filter:X] per filter of ours, and the demo app; a test adds its own sections.
OURS = "".join(f"\n[filter:{n}]\nuse = egg:middleware_kit#{n}\n" for n in FILTERS.split()) + (
    "\n[app:demo]\nuse = egg:middleware_kit#demo\n"
)
TAG = "use = call:tests.support.tagging:tag_filter_factory"


def inspect(tmp_path: Path, ini: str, *, ours: bool = True, **settings: str) -> Report:
    path = tmp_path / "api-paste.ini"
    path.write_text(textwrap.dedent(ini) + (OURS if ours else ""))
    return inspect_ini(str(path), "main", settings)


def messages(report: Report, severity: str) -> list[str]:
    return [p.line() for p in report.problems if p.severity == severity]


def pipeline(chain: str) -> str:
    return f"[pipeline:main]\npipeline = {chain}\n"


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        pytest.param(
            "request_id catch_errors demo",
            "catch_errors is not outermost: what request_id raises escapes it",
            id="catch_errors-not-outermost",
        ),
        pytest.param(
            "sizelimit request_id demo",
            "request_id comes after sizelimit, which can answer on their own",
            id="request_id-after-sizelimit",
        ),
        pytest.param(
            "faultwrap ip_blacklist request_id demo",
            "request_id comes after faultwrap, ip_blacklist,",
            id="request_id-after-two",
        ),
        pytest.param(
            "authtoken sizelimit demo",
            "sizelimit comes after authtoken: oversized requests are authenticated",
            id="sizelimit-after-auth",
        ),
        pytest.param(
            "context noauth demo",
            "context comes before noauth: no identity is known yet",
            id="context-before-auth",
        ),
        pytest.param(
            "noauth demo",
            "noauth is in a chain served by default (always served)",
            id="noauth-in-plain-pipeline",
        ),
    ],
)
def test_order_warning(tmp_path: Path, chain: str, expected: str) -> None:
    report = inspect(tmp_path, pipeline(chain))
    found = messages(report, WARNING)
    assert [line for line in found if expected in line], found
    assert all(line.startswith("warning [pipeline:main]: ") for line in found)


@pytest.mark.parametrize(
    "chain",
    [
        pytest.param("catch_errors request_id demo", id="catch_errors-first"),
        pytest.param("request_id sizelimit ip_blacklist demo", id="request_id-first"),
        pytest.param(
            "catch_errors request_id faultwrap sizelimit ip_blacklist authtoken context "
            "ratelimit demo",
            id="recommended-order",
        ),
        pytest.param("demo", id="app-only"),
    ],
)
def test_order_without_warnings(tmp_path: Path, chain: str) -> None:
    assert messages(inspect(tmp_path, pipeline(chain)), WARNING) == []


def test_ratelimit_per_user_before_auth(tmp_path: Path) -> None:
    ini = (
        pipeline("ratelimit authtoken demo") + "\n[filter:peruser]\nuse = ratelimit\nkey = user\n"
    )
    assert messages(inspect(tmp_path, ini), WARNING) == []  # key not set: not per user

    ini = pipeline("peruser authtoken demo") + "\n[filter:peruser]\nuse = ratelimit\nkey = user\n"
    assert messages(inspect(tmp_path, ini), WARNING) == [
        "warning [pipeline:main]: peruser counts per user (key = user) but comes before "
        "authtoken: no user is known yet"
    ]

    ini = pipeline("authtoken peruser demo") + "\n[filter:peruser]\nuse = ratelimit\nkey = User\n"
    assert messages(inspect(tmp_path, ini), WARNING) == []


def test_filters_of_other_packages_are_not_judged(tmp_path: Path) -> None:
    # The same names as ours, from another package: neither order nor options are checked.
    ini = """
    [pipeline:main]
    pipeline = sizelimit request_id catch noauth trail

    [filter:sizelimit]
    use = egg:oslo.middleware#sizelimit
    max_request_body_size = not-a-size

    [filter:request_id]
    use = egg:oslo.middleware#request_id

    [filter:catch]
    use = egg:oslo.middleware#catch_errors

    [filter:noauth]
    paste.filter_factory = some.package:NoAuth.factory

    [app:trail]
    use = call:tests.support.tagging:global_conf_app_factory
    """
    report = inspect(tmp_path, ini, ours=False)
    assert report.problems == []
    assert [f.ours for f in report.root.filters] == [None, None, None, None]


DEFAULT_NOAUTH = """
[DEFAULT]
auth_strategy = {strategy}

[composite:main]
use = egg:middleware_kit#pipeline
noauth = noauth demo
keystone = authtoken demo
"""


def test_noauth_selected_by_default(tmp_path: Path) -> None:
    report = inspect(tmp_path, DEFAULT_NOAUTH.format(strategy="noauth"))
    assert messages(report, WARNING) == [
        "warning [composite:main] chain 'noauth': noauth is in a chain served by default "
        "(the ini's [DEFAULT] selects this chain): requests are not authenticated"
    ]
    # --set does not change what the ini serves by default.
    report = inspect(tmp_path, DEFAULT_NOAUTH.format(strategy="noauth"), auth_strategy="keystone")
    assert len(messages(report, WARNING)) == 1


def test_noauth_not_selected_by_default(tmp_path: Path) -> None:
    report = inspect(tmp_path, DEFAULT_NOAUTH.format(strategy="keystone"))
    assert messages(report, WARNING) == []
    report = inspect(tmp_path, DEFAULT_NOAUTH.format(strategy="keystone"), auth_strategy="noauth")
    assert messages(report, WARNING) == []
    assert report.root.app.selected == "noauth"
    assert report.root.app.selected_by_default == "keystone"


def test_nolimit_chain_with_ratelimit(tmp_path: Path) -> None:
    ini = """
    [composite:main]
    use = egg:middleware_kit#pipeline
    keystone = authtoken ratelimit demo
    keystone_nolimit = authtoken {nolimit}demo
    """
    assert messages(inspect(tmp_path, ini.format(nolimit="")), WARNING) == []
    report = inspect(tmp_path, ini.format(nolimit="ratelimit "))
    assert messages(report, WARNING) == [
        "warning [composite:main] chain 'keystone_nolimit': a _nolimit chain still has "
        "ratelimit: api_rate_limit = false does not turn rate limiting off"
    ]


TWO_CHAINS = """
[composite:main]
use = egg:middleware_kit#pipeline
keystone = one trail
noauth = trail

[filter:one]
{tag}
tag = one

[app:trail]
use = call:tests.support.tagging:global_conf_app_factory
"""


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            {"auth_strategy": "bogus"},
            "error [composite:main]: auth_strategy 'bogus' has no chain here; "
            "available strategies: keystone, noauth",
            id="unknown-strategy",
        ),
        pytest.param(
            {"api_rate_limit": "maybe"},
            "error [composite:main]: global option api_rate_limit = 'maybe': expected a boolean",
            id="bad-api-rate-limit",
        ),
    ],
)
def test_strategy_errors(tmp_path: Path, settings: dict[str, str], expected: str) -> None:
    report = inspect(tmp_path, TWO_CHAINS.format(tag=TAG), ours=False, **settings)
    assert [line for line in messages(report, ERROR) if line.startswith(expected)]
    assert report.exit_status() == 2
    assert report.root.app.selected is None


def test_known_strategy_is_clean(tmp_path: Path) -> None:
    for strategy in ("keystone", "noauth"):
        report = inspect(tmp_path, TWO_CHAINS.format(tag=TAG), ours=False, auth_strategy=strategy)
        assert report.problems == []
        assert report.exit_status(strict=True) == 0
        assert [s.name for s in report.root.app.strategies if s.selected] == [strategy]


def test_empty_chain_is_an_error(tmp_path: Path) -> None:
    ini = TWO_CHAINS.format(tag=TAG) + "\n"
    ini = ini.replace("noauth = trail", "noauth =")
    report = inspect(tmp_path, ini, ours=False)
    assert messages(report, ERROR) == [
        "error [composite:main] chain 'noauth': the chain is empty; it needs at least an app"
    ]


@pytest.mark.parametrize(
    ("ini", "expected"),
    [
        pytest.param(
            pipeline("one demo"),
            "error [pipeline:main]: 'one' does not resolve: no section [filter:one]",
            id="missing-filter-section",
        ),
        pytest.param(
            "[composite:main]\nuse = egg:Paste#urlmap\n/ = nowhere\n",
            "error [composite:main]: 'nowhere' does not resolve: no section [app:nowhere] or "
            "[composite:nowhere] or [pipeline:nowhere] or [filter-app:nowhere]",
            id="missing-app-section",
        ),
        pytest.param(
            "[app:other]\nuse = egg:middleware_kit#demo\n",
            "error [main]: 'main' does not resolve: no section [app:main]",
            id="missing-root",
        ),
        pytest.param(
            pipeline("one demo") + "[filter:one]\nuse = egg:middleware_kit#sizelimt\n",
            "error [filter:one]: 'egg:middleware_kit#sizelimt' does not resolve: unknown egg "
            "name 'sizelimt': middleware_kit has no filter entry point so named; "
            "did you mean 'sizelimit'?",
            id="typo-in-egg-name",
        ),
        pytest.param(
            pipeline("one demo") + "[filter:one]\nuse = egg:middleware_kit#demo\n",
            "has no filter entry point so named; it has: authtoken, catch_errors",
            id="app-used-as-filter",
        ),
        pytest.param(
            pipeline("one demo") + "[filter:one]\nuse = egg:no_such_dist#one\n",
            "unknown egg 'no_such_dist': no such distribution is installed",
            id="unknown-distribution",
        ),
        pytest.param(
            pipeline("one demo") + "[filter:one]\ntag = x\n",
            "error [filter:one]: 'one' does not resolve: neither 'use' nor a factory",
            id="no-factory",
        ),
        pytest.param(
            pipeline("one demo") + "[filter:one]\nuse = one\n",
            "'one' does not resolve: [filter:one] refers back to itself",
            id="cycle",
        ),
        pytest.param(
            pipeline("one demo") + "[filter:one]\nuse = shout:x\n",
            "unknown URI scheme 'shout'",
            id="unknown-scheme",
        ),
        pytest.param(
            "[pipeline:main]\npipeline = demo\nextra = 1\n",
            "error [pipeline:main]: 'main' does not resolve: settings not allowed here: extra",
            id="pipeline-extra-setting",
        ),
        pytest.param(
            "[filter-app:main]\nuse = egg:middleware_kit#sizelimit\n",
            "error [filter-app:main]: 'main' does not resolve: no 'next' setting",
            id="filter-app-without-next",
        ),
        pytest.param(
            f"[filter-app:main]\n{TAG}\nnext = demo\n",
            "error [filter-app:main]: PasteDeploy cannot load call: here",
            id="call-in-filter-app",
        ),
        pytest.param(
            "[app:main]\nuse = egg:middleware_kit#demo\nrequire = no_such_dist\n",
            "error [app:main]: require: distribution 'no_such_dist' is not installed",
            id="require",
        ),
        pytest.param(
            "[app:main]\nuse = egg:middleware_kit#demo\nx = %(nothing)s\n",
            "error [app:main]: 'main' does not resolve: Error in file",
            id="bad-interpolation",
        ),
    ],
)
def test_structural_errors(tmp_path: Path, ini: str, expected: str) -> None:
    report = inspect(tmp_path, ini)
    assert [line for line in messages(report, ERROR) if expected in line], report.problems
    assert report.exit_status() == 2


def test_option_errors_of_our_app(tmp_path: Path) -> None:
    ini = "[app:main]\nuse = egg:middleware_kit#demo\n{option}"
    report = inspect(tmp_path, ini.format(option=""), ours=False)
    assert report.problems == []
    report = inspect(tmp_path, ini.format(option="colour = blue\n"), ours=False)
    assert messages(report, ERROR) == [
        "error [app:main]: app demo: unknown option 'colour'; this filter takes no options"
    ]


def test_cannot_import_our_module(tmp_path: Path) -> None:
    ini = pipeline("one trail") + (
        "[filter:one]\npaste.filter_factory = middleware_kit.{module}:filter_factory\n"
        "[app:trail]\npaste.app_factory = middleware_kit.demo:app_factory\n"
    )
    report = inspect(tmp_path, ini.format(module="sizelimt"), ours=False)
    assert messages(report, ERROR) == [
        "error [filter:one]: cannot import middleware_kit.sizelimt:filter_factory: "
        "No module named 'middleware_kit.sizelimt'"
    ]
    assert report.root.filters[0].ours == "sizelimt"
    assert report.root.app.ours == "demo"


def test_our_factory_rejects_a_bad_size(tmp_path: Path) -> None:
    ini = pipeline("sizelimit demo").replace("sizelimit demo", "limit demo") + (
        "[filter:limit]\nuse = egg:middleware_kit#sizelimit\nmax_request_body_size = {size}\n"
    )
    report = inspect(tmp_path, ini.format(size="12X"))
    assert [line for line in messages(report, ERROR) if "max_request_body_size = '12X'" in line]
    assert all(p.section == "filter:limit" for p in report.problems if p.severity == ERROR)
    report = inspect(tmp_path, ini.format(size="12K"))
    assert not [p for p in report.problems if p.section == "filter:limit"]


def test_secret_values_are_not_in_messages(tmp_path: Path) -> None:
    ini = pipeline("limit demo") + (
        "[filter:limit]\nuse = egg:middleware_kit#sizelimit\n"
        "max_request_body_size = hunter2-secret\npassword = hunter2-secret\n"
    )
    # The bad size's message quotes the value; it is also the password, so it is masked.
    report = inspect(tmp_path, ini)
    assert [p for p in report.problems if "max_request_body_size = '***'" in p.message]
    assert all("hunter2-secret" not in p.message for p in report.problems)


def test_exit_status() -> None:
    def report(*severities: str) -> Report:
        from middleware_kit.inspector.model import Chain, Obj, Problem

        problems = [Problem(s, "app:main", "something") for s in severities]
        return Report("x.ini", "main", {}, Chain([], Obj("app", "main", None, "")), problems)

    assert (report().exit_status(), report().exit_status(strict=True)) == (0, 0)
    assert (report(WARNING).exit_status(), report(WARNING).exit_status(strict=True)) == (0, 1)
    assert report(WARNING, ERROR).exit_status() == 2
    assert report(ERROR).exit_status(strict=True) == 2
