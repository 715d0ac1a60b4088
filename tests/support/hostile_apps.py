"""Test-only paste apps that misbehave, for the fault tests.

Referenced from inis as ``use = call:tests.support.hostile_apps:<factory>``; the
served subprocess runs from the repository root, so ``tests`` is importable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from middleware_kit._wsgi import Environ, StartResponse, WSGIApp

CHUNK = b"x" * 1024


def raises_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Raises before starting the response."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("hostile: raised before start_response (password=hunter2)")

    return app


def raises_mid_body_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Starts a 200 (with or without Content-Length), sends chunks, then raises."""
    with_length = local_conf.get("content_length", "true") == "true"

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        headers = [("Content-Type", "application/octet-stream")]
        if with_length:
            headers.append(("Content-Length", str(len(CHUNK) * 10)))
        start_response("200 OK", headers)
        yield CHUNK
        yield CHUNK
        raise RuntimeError("hostile: raised in the middle of the body")

    return app


def raises_on_first_chunk_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """A generator app that calls start_response and then raises before any chunk."""

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError("hostile: raised producing the first chunk")
        yield b"never"  # pragma: no cover - makes this a generator

    return app


def non_iterable_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Starts a response and returns something that is not an iterable of bytes."""

    def app(environ: Environ, start_response: StartResponse) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return 42

    return app


def no_start_response_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Returns a body without ever calling start_response."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        return [b"a body with no status"]

    return app


def healthy_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Answers 200 with a fixed body; shows that the server still serves."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    return app


def urlmap_ini(chain: str) -> str:
    """An ini mounting every hostile app under its own prefix, each behind ``chain``."""
    apps = {
        "raises": "raises_factory",
        "midbody": "raises_mid_body_factory",
        "midbody_chunked": "raises_mid_body_factory",
        "firstchunk": "raises_on_first_chunk_factory",
        "noniterable": "non_iterable_factory",
        "nostart": "no_start_response_factory",
        "healthy": "healthy_factory",
    }
    lines = ["[composite:main]", "use = egg:Paste#urlmap"]
    lines += [f"/{name} = pipe_{name}" for name in apps]
    for name, factory in apps.items():
        lines += ["", f"[pipeline:pipe_{name}]", f"pipeline = {chain} app_{name}"]
        lines += ["", f"[app:app_{name}]", f"use = call:tests.support.hostile_apps:{factory}"]
        if name == "midbody_chunked":
            lines.append("content_length = false")
    for filter_name in chain.split():
        lines += ["", f"[filter:{filter_name}]", f"use = egg:middleware_kit#{filter_name}"]
    return "\n".join(lines) + "\n"
