"""Test-only paste apps for the request_id, catch_errors, faultwrap and sizelimit server tests.

Referenced from inis as ``use = call:tests.support.apps:<factory>``; the served
subprocess runs with the repository root as its working directory and on its path, so
``tests`` is importable there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from middleware_kit._wsgi import Environ, StartResponse, WSGIApp

LOG = logging.getLogger("tests.support.apps")
CHUNK = b"x" * 8192  # above eventlet's 4 KiB write buffer: the headers go out first
SECRET = "hunter2-secret"


def logging_app_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Logs ``begin``, sleeps (a green sleep when monkey-patched), logs ``end``, then
    logs ``body`` from inside a generator body; every line names the query string."""
    pause_s = float(local_conf.get("pause_s", "0.05"))

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        marker = environ.get("QUERY_STRING", "")
        LOG.info("begin %s", marker)
        time.sleep(pause_s)
        LOG.info("end %s", marker)
        start_response("200 OK", [("Content-Type", "text/plain")])
        LOG.info("body %s", marker)
        yield marker.encode()

    return app


def raises_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Raises before ``start_response``, with a secret in the exception text."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise RuntimeError(f"boom with {SECRET}")

    return app


def raises_mid_body_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Starts a 200 (``content_length = false``: without Content-Length), sends two
    chunks, then raises."""
    with_length = local_conf.get("content_length", "true") == "true"

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        headers = [("Content-Type", "application/octet-stream")]
        if with_length:
            headers.append(("Content-Length", str(len(CHUNK) * 10)))
        start_response("200 OK", headers)
        yield CHUNK
        yield CHUNK
        raise RuntimeError(f"mid-body failure with {SECRET}")

    return app


class CodedError(Exception):
    """An exception in nova's style: ``code``, ``headers`` and ``safe`` attributes."""

    def __init__(self, message: str, code: int, headers: dict[str, str], safe: bool) -> None:
        super().__init__(message)
        self.code, self.headers, self.safe = code, headers, safe


def coded_error_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Raises :class:`CodedError` with ``code`` (default 429), ``retry_after`` (default
    7) and ``safe`` (default false) from the app section."""
    code = int(local_conf.get("code", "429"))
    headers = {"Retry-After": local_conf.get("retry_after", "7")}
    safe = local_conf.get("safe", "false") == "true"

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise CodedError(f"coded failure with {SECRET}", code, headers, safe)

    return app


def body_length_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """Reads ``wsgi.input`` 1000 bytes at a time, logs ``got N bytes`` and answers N.

    ``swallow = true``: an exception while reading is caught (the app answers what it
    got, as a careless app would). ``stream_first = true``: a generator body that sends
    a first chunk before it reads (an overflow then aborts the response).
    """
    swallow = local_conf.get("swallow", "false") == "true"
    stream_first = local_conf.get("stream_first", "false") == "true"

    def read_all(environ: Environ) -> int:
        got = 0
        try:
            while data := environ["wsgi.input"].read(1000):
                got += len(data)
        except Exception:
            LOG.info("got %d bytes, then the input raised", got)
            if not swallow:
                raise
        else:
            LOG.info("got %d bytes", got)
        return got

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        if stream_first:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield CHUNK
            yield str(read_all(environ)).encode()
            return
        got = read_all(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield str(got).encode()

    return app
