"""A small eventlet WSGI server for integration tests and local trials.

``serve(app, host, port)`` listens, serves with ``eventlet.wsgi`` on a green pool, logs
through ``logging`` (access lines on ``middleware_kit.server.access``) and returns
within about a second of SIGINT or SIGTERM: it stops accepting, gives requests in
flight that long to finish, and leaves. Response header names go out as the app wrote
them (no capitalizing, which costs every header). The caller monkey-patches first
(``middleware-kit serve`` does) so that clients used by the filters cooperate.

Before the app, ``guard_request_target`` answers a request whose target is not an
absolute path (``GET * HTTP/1.1``, ``GET cats HTTP/1.1``, an empty target) with a 400
fault itself: Paste's urlmap, in front of ``catch_errors`` in the example inis, would
fail an assertion on it (a bare 500). ``OPTIONS *`` gets that 400 too. An absolute-form
target (``GET http://host/v1/cats HTTP/1.1``, which eventlet leaves whole in
``PATH_INFO``) is served: the app sees its path (``/v1/cats``) in ``PATH_INFO``, and
``HTTP_HOST`` is left as the client sent it. What the HTTP parser itself rejects (a
request line it cannot read, a bad version) is answered with a status line and a JSON
fault too, not the stdlib's HTML page (sent without a status line, as HTTP/0.9).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import types
from collections.abc import Callable, Iterable

from middleware_kit import fault
from middleware_kit._wsgi import Environ, StartResponse, WSGIApp
from middleware_kit.fault import send_fault

LOG = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger(__name__ + ".access")

DEFAULT_POOL_SIZE = 1000
DEFAULT_SOCKET_TIMEOUT_S = 60.0
STOP_GRACE_S = 0.8
ACCESS_FORMAT = (
    '%(client_ip)s "%(request_line)s" %(status_code)s %(body_length)s %(wall_seconds).6f'
)
BAD_TARGET_MESSAGE = "The request target must be an absolute path."
LOGGED_TARGET_CHARS = 120
# The scheme and authority of an absolute-form target (RFC 9112, section 3.2.2).
_ABSOLUTE_FORM = re.compile(r"https?://[^/]*", re.IGNORECASE)


def serve(
    app: WSGIApp,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
    on_listen: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM. ``port`` 0 picks a free port.

    ``on_listen(host, port)`` is called once the socket listens, with the real port.
    """
    import eventlet
    import eventlet.hubs
    import eventlet.patcher
    import eventlet.wsgi
    import greenlet

    # No SO_REUSEPORT (eventlet's default on Linux): a second server on a taken port
    # must fail, not quietly share the traffic with the first.
    sock = eventlet.listen((host, port), family=_family(host), reuse_port=False)
    bound_host, bound_port = sock.getsockname()[:2]
    pool = eventlet.GreenPool(pool_size)
    if on_listen is not None:
        on_listen(bound_host, bound_port)
    LOG.info("listening on %s:%d (pool of %d)", bound_host, bound_port, pool_size)

    # The signal handler only writes a byte to a pipe (a self-pipe): Python runs it in
    # whatever green thread is current, the hub's included, where raising would kill the
    # hub. A green thread reading the pipe stops the server from a proper context.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    write = eventlet.patcher.original("os").write  # the green one would wait on the hub

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        with contextlib.suppress(OSError):  # the pipe is full: a stop is on its way
            write(wake_w, b"x")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = eventlet.spawn(
        eventlet.wsgi.server,
        sock,
        guard_request_target(app),
        custom_pool=pool,
        protocol=_fault_protocol(),
        log=ACCESS_LOG,
        log_format=ACCESS_FORMAT,
        socket_timeout=socket_timeout_s,
        debug=False,  # never send a traceback to a client
        # Header names go out as the app wrote them (they are case-insensitive).
        # eventlet's capitalizing costs each header a split, encodes and a join: served,
        # 7.5 µs a request for the full chain's five headers (benchmarks/NOTES.md).
        capitalize_response_headers=False,
    )

    def stop_on_signal() -> None:
        eventlet.hubs.trampoline(wake_r, read=True)
        LOG.info("stopping: %d request(s) in flight", pool.running())
        server.kill()

    watcher = eventlet.spawn(stop_on_signal)
    try:
        server.wait()
    except greenlet.GreenletExit:
        pass  # killed by stop_on_signal
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        watcher.kill()
        sock.close()
        with eventlet.Timeout(STOP_GRACE_S, False):
            pool.waitall()
        os.close(wake_r)
        os.close(wake_w)
        LOG.info("stopped")


def guard_request_target(app: WSGIApp) -> WSGIApp:
    """Wrap ``app``: a target that is not an absolute path gets a 400 fault, not ``app``.

    An absolute-form target reaches ``app`` with its path in ``PATH_INFO`` (and
    ``RAW_PATH_INFO``); ``OPTIONS *`` is answered 400 like any other odd target.
    """

    def guarded(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/"):
            return app(environ, start_response)
        absolute = _ABSOLUTE_FORM.match(path)
        if absolute is not None:  # what follows the authority is empty or starts with /
            environ["PATH_INFO"] = path[absolute.end() :] or "/"
            raw = _ABSOLUTE_FORM.match(environ.get("RAW_PATH_INFO", ""))
            if raw is not None:
                environ["RAW_PATH_INFO"] = raw.string[raw.end() :] or "/"
            return app(environ, start_response)
        LOG.info(
            "400 for %r %r from %s: the request target is not an absolute path",
            environ.get("REQUEST_METHOD", "")[:LOGGED_TARGET_CHARS],
            path[:LOGGED_TARGET_CHARS],
            environ.get("REMOTE_ADDR", "-"),
        )
        return send_fault(environ, start_response, 400, BAD_TARGET_MESSAGE)

    return guarded


def _fault_protocol() -> type:
    """eventlet's protocol, answering what its parser rejects with a JSON fault."""
    import eventlet.wsgi

    class FaultProtocol(eventlet.wsgi.HttpProtocol):  # type: ignore[misc]
        # The stdlib parser answers a request line it cannot read in the form of the
        # default version: as HTTP/0.9 that is a bare HTML page, without a status line.
        default_request_version = "HTTP/1.0"

        def version_string(self) -> str:  # the Server header of those answers
            return "middleware-kit"

        def send_error(self, code: int, message: str | None = None, _: object = None) -> None:
            # The stdlib's reason without the client's bytes: "Bad request syntax ('...')".
            reason = (message or "").partition(" (")[0] or fault.generic_message(code)
            self.log_error("code %d, message %s", code, message)
            body = fault.fault_body(code, reason.rstrip(".") + ".")
            self.send_response(code)
            self.send_header("Connection", "close")
            self.send_header("Content-Type", fault.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.close_connection = True

    return FaultProtocol


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
