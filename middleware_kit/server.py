"""A small eventlet WSGI server for integration tests and local trials.

``serve(app, host, port)`` listens, serves with ``eventlet.wsgi`` on a green pool, logs
through ``logging`` (access lines on ``middleware_kit.server.access``) and returns
within about a second of SIGINT or SIGTERM: it stops accepting, gives requests in
flight that long to finish, and leaves. The caller monkey-patches first
(``middleware-kit serve`` does) so that clients used by the filters cooperate.
"""

from __future__ import annotations

import logging
import signal
import socket
import types
from collections.abc import Callable

from middleware_kit._wsgi import WSGIApp

LOG = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger(__name__ + ".access")

DEFAULT_POOL_SIZE = 1000
DEFAULT_SOCKET_TIMEOUT_S = 60.0
STOP_GRACE_S = 0.8
ACCESS_FORMAT = (
    '%(client_ip)s "%(request_line)s" %(status_code)s %(body_length)s %(wall_seconds).6f'
)


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
    import eventlet.wsgi

    # No SO_REUSEPORT (eventlet's default on Linux): a second server on a taken port
    # must fail, not quietly share the traffic with the first.
    sock = eventlet.listen((host, port), family=_family(host), reuse_port=False)
    bound_host, bound_port = sock.getsockname()[:2]
    pool = eventlet.GreenPool(pool_size)
    if on_listen is not None:
        on_listen(bound_host, bound_port)
    LOG.info("listening on %s:%d (pool of %d)", bound_host, bound_port, pool_size)

    previous = {sig: signal.signal(sig, _raise_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = eventlet.spawn(
        eventlet.wsgi.server,
        sock,
        app,
        custom_pool=pool,
        log=ACCESS_LOG,
        log_format=ACCESS_FORMAT,
        socket_timeout=socket_timeout_s,
        debug=False,  # never send a traceback to a client
    )
    try:
        server.wait()
    except SystemExit:
        LOG.info("stopping: %d request(s) in flight", pool.running())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        with eventlet.Timeout(STOP_GRACE_S, False):
            pool.waitall()
        LOG.info("stopped")


def _raise_exit(signum: int, frame: types.FrameType | None) -> None:
    raise SystemExit(0)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
