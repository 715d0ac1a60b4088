"""A real Keystone for integration tests, served by gunicorn on a free loopback port.

Keystone runs from its own virtual environment, built on first use in the cache
directory (``$MIDDLEWARE_KIT_CACHE``, else ``$XDG_CACHE_HOME/middleware_kit``, else
``~/.cache/middleware_kit``) and reused afterwards. Each server gets a temporary
directory holding keystone.conf, the sqlite database, the fernet and credential keys
and the logs, and is provisioned with a member user on a demo project and a service
user, so authtoken tests have real tokens to validate.

Use the session fixture (``from tests.support.keystone import keystone  # noqa: F401``
in a conftest) or ``start_keystone()``. When Keystone cannot be installed the fixture
skips with the reason, except under ``CI=true``, where it fails. KEYSTONE.md has notes.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import grp
import json
import logging
import os
import pwd
import secrets
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
from typing import IO, Any

import pytest

LOG = logging.getLogger(__name__)

KEYSTONE_SERIES = "30"
KEYSTONE_REQUIREMENT = "keystone>=30,<31"
LOOPBACK = "127.0.0.1"
DEFAULT_DOMAIN_ID = "default"  # created by `keystone-manage bootstrap`
READY_MARKER = "middleware-kit-ready"  # written last: a venv without it is half-built
WSGI_MODULE = Path(__file__).with_name("keystone_wsgi.py")

INSTALL_TIMEOUT_S = 600.0
MANAGE_TIMEOUT_S = 120.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 30.0

# Never send loopback requests through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CONFIG_TEMPLATE = """\
[DEFAULT]
log_dir = {workdir}
log_file = keystone.log
use_stderr = false

[database]
connection = sqlite:///{workdir}/keystone.db

[token]
provider = fernet

[fernet_tokens]
key_repository = {workdir}/fernet-keys

[fernet_receipts]
key_repository = {workdir}/fernet-keys

[credential]
key_repository = {workdir}/credential-keys

[resource]
# Without these every project is the admin project (X-Is-Admin-Project: True).
admin_project_name = admin
admin_project_domain_name = Default

