"""A test app for the identity tests: answers what it saw as JSON.

``{"headers": {environ key: value} for every HTTP_* key and OpenStack's own keys,
"context": <to_dict() of the context in environ, or null>}``. Referenced from inis as
``paste.app_factory = tests.support.identity_echo:app_factory`` (the served subprocess
runs with the repository root on its path).
"""

from __future__ import annotations

import json
from typing import Any

from middleware_kit._wsgi import Environ, StartResponse, WSGIApp

CONTEXT_KEYS = ("openstack.context", "nova.context", "neutron.context")
# What keystonemiddleware's auth_token sets for a valid project-scoped token (besides
# X-Service-Catalog), less the values: noauth must set exactly the same names.
PROJECT_TOKEN_KEYS = frozenset(
    {
        "HTTP_X_IDENTITY_STATUS",
        "HTTP_X_USER_ID",
        "HTTP_X_USER_NAME",
        "HTTP_X_USER_DOMAIN_ID",
        "HTTP_X_USER_DOMAIN_NAME",
        "HTTP_X_PROJECT_ID",
        "HTTP_X_PROJECT_NAME",
        "HTTP_X_PROJECT_DOMAIN_ID",
        "HTTP_X_PROJECT_DOMAIN_NAME",
        "HTTP_X_ROLES",
        "HTTP_X_IS_ADMIN_PROJECT",
        "HTTP_X_ROLE",
        "HTTP_X_USER",
        "HTTP_X_TENANT_ID",
        "HTTP_X_TENANT_NAME",
        "HTTP_X_TENANT",
    }
)


def seen(environ: Environ) -> dict[str, Any]:
    """The identity-relevant part of an environ, JSON-ready (None stays None)."""
    context = next((environ[k] for k in CONTEXT_KEYS if k in environ), None)
    return {
        "headers": {
            key: value
            for key, value in environ.items()
            if key.startswith("HTTP_") and key != "HTTP_X_SERVICE_CATALOG"
        },
        "catalog": "HTTP_X_SERVICE_CATALOG" in environ,
        "context": None if context is None else context.to_dict(),
    }


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        body = json.dumps(seen(environ), default=str).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app
