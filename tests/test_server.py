"""The eventlet server: serves, logs access, stops cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.servers import LOOPBACK, served

pytestmark = pytest.mark.server

DEMO_ONLY = "[app:main]\nuse = egg:middleware_kit#demo\n"


@pytest.fixture
def demo_ini(tmp_path: Path) -> Path:
    path = tmp_path / "demo.ini"
    path.write_text(DEMO_ONLY)
    return path


def test_serves_and_logs_access(demo_ini: Path) -> None:
    with served(demo_ini) as server:
        status, _, body = server.request("/cats")
        assert (status, body) == (200, b'{"cats": []}')
        status, _, _ = server.request("/nowhere")
        assert status == 404
        server.stop()
        log = server.output()
    assert '"GET /cats HTTP/1.1" 200' in log
    assert '"GET /nowhere HTTP/1.1" 404' in log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_stops_promptly_with_an_idle_keepalive_connection(demo_ini: Path, sig: int) -> None:
    with served(demo_ini) as server:
        idle = socket.create_connection((LOOPBACK, server.port), timeout=5)
        idle.sendall(b"GET /cats HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        status = server.stop(sig)
        elapsed = time.monotonic() - started
        idle.close()
    assert status == 0
    # The contract is "within a second"; allow slack for a loaded machine.
    assert elapsed < 3.0, f"took {elapsed:.2f} s to stop"
    assert "stopped" in server.output()


def test_unexpected_exception_is_not_a_traceback_to_the_client(demo_ini: Path) -> None:
    with served(demo_ini) as server:
        status, _, body = server.request("/boom")
        assert status == 500
        assert b"Traceback" not in body
        assert b"secret detail" not in body
        # And the server keeps serving.
        assert server.request("/cats")[0] == 200


def test_port_in_use_is_one_line_error(demo_ini: Path) -> None:
    import subprocess
    import sys

    with served(demo_ini) as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "middleware_kit.cli",
                "serve",
                str(demo_ini),
                "--port",
                str(server.port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr
