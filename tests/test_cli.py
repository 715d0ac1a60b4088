"""The middleware-kit command: serve, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from middleware_kit.cli import IniError, _build_parser, bundled_ini_path, parse_settings
from tests.support.servers import EXAMPLES, LOOPBACK, free_port, stop_process, wait_for_port

CLI = [sys.executable, "-m", "middleware_kit.cli"]
# A record in the format `serve` logs with (cli.LOG_FORMAT starts with asctime).
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([], 60.0, id="default"),
        pytest.param(["--socket-timeout", "2.5"], 2.5, id="given"),
    ],
)
def test_serve_socket_timeout_option(args: list[str], expected: float) -> None:
    """Parsed here; that the server closes a silent client after it: tests/test_faults.py."""
    assert _build_parser().parse_args(["serve", *args]).socket_timeout == expected


def test_parse_settings() -> None:
    assert parse_settings(["auth_strategy=keystone", " a = b=c "]) == {
        "auth_strategy": "keystone",
        "a": "b=c",
    }
    with pytest.raises(IniError, match="expected KEY=VALUE"):
        parse_settings(["novalue"])


def test_bundled_ini_is_package_data() -> None:
    path = Path(bundled_ini_path())
    assert path.is_file()
    assert "[composite:api_v1]" in path.read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["serve", "/nonexistent/api-paste.ini"], "no such file", id="missing-file"),
        pytest.param(
            ["serve", str(EXAMPLES / "api-paste.ini"), "--name", "nope"],
            "No section 'nope'",
            id="unknown-section",
        ),
        pytest.param(
            ["serve", str(EXAMPLES / "api-paste.ini"), "--set", "auth_strategy=bogus"],
            "auth_strategy 'bogus' has no chain here; available strategies: keystone",
            id="unknown-strategy",
        ),
        pytest.param(["serve", "--set", "novalue"], "expected KEY=VALUE", id="bad-set"),
    ],
)
def test_errors_are_one_line_with_status_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert expected in result.stderr
    # Log records (timestamped) may come before it; nothing else may: no warnings.
    unlogged = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(unlogged) == 1
    assert unlogged[0].startswith("middleware-kit: ")


def test_bad_filter_option_is_one_line(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = sizelimit demo\n\n[filter:sizelimit]\n"
        "use = egg:middleware_kit#sizelimit\nmax_request_body_size = 12X\n\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    result = run_cli("serve", str(ini))
    assert result.returncode == 2
    unlogged = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(unlogged) == 1
    assert "max_request_body_size = '12X'" in unlogged[0]


@pytest.mark.server
def test_serve_without_ini_serves_bundled_example() -> None:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    try:
        wait_for_port(port, process, 30)
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{port}/v1/cats", headers={"X-Auth-Token": "demo:demo"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == {"cats": []}
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/v1/cats", timeout=10) as response:
            assert response.status == 204  # noauth hands out a token, as nova's did
            assert response.headers["X-Auth-Token"] == "admin:admin"
    finally:
        status = stop_process(process)
        out, err = process.communicate(timeout=5)  # also closes the pipes
    assert status == 0, err
    assert f"Serving main on http://127.0.0.1:{port}/" in out
    assert "serves chain 'noauth'" in err
