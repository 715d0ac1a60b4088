"""Test-only paste factories: a filter that records its place in a chain."""

from __future__ import annotations

from typing import Any

from middleware_kit._wsgi import Environ, StartResponse, WSGIApp

TRAIL_KEY = "tests.trail"


def tag_filter_factory(global_conf: dict[str, Any], **local_conf: str) -> Any:
    """``tag = NAME``: appends NAME to ``environ['tests.trail']`` and to ``X-Trail``."""
    tag = local_conf["tag"]

    def make(app: WSGIApp) -> WSGIApp:
        def tagged(environ: Environ, start_response: StartResponse) -> Any:
            environ.setdefault(TRAIL_KEY, []).append(tag)

            def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                return start_response(status, [*headers, ("X-Trail", tag)], *exc)

            return app(environ, start)

        return tagged

    return make


def global_conf_app_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """An app that answers with the trail of filters it was reached through."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        body = " ".join(environ.get(TRAIL_KEY, [])).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return app
