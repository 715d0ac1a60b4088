"""``noauth``: trust the caller's word for who it is (development and tests only).

Speaks nova's noauth protocol and leaves the request exactly as keystonemiddleware's
``auth_token`` leaves it after a valid project-scoped token, so that everything after
it (``context``, policy, the app) behaves the same under both:

- Every identity header a client could forge is removed first: the ones ``auth_token``
  strips (``X-Identity-Status``, ``X-User-*``, ``X-Project-*``, ``X-Domain-*``,
  ``X-Roles``, ``X-Is-Admin-Project``, ``X-Service-*``, ``X-Service-Catalog``, the
  deprecated ``X-Role``, ``X-User``, ``X-Tenant*``) and ``OpenStack-System-Scope``.
- ``X-Auth-Token: <user>:<project>`` identifies the caller; the project is the user
  when there is no ``:`` or nothing after it. The request then carries
  ``X-Identity-Status: Confirmed``, ``X-User-Id`` and ``X-User-Name`` (the user),
  ``X-Project-Id`` and ``X-Project-Name`` (the project), user and project domains
  ``default`` / ``Default``, ``X-Roles``, ``X-Is-Admin-Project`` (``True`` for admin
  users) and the deprecated aliases auth_token also sets. An empty user is a 401 fault.
- Without ``X-Auth-Token`` the answer is nova's: 204 with ``X-Auth-Token:
  <user>:<project>`` from ``X-Auth-User`` and ``X-Auth-Project-Id`` (each defaulting
  to ``admin``) and ``X-Server-Management-Url`` (the request URL without its query
  string or a trailing slash, then ``/<project>``; the path percent-encoded, a ``Host``
  that is not a host name replaced by the server's). Names that are not printable
  ASCII (or a user with ``:``) get a 400 fault: nothing is echoed as the client sent
  it.
- A WARNING at load says that every request is trusted.

::

    [filter:noauth]
    use = egg:middleware_kit#noauth
    roles = member, reader
    admin_users = admin
    admin_roles = admin, member, reader

Options:

``roles`` (role names separated by commas and/or white space; default ``member,reader``)
    The roles of every user not in ``admin_users``.
``admin_users`` (user names, same syntax; default ``admin``)
    Users given ``admin_roles`` and ``X-Is-Admin-Project: True``.
``admin_roles`` (role names, same syntax; default ``admin,member,reader``)
    The roles of ``admin_users``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from middleware_kit import fault
from middleware_kit._config import parse_options, string_list
from middleware_kit._wsgi import Environ, FilterFactory, StartResponse, WSGIApp

LOG = logging.getLogger(__name__)

TOKEN_KEY = "HTTP_X_AUTH_TOKEN"
DOMAIN_ID = "default"
DOMAIN_NAME = "Default"
DEFAULT_USER = "admin"
BAD_NAMES = "X-Auth-User and X-Auth-Project-Id must be printable ASCII, the user without ':'."
# What nova's clients send as names; anything else could not be echoed in a header.
_NAME = re.compile(r"[!-~]+")
_HOST = re.compile(r"(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_PATH_SAFE = "/~!$&'()*+,;=:@"


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


_SUFFIXES = (
    *("Domain-Id", "Domain-Name", "Project-Id", "Project-Name", "Project-Domain-Id"),
    *("Project-Domain-Name", "User-Id", "User-Name", "User-Domain-Id", "User-Domain-Name"),
    "Roles",
)
# Every identity header keystonemiddleware's auth_token strips, and OpenStack-System-Scope.
FORGEABLE_HEADERS = (
    "X-Service-Catalog",
    "X-Identity-Status",
    "X-Service-Identity-Status",
    "X-Is-Admin-Project",
    "X-Role",
    "X-User",
    "X-Tenant-Id",
    "X-Tenant-Name",
    "X-Tenant",
    *(f"X{prefix}-{suffix}" for prefix in ("", "-Service") for suffix in _SUFFIXES),
    "OpenStack-System-Scope",
)
FORGEABLE_KEYS = frozenset(map(_environ_key, FORGEABLE_HEADERS))


class NoAuth:
    """Identify the caller from ``X-Auth-Token: user:project`` without checking anything."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        roles: Iterable[str] = ("member", "reader"),
        admin_users: Iterable[str] = ("admin",),
        admin_roles: Iterable[str] = ("admin", "member", "reader"),
    ) -> None:
        self.app = app
        self.admin_users = frozenset(admin_users)
        self.user_headers = _fixed_headers(roles, admin=False)
        self.admin_headers = _fixed_headers(admin_roles, admin=True)
        LOG.warning("noauth: every request is trusted; never use this filter in production")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not FORGEABLE_KEYS.isdisjoint(environ):
            for key in FORGEABLE_KEYS.intersection(environ):
                del environ[key]
        token = environ.get(TOKEN_KEY)
        if token is None:
            return _token_answer(environ, start_response)
        user, _, project = token.partition(":")
        if not user:
            return fault.send_fault(
                environ, start_response, 401, "X-Auth-Token must be <user>:<project>."
            )
        project = project or user
        environ.update(self.admin_headers if user in self.admin_users else self.user_headers)
        environ["HTTP_X_USER_ID"] = environ["HTTP_X_USER_NAME"] = environ["HTTP_X_USER"] = user
        environ["HTTP_X_PROJECT_ID"] = environ["HTTP_X_PROJECT_NAME"] = project
        environ["HTTP_X_TENANT_ID"] = environ["HTTP_X_TENANT_NAME"] = project
        environ["HTTP_X_TENANT"] = project
        return self.app(environ, start_response)

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> FilterFactory:
        """Paste filter factory; options are parsed here, once."""
        parsers = {"roles": string_list, "admin_users": string_list, "admin_roles": string_list}
        options = parse_options("noauth", local_conf, parsers)
        return lambda app: cls(app, **options)


