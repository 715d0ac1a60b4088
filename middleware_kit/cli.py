"""The ``middleware-kit`` command.

``middleware-kit serve [INI] [--name NAME] [--host H] [--port P] [--set KEY=VALUE ...]
[--socket-timeout SECONDS]`` loads a paste ini (the bundled nova-style example when INI
is omitted) and serves it with the eventlet server; a client socket silent for
``--socket-timeout`` seconds (default 60) is closed. A problem with the ini is one line
on stderr and exit 2.

``middleware-kit inspect [INI] [--name NAME] [--set KEY=VALUE ...] [--format text|json]
[--strict]`` shows and checks what the ini builds (``middleware_kit.inspector``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from importlib import resources
from typing import Any

LOG = logging.getLogger(__name__)

EXIT_USAGE = 2
BUNDLED_INI = "api-paste.ini"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class IniError(Exception):
    """A paste ini that cannot be loaded; the message is one line for the operator."""


def bundled_ini_path(name: str = BUNDLED_INI) -> str:
    """Path of an example ini shipped inside the package."""
    return str(resources.files("middleware_kit") / "examples" / name)


def parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    """``["auth_strategy=keystone"]`` -> ``{"auth_strategy": "keystone"}``."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise IniError(f"--set {pair!r}: expected KEY=VALUE")
        settings[key.strip()] = value.strip()
    return settings


def load_app(ini: str | None, name: str, settings: dict[str, str]) -> Any:
    """Load ``name`` from ``ini`` with PasteDeploy, turning every failure into IniError."""
    from paste.deploy import loadapp

    path = os.path.abspath(ini if ini is not None else bundled_ini_path())
    if not os.path.isfile(path):
        raise IniError(f"{path}: no such file")
    try:
        return loadapp(f"config:{path}", name=name, global_conf=settings)
    except (LookupError, ValueError, ImportError, TypeError, OSError) as exc:
        # One line: the first line of the message is what names the section and option.
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IniError(f"{path}: {message}") from exc
    except Exception as exc:
        raise IniError(f"{path}: {type(exc).__name__}: {exc}") from exc


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="middleware-kit")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a paste ini with the eventlet server")
    serve.add_argument("ini", nargs="?", help="paste ini (default: the bundled nova-style one)")
    serve.add_argument("--name", default="main", help="app section to serve (default: main)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--pool-size", type=int, default=1000, help="green threads")
    serve.add_argument(
        "--socket-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="close a client socket silent for this long (default: 60)",
    )
    serve.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a global conf value, e.g. auth_strategy=keystone",
    )
    serve.add_argument("--log-level", default="INFO")
    inspect = commands.add_parser("inspect", help="show and check what a paste ini builds")
    inspect.add_argument("ini", nargs="?", help="paste ini (default: the bundled nova-style one)")
    inspect.add_argument("--name", default="main", help="app section to inspect (default: main)")
    inspect.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE"
    )
    inspect.add_argument("--format", choices=("text", "json"), default="text")
    inspect.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    return parser


def _configure_logging(level: str) -> None:
    from middleware_kit.request_id import RequestIdLogFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _serve(args: argparse.Namespace) -> int:
    # eventlet 0.40+ warns at import that it is in maintenance mode; on an operator's
    # terminal that many-line notice would bury the one line a bad ini deserves.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    # Before the app loads, so that redis, memcached and HTTP clients go green.
    eventlet.monkey_patch()
    from middleware_kit.server import serve

    app = load_app(args.ini, args.name, parse_settings(args.settings))

    def announce(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(f"Serving {args.name} on http://{shown}:{port}/", flush=True)

    serve(
        app,
        args.host,
        args.port,
        pool_size=args.pool_size,
        socket_timeout_s=args.socket_timeout,
        on_listen=announce,
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    """Print the report on stdout; no logging set-up, the report is the output."""
    from middleware_kit.inspector import UnreadableIniError, inspect_ini, render

    try:
        settings = parse_settings(args.settings)
        report = inspect_ini(args.ini or bundled_ini_path(), args.name, settings)
    except (IniError, UnreadableIniError) as exc:
        print(f"middleware-kit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(render(report, args.format))
    return report.exit_status(strict=args.strict)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "inspect":
        return _inspect(args)
    try:
        _configure_logging(args.log_level)
    except ValueError as exc:
        print(f"middleware-kit: --log-level: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "serve":
            return _serve(args)
    except IniError as exc:
        print(f"middleware-kit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the port is taken, the host is not ours, ...
        print(f"middleware-kit: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
