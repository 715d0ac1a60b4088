"""The contract floor: what the full noauth chain must leave behind, in one function.

Benchmark-only. One plain WSGI function does the work the eight filters' contracts
require of a GET that passes, and nothing else: no check, no parsing, no option, no
error path. It stores a request id (and makes it current for logging), the client
address, the identity headers noauth sets, a RequestContext made oslo.context's current
one, a count in the memory storage with the ratelimit state in the environ, and answers
the three headers (``x-openstack-request-id``, ``RateLimit-Policy``, ``RateLimit``).

Served beside the chain (``served.py``, full runs), it shows how much of the chain's
cost the contracts themselves fix: no implementation of them can cost less than this.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from oslo_context import context as oslo_context

from middleware_kit.context import RequestContext
from middleware_kit.ratelimit.memory import MemoryStorage
from middleware_kit.request_id import _CURRENT, new_request_id

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

LIMIT = 1_000_000_000
WINDOW_MS = 60_000
# What noauth sets whatever the user: the same values as its defaults.
FIXED_IDENTITY = {
    "HTTP_X_IDENTITY_STATUS": "Confirmed",
    "HTTP_X_USER_DOMAIN_ID": "default",
    "HTTP_X_USER_DOMAIN_NAME": "Default",
    "HTTP_X_PROJECT_DOMAIN_ID": "default",
    "HTTP_X_PROJECT_DOMAIN_NAME": "Default",
    "HTTP_X_ROLES": "member,reader",
    "HTTP_X_ROLE": "member,reader",
    "HTTP_X_IS_ADMIN_PROJECT": "False",
}
VIEW = {"verb": "*", "uri": "*", "regex": ".*", "value": LIMIT, "unit": "MINUTE"}
POLICY = f'"any-minute";q={LIMIT};w=60'


def filter_factory(global_conf: dict[str, Any], **local_conf: str) -> Callable[[WSGIApp], WSGIApp]:
    """``paste.filter_factory = benchmarks.floor:filter_factory``."""
    storage = MemoryStorage()

    def wrap(app: WSGIApp) -> WSGIApp:
        def floor(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            request_id = environ["openstack.request_id"] = new_request_id()
            address = environ["middleware_kit.client_addr"] = environ["REMOTE_ADDR"]
            token = environ["HTTP_X_AUTH_TOKEN"]
            user, _, project = token.partition(":")
            environ.update(FIXED_IDENTITY)
            environ["HTTP_X_USER_ID"] = environ["HTTP_X_USER_NAME"] = environ["HTTP_X_USER"] = user
            environ["HTTP_X_PROJECT_ID"] = environ["HTTP_X_PROJECT_NAME"] = project
            environ["HTTP_X_TENANT_ID"] = environ["HTTP_X_TENANT_NAME"] = project
            environ["HTTP_X_TENANT"] = project
            context = RequestContext.__new__(RequestContext)
            context.__dict__ = {
                "auth_token": token,
                "user_id": user,
                "project_id": project,
                "project_name": project,
                "user_name": user,
                "user_domain_id": "default",
                "user_domain_name": "Default",
                "project_domain_id": "default",
                "project_domain_name": "Default",
                "request_id": request_id,
                "roles": ["member", "reader"],
                "service_roles": [],
                "is_admin_project": False,
                "remote_address": address,
                "service_catalog": [],
            }
            oslo_context._request_store.context = context
            environ["openstack.context"] = context
            now_ms = int(time.time() * 1000)
            _, states = storage.hit(["u:" + user], [LIMIT], [WINDOW_MS], now_ms)
            left = LIMIT - states[0][0]
            environ["middleware_kit.ratelimit"] = [{**VIEW, "remaining": left, "reset": 60}]
            added = [
                ("x-openstack-request-id", request_id),
                ("RateLimit-Policy", POLICY),
                ("RateLimit", f'"any-minute";r={left};t=60'),
            ]

            def start(status: str, headers: list[Any], exc_info: Any = None) -> Any:
                return start_response(status, [*headers, *added], exc_info)

            log_ids = _CURRENT.set((request_id, "-"))
            try:
                return app(environ, start)
            finally:
                _CURRENT.reset(log_ids)

        return floor

    return wrap
