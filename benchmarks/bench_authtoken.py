"""Token auth: our ``authtoken`` beside ``keystonemiddleware.auth_token``, same options.

A real Keystone (tests/support/keystone.py) runs on a loopback port; a member token is
issued once, validated on the first call, then served from the in-process token cache
of both filters. The loop calls each pipeline of ``inis/authtoken.ini`` in process,
like benchmarks/inprocess.py. The bar: ours adds at most 5% over keystonemiddleware.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from paste.deploy import loadapp

from benchmarks import (
    FULL,
    INIS,
    QUICK,
    Counts,
    Row,
    Subject,
    base_environ,
    environ_factory,
    first_line,
    measure,
    ratio,
    summary,
)
from benchmarks.inprocess import load_problem

TITLE = "Token auth with a cached token (ns per request, in process, real Keystone)"

AUTHTOKEN_INI = INIS / "authtoken.ini"
PIPELINES = ("bare", "keystonemiddleware", "ours_authtoken")
BAR = 1.05
# keystonemiddleware warns about the in-process cache and the plugin options on every load.
QUIET_LOGGERS = ("keystonemiddleware", "keystoneauth")


def _keystone_reason(quick: bool) -> str | None:
    """Why Keystone cannot run here, or None. Quick mode never installs it."""
    from tests.support import keystone

    if quick and not (keystone.venv_dir() / keystone.READY_MARKER).is_file():
        return f"Keystone's venv is not built yet ({keystone.venv_dir()}); the full run builds it"
    return keystone.keystone_available()


def run(quick: bool = False, *, counts: Counts | None = None) -> list[Row]:
    from tests.support import keystone

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    reason = _keystone_reason(quick)
    if reason is not None:
        return [{"pipeline": p, "status": f"skipped: {reason}"} for p in PIPELINES]
    try:
        server = keystone.start_keystone()
    except (RuntimeError, OSError) as exc:
        return [{"pipeline": p, "status": f"skipped: {first_line(exc)}"} for p in PIPELINES]
    try:
        token, _body = server.issue_token(
            server.member_username, server.member_password, server.project_name
        )
        global_conf = {
            "keystone_auth_url": server.auth_url,
            "keystone_username": server.service_username,
            "keystone_password": server.service_password,
            "keystone_project_name": server.service_project_name,
        }
        return _measure(token, global_conf, counts or (QUICK if quick else FULL))
    finally:
        server.close()


def _measure(token: str, global_conf: dict[str, str], counts: Counts) -> list[Row]:
    subjects: list[Subject] = []
    problems: dict[str, str] = {}
    for section in PIPELINES:
        try:
            app = loadapp(f"config:{AUTHTOKEN_INI}", name=section, global_conf=global_conf)
        except Exception as exc:  # any load failure becomes a row, the run goes on
            problems[section] = load_problem(exc)
            continue
        fresh = environ_factory(base_environ("GET", token=token))
        subjects.append(Subject(section, "GET", app, fresh))
    samples = measure(subjects, counts)
    by_name = {s.name: s for s in subjects}
    bare = samples.get(("bare", "GET"))
    rows: list[Row] = []
    for section in PIPELINES:
        if section in problems:
            rows.append({"pipeline": section, "status": problems[section]})
            continue
        median, low, high = summary(samples[section, "GET"])
        rows.append(
            {
                "pipeline": section,
                "median ns": median,
                "overhead ns": median - summary(bare)[0] if bare else None,
                "min ns": low,
                "max ns": high,
                "loops x repeats": f"{by_name[section].loops} x {counts.repeats}",
                "status": by_name[section].status,
            }
        )
    return rows


def summarize(rows: Sequence[Row]) -> list[Row]:
    by_name = {r["pipeline"]: r for r in rows}
    value = ratio(
        by_name.get("ours_authtoken", {}).get("overhead ns"),
        by_name.get("keystonemiddleware", {}).get("overhead ns"),
    )
    return [{"comparison": "authtoken / keystonemiddleware (overhead)", "ratio": value}]


def bars(rows: Sequence[Row]) -> list[Row]:
    by_name = {r["pipeline"]: r for r in rows}
    ours = by_name.get("ours_authtoken", {})
    value = summarize(rows)[0]["ratio"]
    good = all(str(by_name.get(p, {}).get("status", "")).startswith("200") for p in PIPELINES)
    if not isinstance(value, float):
        verdict, measured = "N/A", str(ours.get("status", "not run"))
    elif not good:
        verdict, measured = "FAIL", f"{value:.3f}x but not every pipeline answered 200"
    else:
        verdict, measured = ("PASS" if value <= BAR else "FAIL"), f"{value:.3f}x"
    return [
        {
            "bar": f"authtoken adds at most {BAR - 1:.0%} over keystonemiddleware.auth_token",
            "measured": measured,
            "result": verdict,
            "owner": "ours_authtoken",
        }
    ]