[identity]
# The cheapest bcrypt cost Keystone accepts: tests issue many tokens.
password_hash_rounds = 4
"""


class KeystoneUnavailableError(RuntimeError):
    """Keystone cannot be installed here (no package index, no venv support...)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def cache_dir() -> Path:
    explicit = os.environ.get("MIDDLEWARE_KIT_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "middleware_kit"


def venv_dir() -> Path:
    return cache_dir() / f"keystone-venv-{KEYSTONE_SERIES}"


def ensure_keystone_venv() -> Path:
    """Keystone's virtual environment, installed on first use; raises KeystoneUnavailableError."""
    venv = venv_dir()
    if (venv / READY_MARKER).is_file():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    # A concurrent test process may be building it: wait for its lock, then look again.
    with _file_lock(venv.with_name(venv.name + ".lock"), INSTALL_TIMEOUT_S + 60):
        if not (venv / READY_MARKER).is_file():
            _build_venv(venv)
    return venv


@functools.cache
def keystone_available() -> str | None:
    """None when Keystone can run here, else the reason (installs it on first call)."""
    try:
        venv = ensure_keystone_venv()
    except KeystoneUnavailableError as exc:
        return str(exc)
    missing = [name for name in ("gunicorn", "keystone-manage") if not _bin(venv, name).exists()]
    if missing:
        return f"{venv} lacks {', '.join(missing)}; delete it to reinstall"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class KeystoneServer:
    """One Keystone with its own data in a temporary directory; stop() and start() again
    keep the port, the database and the keys, so tests can simulate an outage."""

    region = "RegionOne"
    domain_name = "Default"
    admin_username = "admin"
    admin_project_name = "admin"
    member_username = "demo-user"
    project_name = "demo-project"
    service_username = "nova"
    service_project_name = "service"

    def __init__(self, venv: Path, *, port: int | None = None) -> None:
        self.venv = venv
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.auth_url = f"{self.url}/v3"
        self.workdir = Path(tempfile.mkdtemp(prefix="keystone-"))
        self.config_file = self.workdir / "keystone.conf"
        self.log_file = self.workdir / "keystone.log"
        self.access_log = self.workdir / "access.log"
        self.server_log = self.workdir / "gunicorn.log"
        self.admin_password = secrets.token_urlsafe(12)
        self.member_password = secrets.token_urlsafe(12)
        self.service_password = secrets.token_urlsafe(12)
        # Filled in by provision().
        self.project_id = ""
        self.member_user_id = ""
        self.service_project_id = ""
        self.service_user_id = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._server_output: IO[bytes] | None = None
        self.config_file.write_text(CONFIG_TEMPLATE.format(workdir=self.workdir))
        # Copied, not put on sys.path: tests/support/keystone.py would shadow the package.
        shutil.copy(WSGI_MODULE, self.workdir / WSGI_MODULE.name)

    def setup(self) -> None:
        """Create the database and keys and bootstrap the admin user and the endpoints."""
        endpoint = self.auth_url
        self._manage("db_sync")
        owner = ("--keystone-user", _user_name(), "--keystone-group", _group_name())
        self._manage("fernet_setup", *owner)
        self._manage("credential_setup", *owner)
        self._manage(
            "bootstrap",
            "--bootstrap-region-id",
            self.region,
            "--bootstrap-admin-url",
            endpoint,
            "--bootstrap-internal-url",
            endpoint,
            "--bootstrap-public-url",
            endpoint,
            # The password comes from OS_BOOTSTRAP_PASSWORD, kept out of the process list.
        )

    def start(self) -> None:
        """Serve on ``self.port`` and wait until GET /v3 answers; no-op when running."""
        if self.process is not None and self.process.poll() is None:
            return
        self.stop()
        argv = [
            str(_bin(self.venv, "gunicorn")),
            "--bind",
            f"{LOOPBACK}:{self.port}",
            "--workers",
            "1",
            "--chdir",
            str(self.workdir),
            "--access-logfile",
            str(self.access_log),
            "--error-logfile",
            "-",
            "--timeout",
            "120",
            "--graceful-timeout",
            "2",
            "keystone_wsgi:application",
        ]
        self._server_output = self.server_log.open("ab")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._server_output,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self._env(),
            start_new_session=True,  # its own process group, so stop() reaches the worker
        )
        try:
            self._wait_ready(self.process)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate gunicorn and its worker (SIGTERM, then SIGKILL after a few seconds)."""
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                LOG.warning("keystone on port %d ignored SIGTERM; killing it", self.port)
            # Whatever is left of the group (a lingering worker) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_S)
        if self._server_output is not None:
            self._server_output.close()
            self._server_output = None

    def close(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def provision(self) -> None:
        """Create the demo project, the member user and the service user over the API."""
        admin_token, body = self.issue_token(
            self.admin_username, self.admin_password, system_scope=True
        )
        if "admin" not in {role["name"] for role in body["token"]["roles"]}:
            raise RuntimeError("bootstrap did not give the admin user the admin role on system")
        roles = self._call(admin_token, "GET", "/v3/roles", expect=200)["roles"]
        role_ids = {role["name"]: role["id"] for role in roles}

        self.project_id = self._create(admin_token, "project", {"name": self.project_name})
        self.service_project_id = self._create(
            admin_token, "project", {"name": self.service_project_name}
        )
        self.member_user_id = self._create(
            admin_token,
            "user",
            {
                "name": self.member_username,
                "password": self.member_password,
                "default_project_id": self.project_id,
            },
        )
        self.service_user_id = self._create(
            admin_token,
            "user",
            {"name": self.service_username, "password": self.service_password},
        )
        for role in ("member", "reader"):
            self._grant(admin_token, self.project_id, self.member_user_id, role_ids[role])
        self._grant(
            admin_token, self.service_project_id, self.service_user_id, role_ids["service"]
        )

    def issue_token(
        self,
        username: str,
        password: str,
        project_name: str | None = None,
        system_scope: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """POST /v3/auth/tokens for a Default-domain user: (token, response body).

        Scoped to ``project_name`` (Default domain), to the system, or unscoped."""
        domain = {"name": self.domain_name}
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": username, "password": password, "domain": domain}},
            }
        }
        if system_scope:
            auth["scope"] = {"system": {"all": True}}
        elif project_name is not None:
            auth["scope"] = {"project": {"name": project_name, "domain": domain}}
        status, headers, body = self.request("POST", "/v3/auth/tokens", body={"auth": auth})
        if status != 201:
            raise RuntimeError(f"Keystone refused a token for {username!r}: {status} {body}")
        return headers["x-subject-token"], body

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """One JSON request to this Keystone: status, headers (lower-case names), body."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if token is not None:
            all_headers["X-Auth-Token"] = token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data, all_headers, method=method)
        try:
            with _OPENER.open(req, timeout=HTTP_TIMEOUT_S) as response:
                status, raw = response.status, response.read()
                reply_headers = {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as error:
            with error:
                status, raw = error.code, error.read()
                reply_headers = {k.lower(): v for k, v in error.headers.items()}
        return status, reply_headers, json.loads(raw) if raw else None

    def access_log_count(
        self, path_substring: str, *, at_least: int = 0, timeout_s: float = 5.0
    ) -> int:
        """Access-log lines containing ``path_substring``, e.g. ``"GET /v3/auth/tokens"``.

        gunicorn logs a request just after sending the response; pass ``at_least`` to
        wait (up to ``timeout_s``) for lines of requests that have just been answered."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                lines = self.access_log.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                lines = []
            count = sum(path_substring in line for line in lines)
            if count >= at_least or time.monotonic() >= deadline:
                return count
            time.sleep(0.02)

    def token_validations(self) -> int:
        """Token validations so far, each one answered before this call counted.

        The one sync gunicorn worker logs a request before it accepts the next: once
        this ``GET /v3`` is answered, every earlier validation is in the access log, so
        the count needs no waiting."""
        assert self.request("GET", "/v3")[0] == 200
        return self.access_log_count("GET /v3/auth/tokens")

    def authtoken_settings(self) -> dict[str, str]:
        """keystonemiddleware ``[filter:authtoken]`` options for the service user."""
        return {
            "www_authenticate_uri": self.auth_url,
            "auth_url": self.auth_url,
            "auth_type": "password",
            "username": self.service_username,
            "password": self.service_password,
            "project_name": self.service_project_name,
            "user_domain_name": self.domain_name,
            "project_domain_name": self.domain_name,
            "region_name": self.region,
        }

    def log_tail(self, lines: int = 40) -> str:
        """The end of Keystone's and gunicorn's logs, for error messages."""
        parts = []
        for path in (self.log_file, self.server_log):
            with contextlib.suppress(FileNotFoundError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts) or "(no logs)"

    def _env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        }
        env["OS_KEYSTONE_CONFIG_FILES"] = str(self.config_file)
        env["OS_BOOTSTRAP_PASSWORD"] = self.admin_password
        return env

    def _manage(self, *args: str) -> None:
        argv = [str(_bin(self.venv, "keystone-manage")), "--config-file", str(self.config_file)]
        _run([*argv, *args], timeout_s=MANAGE_TIMEOUT_S, env=self._env(), cwd=self.workdir)

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"keystone exited with {process.returncode} while starting:\n"
                    + self.log_tail()
                )
            # Refused, reset or an HTTPError while Keystone loads: try again.
            with (
                contextlib.suppress(OSError),
                _OPENER.open(self.auth_url, timeout=2.0) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"keystone did not answer GET {self.auth_url} within {START_TIMEOUT_S:.0f} s:\n"
            + self.log_tail()
        )

    def _call(self, token: str, method: str, path: str, *, expect: int, body: Any = None) -> Any:
        status, _, reply = self.request(method, path, token=token, body=body)
        if status != expect:
            raise RuntimeError(f"{method} {path}: expected {expect}, got {status}: {reply}")
        return reply

    def _create(self, token: str, kind: str, fields: dict[str, Any]) -> str:
        body = {kind: {"domain_id": DEFAULT_DOMAIN_ID, **fields}}
        reply = self._call(token, "POST", f"/v3/{kind}s", expect=201, body=body)
        return str(reply[kind]["id"])

    def _grant(self, token: str, project_id: str, user_id: str, role_id: str) -> None:
        path = f"/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"
        self._call(token, "PUT", path, expect=204)


def start_keystone() -> KeystoneServer:
    """Install if needed, then start and provision a Keystone; close() it when done."""
    reason = keystone_available()
    if reason is not None:
        raise KeystoneUnavailableError(reason)
    server = KeystoneServer(venv_dir())
    try:
        started = time.monotonic()
        server.setup()
        server.start()
        server.provision()
        LOG.info("keystone ready at %s in %.1f s", server.url, time.monotonic() - started)
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def keystone() -> Iterator[KeystoneServer]:
    """The session's Keystone. A test that stops it must start() it again (try/finally)."""
    reason = keystone_available()
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI=true but Keystone cannot run: {reason}")
        pytest.skip(f"Keystone cannot run: {reason}")
    server = start_keystone()
    try:
        yield server
    finally:
        server.close()


def _user_name() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def _group_name() -> str:
    return grp.getgrgid(os.getgid()).gr_name


def _bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def _run(
    argv: Sequence[str],
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    error: type[RuntimeError] = RuntimeError,
) -> str:
    """Run a command to completion; raise ``error`` with its output's tail if it fails."""
    name = Path(argv[0]).name
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise error(f"{name} {argv[1:3]} did not finish within {timeout_s:.0f} s") from None
    except OSError as exc:
        raise error(f"{name} could not run: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise error(f"{' '.join(argv[:4])} ... exited with {done.returncode}:\n{tail}")
    return done.stdout


def _build_venv(venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)  # left half-built by a run that died
    started = time.monotonic()
    LOG.info("installing %s into %s (first run only)", KEYSTONE_REQUIREMENT, venv)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    python = str(_bin(venv, "python"))
    unavailable = KeystoneUnavailableError
    _run([sys.executable, "-m", "venv", str(venv)], timeout_s=120, env=env, error=unavailable)
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    _run(
        [*pip, KEYSTONE_REQUIREMENT, "gunicorn"],
        timeout_s=INSTALL_TIMEOUT_S,
        env=env,
        error=unavailable,
    )
    version_code = "from importlib.metadata import version; print(version('keystone'))"
    version = _run([python, "-c", version_code], timeout_s=60, env=env, error=unavailable)
    (venv / READY_MARKER).write_text(f"keystone {version.strip()}\n")
    LOG.info("installed keystone %s in %.0f s", version.strip(), time.monotonic() - started)


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise KeystoneUnavailableError(
                        f"another process held {path} for more than {timeout_s:.0f} s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
