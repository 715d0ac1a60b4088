"""Real servers for integration tests: the eventlet server, redis-server, memcached.

Each runs as a subprocess on a free loopback port, in its own process group, and is
always stopped. Tests that need a binary the machine lacks are skipped with a reason,
except under ``CI=true``, where such a skip fails the run (CI installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "paste-examples"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_binary(name: str) -> str:
    """Path of ``name``; skip the test when it is missing (fail instead under CI=true)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        reason = f"{name} is not installed (apt-get install {name}; .ci/run does)"
        if in_ci():
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listened on {LOOPBACK}:{port} within {timeout_s} s")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signal the process group, wait, kill it if it lingers; returns the exit status."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_S)
    return process.returncode


class ServedApp:
    """``middleware-kit serve`` running in a subprocess."""

    def __init__(
        self,
        ini: str | os.PathLike[str],
        *,
        name: str = "main",
        settings: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the life of the server
            prefix="served-", suffix=".log", delete=False
        )
        self.final_output: str | None = None
        self.port = free_port()
        args = [
            sys.executable,
            "-m",
            "middleware_kit.cli",
            "serve",
            str(ini),
            "--name",
            name,
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            *extra_args,
        ]
        for key, value in (settings or {}).items():
            args += ["--set", f"{key}={value}"]
        self.process = subprocess.Popen(
            args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
        )
        self.url = f"http://{LOOPBACK}:{self.port}"
        try:
            wait_for_port(self.port, self.process, START_TIMEOUT_S)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}; server output:\n{self.output()}") from None

    def output(self) -> str:
        """What the server printed and logged so far (all of it, once stopped)."""
        if self.final_output is not None:
            return self.final_output
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the server; its output stays readable, its log file is removed."""
        status = stop_process(self.process, sig)
        if self.final_output is None:
            self.final_output = self.output()
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)
        return status

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; returns status, headers (lower-cased names) and body."""
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as response:
                return (
                    response.status,
                    {k.lower(): v for k, v in response.headers.items()},
                    response.read(),
                )
        except urllib.error.HTTPError as error:
            with error:
                return (error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


@contextlib.contextmanager
def served(ini: str | os.PathLike[str], **kwargs: object) -> Iterator[ServedApp]:
    app = ServedApp(ini, **kwargs)  # type: ignore[arg-type]
    try:
        yield app
    finally:
        app.stop()


class BackgroundServer:
    """A redis-server or memcached process on a free loopback port; can be restarted."""

    def __init__(self, argv_for_port: list[str], port: int) -> None:
        self.argv = argv_for_port
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, self.process, START_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGKILL)
            self.process = None


def start_redis() -> tuple[BackgroundServer, str]:
    binary = require_binary("redis-server")
    port = free_port()
    server = BackgroundServer(
        [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"],
        port,
    )
    return server, f"redis://{LOOPBACK}:{port}/0"


def start_memcached(threads: int = 4) -> tuple[BackgroundServer, str]:
    """memcached on a free loopback port; ``threads`` worker threads (its default 4)."""
    binary = require_binary("memcached")
    port = free_port()
    argv = [binary, "-l", LOOPBACK, "-p", str(port), "-U", "0", "-m", "64", "-t", str(threads)]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    server = BackgroundServer(argv, port)
    return server, f"memcached://{LOOPBACK}:{port}"
