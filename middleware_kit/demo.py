"""``demo``: a small Routes-based JSON API to show and test pipelines.

Built the way nova's APIRouter is: a router over a ``routes.Mapper`` dispatching
resources to controllers. State is kept in memory, per process.

- ``GET /``: the versions document.
- ``/cats`` and ``/dogs``: resources with index (``GET``), create (``POST``), show
  (``GET /<id>``), update (``PUT /<id>``) and delete (``DELETE /<id>``). Bodies are JSON
  objects, answered as ``{"cat": {...}}`` or ``{"cats": [...]}``.
- ``GET /whoami``: what the filters put in the environ (request ids, identity headers,
  the request context with its token shown as ``***``, the client address, the
  rate-limit state).
- ``GET /boom``: raises ``RuntimeError`` on purpose, to see ``catch_errors`` and
  ``faultwrap`` at work.

Bad JSON is a 400, an unknown id or path a 404, a method a path does not take a 405 with
``Allow``; all in the project's fault format.

::

    [app:demo]
    use = egg:middleware_kit#demo

The app takes no options.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

import routes
import webob

from middleware_kit import fault
from middleware_kit._config import parse_options
from middleware_kit._wsgi import Environ, StartResponse

RESOURCES = (("cat", "cats"), ("dog", "dogs"))
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
IDENTITY_HEADERS = (
    "X-Identity-Status",
    "X-User-Id",
    "X-User-Name",
    "X-User-Domain-Id",
    "X-User-Domain-Name",
    "X-Project-Id",
    "X-Project-Name",
    "X-Project-Domain-Id",
    "X-Project-Domain-Name",
    "X-Roles",
    "X-Is-Admin-Project",
    "OpenStack-System-Scope",
)
# Where the context filter may have stored the request context (option context_key).
CONTEXT_KEYS = ("openstack.context", "nova.context", "neutron.context")
GLOBAL_REQUEST_ID_KEY = "openstack.global_request_id"
CLIENT_ADDR_KEY = "middleware_kit.client_addr"
RATELIMIT_KEY = "middleware_kit.ratelimit"
NOT_FOUND = "The resource could not be found."
MASK = "***"


class DemoError(Exception):
    """An expected failure of a request, answered as a fault."""

    def __init__(self, code: int, message: str, headers: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = list(headers)


class Collection:
    """One in-memory resource: the controller behind ``/cats`` or ``/dogs``."""

    def __init__(self, member: str, collection: str):
        self.member = member
        self.collection = collection
        self.items: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def index(self, request: webob.Request) -> tuple[int, Any]:
        return 200, {self.collection: list(self.items.values())}

    def create(self, request: webob.Request) -> tuple[int, Any]:
        item = {**_json_object(request, self.member), "id": str(next(self._ids))}
        self.items[item["id"]] = item
        return 201, {self.member: item}

    def show(self, request: webob.Request, item_id: str) -> tuple[int, Any]:
        return 200, {self.member: self._get(item_id)}

    def update(self, request: webob.Request, item_id: str) -> tuple[int, Any]:
        item = self._get(item_id)
        item.update(_json_object(request, self.member))
        item["id"] = item_id
        return 200, {self.member: item}

    def delete(self, request: webob.Request, item_id: str) -> tuple[int, Any]:
        self._get(item_id)
        del self.items[item_id]
        return 204, None

    def _get(self, item_id: str) -> dict[str, Any]:
        try:
            return self.items[item_id]
        except KeyError:
            raise DemoError(404, f"{self.member} {item_id} could not be found.") from None


def _json_object(request: webob.Request, member: str) -> dict[str, Any]:
    """The request body as a JSON object; ``{"cat": {...}}`` is unwrapped."""
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise DemoError(400, "Malformed request body: not valid JSON.") from None
    if isinstance(body, dict) and isinstance(body.get(member), dict):
        body = body[member]
    if not isinstance(body, dict):
        raise DemoError(400, "Malformed request body: expected a JSON object.")
    return body


class Demo:
    """The demo WSGI application."""

    def __init__(self) -> None:
        self.mapper = routes.Mapper()
        self.controllers: dict[str, Any] = {}
        for member, collection in RESOURCES:
            self.controllers[collection] = Collection(member, collection)
            self.mapper.resource(member, collection)
        self.controllers["meta"] = self
        self.mapper.connect("/", controller="meta", action="versions", conditions=_GET)
        self.mapper.connect("/whoami", controller="meta", action="whoami", conditions=_GET)
        self.mapper.connect("/boom", controller="meta", action="boom", conditions=_GET)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        routed = environ
        if environ.get("REQUEST_METHOD") == "HEAD":  # answered as GET without the body
            routed = {**environ, "REQUEST_METHOD": "GET"}
        match = self.mapper.routematch(environ=routed)
        if match is None:
            allowed = self._allowed_methods(environ)
            if allowed:
                headers = [("Allow", ", ".join(allowed))]
                message = f"Method {environ.get('REQUEST_METHOD')} is not allowed here."
                return fault.send_fault(environ, start_response, 405, message, headers=headers)
            return fault.send_fault(
                environ, start_response, 404, "The resource could not be found."
            )
        params = match[0]
        controller = self.controllers[params["controller"]]
        action: Callable[..., tuple[int, Any]] | None = getattr(controller, params["action"], None)
        if action is None or params["action"] in ("new", "edit"):
            return fault.send_fault(
                environ, start_response, 404, "The resource could not be found."
            )
        request = webob.Request(environ)
        try:
            args = [params["id"]] if "id" in params else []
            code, document = action(request, *args)
        except DemoError as exc:
            return fault.send_fault(
                environ, start_response, exc.code, exc.message, headers=exc.headers
            )
        return _json_response(environ, start_response, code, document)

    def versions(self, request: webob.Request) -> tuple[int, Any]:
        base = request.application_url.rstrip("/")
        return 200, {
            "versions": [
                {
                    "id": "v1.0",
                    "status": "CURRENT",
                    "links": [{"rel": "self", "href": base + "/v1/"}],
                }
            ]
        }

    def whoami(self, request: webob.Request) -> tuple[int, Any]:
        environ = request.environ
        context = next((environ[key] for key in CONTEXT_KEYS if key in environ), None)
        if context is not None and hasattr(context, "to_dict"):
            context = context.to_dict()
            if context.get("auth_token"):  # shown as present, never echoed
                context["auth_token"] = MASK
        return 200, {
            "request_id": environ.get(fault.REQUEST_ID_KEY),
            "global_request_id": environ.get(GLOBAL_REQUEST_ID_KEY),
            "identity": {
                name: request.headers[name] for name in IDENTITY_HEADERS if name in request.headers
            },
            "context": context,
            "client_addr": environ.get(CLIENT_ADDR_KEY, environ.get("REMOTE_ADDR")),
            "ratelimit": environ.get(RATELIMIT_KEY),
        }

    def boom(self, request: webob.Request) -> tuple[int, Any]:
        raise RuntimeError("demo: /boom always fails (secret detail that must not leak)")

    def _allowed_methods(self, environ: Environ) -> list[str]:
        allowed = []
        for method in METHODS:
            probe = {**environ, "REQUEST_METHOD": method}
            match = self.mapper.routematch(environ=probe)
            if match is not None and match[0]["action"] not in ("new", "edit"):
                allowed.append(method)
        if "GET" in allowed:
            allowed.insert(1, "HEAD")
        return allowed


_GET = {"method": ["GET"]}


def _json_response(
    environ: Environ, start_response: StartResponse, code: int, document: Any
) -> list[bytes]:
    body = b"" if document is None else json.dumps(document, default=str).encode()
    headers = [("Content-Length", str(len(body)))]
    if body:
        headers.append(("Content-Type", fault.CONTENT_TYPE))
    start_response(fault.status_line(code), headers)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> Demo:
    """Paste app factory."""
    parse_options("app demo", local_conf, {})
    return Demo()
