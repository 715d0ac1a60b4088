"""Test-only paste apps that misbehave, for the fault tests.

Referenced from inis as ``use = call:tests.support.hostile_apps:<factory>``; the
served subprocess runs from the repository root, so ``tests`` is importable.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import Any

from middleware_kit._wsgi import Environ, StartResponse, WSGIApp
from tests.support.chains import filter_sections

CHUNK = b"x" * 1024


def raises_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Raises before starting the response."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("hostile: raised before start_response (password=hunter2)")

    return app


def raises_mid_body_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Starts a 200 (with or without Content-Length), sends two chunks, then raises.

    ``chunk_size`` (default 1024) below eventlet's write buffer keeps the headers unsent
    when it raises; 8192 sends them first.
    """
    with_length = local_conf.get("content_length", "true") == "true"
    chunk = b"x" * int(local_conf.get("chunk_size", str(len(CHUNK))))

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        headers = [("Content-Type", "application/octet-stream")]
        if with_length:
            headers.append(("Content-Length", str(len(chunk) * 10)))
        start_response("200 OK", headers)
        yield chunk
        yield chunk
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


def echo_length_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Reads the whole request body, answers its length; for the slow-client tests."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        body = environ["wsgi.input"].read()
        answer = str(len(body)).encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))]
        )
        return [answer]

    return app


def stats_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Answers ``{"greenlets": N}``: the live greenlets of the served process."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        import greenlet

        count = sum(isinstance(o, greenlet.greenlet) for o in gc.get_objects())
        body = json.dumps({"greenlets": count}).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def urlmap_ini(chain: str) -> str:
    """An ini mounting every hostile app under its own prefix, each behind ``chain``."""
    apps = {
        "raises": "raises_factory",
        "midbody": "raises_mid_body_factory",
        "midbody_chunked": "raises_mid_body_factory",
        "midbody_sent": "raises_mid_body_factory",
        "midbody_sent_chunked": "raises_mid_body_factory",
        "firstchunk": "raises_on_first_chunk_factory",
        "noniterable": "non_iterable_factory",
        "nostart": "no_start_response_factory",
        "healthy": "healthy_factory",
        "echo": "echo_length_factory",
    }
    lines = ["[composite:main]", "use = egg:Paste#urlmap"]
    lines += [f"/{name} = pipe_{name}" for name in apps]
    for name, factory in apps.items():
        lines += ["", f"[pipeline:pipe_{name}]", f"pipeline = {chain} app_{name}"]
        lines += ["", f"[app:app_{name}]", f"use = call:tests.support.hostile_apps:{factory}"]
        if name.endswith("_chunked"):
            lines.append("content_length = false")
        if name.startswith("midbody_sent"):
            lines.append("chunk_size = 8192")
    return "\n".join(lines) + "\n" + filter_sections(chain)
