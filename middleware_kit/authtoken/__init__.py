"""``authtoken``: Keystone token auth, keystonemiddleware's ``auth_token`` with the gaps closed.

Tokens are validated by ``keystonemiddleware.auth_token`` itself (its cache, its
memcached support, its service tokens); every keystonemiddleware option of the section
is handed to it unchanged, and options it reads from the service's own config file
(``[keystone_authtoken]``) keep working as with
``keystonemiddleware.auth_token:filter_factory``. What this filter adds:

- A client's ``OpenStack-System-Scope`` header is removed before validation:
  the request carries one only when the validated token is system-scoped.
- The identity headers keystonemiddleware leaves empty (``X-Domain-Id``,
  ``X-Domain-Name``, ``OpenStack-System-Scope`` of a project token: ``None`` in the
  environ) are removed, so the app sees only real strings.
- Its rejections use the project's fault format: 401 (no or bad token) keeps
  ``WWW-Authenticate: Keystone uri="..."``; Keystone unreachable is a 503
  ``serviceUnavailable``, also when it accepts connections and never answers or
  answers 5xx (keystonemiddleware lets those escape as exceptions). Each call to
  Keystone waits at most ``http_connect_timeout`` seconds and is retried
  ``http_request_max_retries`` times (0.5 s, 1 s, 2 s... apart).
- A token Keystone has rejected (404: keystonemiddleware's "invalid token") is
  remembered for ``invalid_token_cache_time`` seconds, by its sha256 digest only:
  the same token is then answered the same 401 (or passed on as ``Invalid``) without
  asking Keystone again, so a client repeating a bad token cannot make every request
  cost a validation. Keystone unreachable or answering 5xx is never remembered.
- An option keystonemiddleware and keystoneauth do not know fails the load, with the
  closest name; so does a value keystonemiddleware cannot convert.

``delay_auth_decision = true`` lets requests without a valid token through with
``X-Identity-Status: Invalid``; ``context`` then answers 401.

::

    [filter:authtoken]
    use = egg:middleware_kit#authtoken
    www_authenticate_uri = http://keystone.example.org:5000/v3
    auth_url = http://keystone.example.org:5000/v3
    auth_type = password
    username = nova
    password = change-me
    project_name = service
    user_domain_name = Default
    project_domain_name = Default
    memcached_servers = 127.0.0.1:11211
    http_connect_timeout = 5
    http_request_max_retries = 1
    invalid_token_cache_time = 60

Options: those of keystonemiddleware's ``auth_token`` (and of the keystoneauth plugin
named by ``auth_type``), unchanged, with keystonemiddleware's defaults; and ours:

``invalid_token_cache_time`` (seconds, a number >= 0; default 60)
    How long a rejected token is answered without Keystone; 0 turns this off.
``invalid_token_cache_size`` (a whole number >= 1; default 10000)
    Rejected tokens remembered per process; past that the oldest are forgotten.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from middleware_kit import fault
from middleware_kit._config import ConfigError, Parser, integer, number, parse_options
from middleware_kit._wsgi import Environ, FilterFactory, StartResponse, WSGIApp
from middleware_kit.authtoken._invalid_tokens import InvalidTokens

LOG = logging.getLogger(__name__)

SYSTEM_SCOPE_KEY = "HTTP_OPENSTACK_SYSTEM_SCOPE"
# keystonemiddleware writes None under these when the token has no such value.
_PROJECT_AND_DOMAIN = (
    *("DOMAIN_ID", "DOMAIN_NAME", "PROJECT_ID", "PROJECT_NAME"),
    *("PROJECT_DOMAIN_ID", "PROJECT_DOMAIN_NAME"),
)
MAYBE_NONE_KEYS = (
    SYSTEM_SCOPE_KEY,
    *("HTTP_X_TENANT_ID", "HTTP_X_TENANT_NAME", "HTTP_X_TENANT"),
    *(f"HTTP_X_{name}" for name in _PROJECT_AND_DOMAIN),
    *(f"HTTP_X_SERVICE_{name}" for name in _PROJECT_AND_DOMAIN),
)
MESSAGES = {
    401: "The request you have made requires authentication.",
    503: "The Keystone service is temporarily unavailable.",
}
# Read by keystonemiddleware's config loader, not options of its own.
LOADER_KEYS = frozenset({"oslo_config_project", "oslo_config_file", "log_name"})
# Ours, parsed here and not handed to keystonemiddleware.
OPTIONS: dict[str, Parser] = {
    "invalid_token_cache_time": number(minimum=0),
    "invalid_token_cache_size": integer(minimum=1),
}


class AuthToken:
    """keystonemiddleware's ``auth_token`` with the identity contract and our faults."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        conf: Mapping[str, str] | None = None,
        invalid_token_cache_time: float = 60.0,
        invalid_token_cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from keystonemiddleware import exceptions

        self.app = app
        self.invalid_tokens = InvalidTokens(
            ttl_s=invalid_token_cache_time, size=invalid_token_cache_size, clock=clock
        )
        try:
            protocol_class = _protocol_class()
            self.protocol = protocol_class(self._downstream, dict(conf or {}), self.invalid_tokens)
        except exceptions.ConfigurationError as exc:
            raise ConfigError(f"authtoken: {exc}") from None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ.pop(SYSTEM_SCOPE_KEY, None)
        return self.protocol(environ, start_response)  # type: ignore[no-any-return]

    def _downstream(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        get = environ.get
        for key in MAYBE_NONE_KEYS:
            if get(key, "") is None:
                del environ[key]
        return self.app(environ, start_response)

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> FilterFactory:
        """Paste filter factory: options are checked by name and handed over as they are."""
        parsers: dict[str, Parser] = {**dict.fromkeys(_known_options(), str), **OPTIONS}
        options = parse_options("authtoken", local_conf, parsers)
        ours = {name: options.pop(name) for name in OPTIONS if name in options}
        # As keystonemiddleware's filter_factory does: the global conf, then the section.
        conf = {**global_conf, **options}
        return lambda app: cls(app, conf=conf, **ours)


@functools.cache
def _protocol_class() -> type[Any]:
    """keystonemiddleware's AuthProtocol, answering its rejections in our fault format."""
    import webob
    import webob.exc
    from keystoneauth1 import exceptions as ksa
    from keystonemiddleware import auth_token

    # What keystonemiddleware lets escape when Keystone hangs or fails (a read timeout
    # is a ConnectTimeout, which it does not catch): Keystone is unavailable.
    unavailable = (
        ksa.ConnectionError,
        ksa.RequestTimeout,
        ksa.DiscoveryFailure,
        ksa.HttpServerError,
    )

    def fault_response(request: Any, code: int, headers: list[tuple[str, str]]) -> Any:
        request_id = request.environ.get(fault.REQUEST_ID_KEY)
        message = MESSAGES.get(code) or fault.generic_message(code)
        body = fault.fault_body(code, message, request_id)
        response = webob.Response(body=body, status=fault.status_line(code), headerlist=headers)
        response.headers["Content-Type"] = fault.CONTENT_TYPE
        return response

    class Protocol(auth_token.AuthProtocol):  # type: ignore[misc]
        def __init__(self, app: Any, conf: dict[str, Any], invalid: InvalidTokens) -> None:
            super().__init__(app, conf)
            self.invalid_tokens = invalid

        def fetch_token(self, token: str, allow_expired: bool = False) -> Any:
            """Its fetch_token, skipped for a token Keystone rejected not long ago."""
            key = self.invalid_tokens.key(token, allow_expired)
            if self.invalid_tokens.rejected(key):
                raise auth_token.InvalidToken("Token authorization failed (remembered)")
            try:
                return super().fetch_token(token, allow_expired=allow_expired)
            except auth_token.InvalidToken as exc:
                # Keystone's 404 for the token; not "Keystone unavailable", which
                # delay_auth_decision also turns into InvalidToken.
                if isinstance(exc.__context__, ksa.NotFound):
                    self.invalid_tokens.add(key)
                raise

        def process_request(self, request: Any) -> Any:
            try:
                return super().process_request(request)
            except webob.exc.HTTPException as exc:  # its 401 and 503
                headers = [(k, v) for k, v in exc.headers.items() if k == "WWW-Authenticate"]
                return fault_response(request, exc.code, headers)
            except unavailable as exc:
                LOG.error("authtoken: Keystone is unavailable: %s", exc)
                return fault_response(request, 503, [])

    return Protocol


@functools.cache
def _known_options() -> frozenset[str]:
    """Every option name keystonemiddleware's auth_token or a keystoneauth plugin reads."""
    from keystoneauth1 import loading
    from keystonemiddleware import auth_token

    names = set(LOADER_KEYS)
    for _group, opts in auth_token.list_opts():
        for opt in opts:
            names.update((opt.dest, opt.name.replace("-", "_")))
            names.update(old.name.replace("-", "_") for old in opt.deprecated_opts if old.name)
    for plugin in loading.get_available_plugin_names():  # those that can load here
        names.update(opt.dest for opt in loading.get_plugin_options(plugin))
    return frozenset(names)


filter_factory = AuthToken.factory