def _fixed_headers(roles: Iterable[str], *, admin: bool) -> dict[str, str]:
    """The headers that do not depend on the user's and project's names."""
    joined = ",".join(dict.fromkeys(roles))
    return {
        "HTTP_X_IDENTITY_STATUS": "Confirmed",
        "HTTP_X_USER_DOMAIN_ID": DOMAIN_ID,
        "HTTP_X_USER_DOMAIN_NAME": DOMAIN_NAME,
        "HTTP_X_PROJECT_DOMAIN_ID": DOMAIN_ID,
        "HTTP_X_PROJECT_DOMAIN_NAME": DOMAIN_NAME,
        "HTTP_X_ROLES": joined,
        "HTTP_X_ROLE": joined,  # deprecated alias, set by auth_token too
        "HTTP_X_IS_ADMIN_PROJECT": str(admin),
    }


def _token_answer(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """nova's noauth answer to a request without a token: 204 with the token to use.

    Plain WSGI, not webob: the request URL is rebuilt from the environ with the path
    percent-encoded, so that no byte a client sent (a control character in the query
    string or the Host, a path that is not UTF-8) reaches a response header as it came.
    """
    user = environ.get("HTTP_X_AUTH_USER", DEFAULT_USER)
    project = environ.get("HTTP_X_AUTH_PROJECT_ID", DEFAULT_USER)
    if not (_NAME.fullmatch(user) and ":" not in user and _NAME.fullmatch(project)):
        return fault.send_fault(environ, start_response, 400, BAD_NAMES)
    url = f"{_path_url(environ).rstrip('/')}/{quote(project, safe='')}"
    # No Content-Length: a 204 must not carry one (RFC 9110, 8.6).
    start_response(
        "204 No Content", [("X-Auth-Token", f"{user}:{project}"), ("X-Server-Management-Url", url)]
    )
    return []


def _path_url(environ: Environ) -> str:
    """The request URL without its query string, as webob's ``path_url`` would give it."""
    scheme = "https" if environ.get("wsgi.url_scheme") == "https" else "http"
    host = environ.get("HTTP_HOST", "")
    if not _HOST.fullmatch(host):  # absent or not a host: the server's own name
        host = f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    name, colon, port = host.rpartition(":") if not host.endswith("]") else ("", "", "")
    if colon and port == _DEFAULT_PORTS[scheme]:
        host = name
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    try:
        raw = path.encode("latin-1")  # PEP 3333: the bytes the client sent
    except UnicodeEncodeError:
        raw = path.encode("utf-8")
    return f"{scheme}://{host}{quote(raw, safe=_PATH_SAFE)}"


filter_factory = NoAuth.factory
