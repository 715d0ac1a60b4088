"""The chains the robustness tests (faults, load, hostile input, fuzz) run.

``CHAIN`` is the one line to change when more filters land: every robustness test
builds it, served (``chain_ini``) or in-process (``build_chain``), with the options of
``OPTIONS``. Filters are found through their ``paste.filter_factory`` entry points, as
PasteDeploy finds them for ``egg:middleware_kit#<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata

from middleware_kit._wsgi import WSGIApp

# Outermost first, the app excluded.
CHAIN = "catch_errors request_id faultwrap sizelimit ip_blacklist noauth context ratelimit"

# Small, so that generated bodies cross it.
MAX_REQUEST_BODY_SIZE = 512
# TEST-NET-1 denied; one trusted proxy, whose forwarding headers are believed.
BLACKLIST = "192.0.2.0/24"
TRUSTED_PROXY = "10.0.0.1"
# GET /dogs: LIMITED_GETS an hour per user, so that 429s come early; POSTs unlimited
# in practice. The counts live in ``memory://`` unless a test gives a storage_url.
LIMITED_GETS = 5
RATE_LIMITS = f'(GET, "/dogs", ^/dogs, {LIMITED_GETS}, HOUR);(POST, "*", .*, 1000000, MINUTE)'

# Options of each filter, as an ini's [filter:<name>] section would give them.
OPTIONS: dict[str, dict[str, str]] = {
    "sizelimit": {"max_request_body_size": str(MAX_REQUEST_BODY_SIZE)},
    "ip_blacklist": {"blacklist": BLACKLIST, "trusted_proxies": TRUSTED_PROXY},
    "ratelimit": {"limits": RATE_LIMITS},
}


def ratelimit_options(url: str, **more: str) -> dict[str, str]:
    """ratelimit's OPTIONS counting in the storage at ``url``. memcached:// counts at
    most 10,000 a window: there the "unlimited" POST rule is 10,000 a second."""
    options = {**OPTIONS["ratelimit"], "storage_url": url, **more}
    if url.startswith("memcached:"):
        options["limits"] = RATE_LIMITS.replace("1000000, MINUTE", "10000, SECOND")
    return options


# The same with Keystone: authtoken in noauth's place.
KEYSTONE_CHAIN = CHAIN.replace("noauth", "authtoken")


def keystone_options(authtoken_settings: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """OPTIONS plus authtoken's (``KeystoneServer.authtoken_settings()``), failing fast."""
    timeouts = {"http_connect_timeout": "3", "http_request_max_retries": "0"}
    return {**OPTIONS, "authtoken": {**authtoken_settings, **timeouts}}


def names(chain: str = CHAIN) -> list[str]:
    return chain.split()


# What a legitimate client of CHAIN sends on every request (noauth wants a token).
CLIENT_HEADERS: dict[str, str] = {"X-Auth-Token": "demo:demo"} if "noauth" in names() else {}
CLIENT_HEADER_LINES = b"".join(f"{k}: {v}\r\n".encode() for k, v in CLIENT_HEADERS.items())


def build_chain(
    app: WSGIApp,
    chain: str = CHAIN,
    options: Mapping[str, Mapping[str, str]] | None = None,
) -> WSGIApp:
    """``app`` wrapped in the filters of ``chain`` (the first listed is outermost)."""
    options = OPTIONS if options is None else options
    # Ours only: oslo.middleware registers names of its own (request_id, sizelimit ...).
    factories = {
        ep.name: ep
        for ep in metadata.entry_points(group="paste.filter_factory")
        if ep.value.startswith("middleware_kit.")
    }
    for name in reversed(names(chain)):
        make_filter = factories[name].load()({}, **options.get(name, {}))
        app = make_filter(app)
    return app


def filter_sections(
    chain: str = CHAIN, options: Mapping[str, Mapping[str, str]] | None = None
) -> str:
    """The ``[filter:<name>]`` sections of an ini for ``chain``."""
    options = OPTIONS if options is None else options
    lines: list[str] = []
    for name in names(chain):
        lines += ["", f"[filter:{name}]", f"use = egg:middleware_kit#{name}"]
        lines += [f"{key} = {value}" for key, value in options.get(name, {}).items()]
    return "\n".join(lines) + "\n"


def chain_ini(
    app_use: str = "egg:middleware_kit#demo",
    chain: str = CHAIN,
    options: Mapping[str, Mapping[str, str]] | None = None,
    *,
    mounts: Mapping[str, str] | None = None,
) -> str:
    """An ini whose ``main`` is ``chain`` in front of ``app_use``: the chain outermost.

    ``mounts`` (``{"/_stats": "call:..."}``) puts a Paste urlmap in front instead, with
    the chain at ``/`` and each mount a bare app beside it: test instruments, not part
    of what is tested.
    """
    if mounts:
        lines = ["[composite:main]", "use = egg:Paste#urlmap", "/ = api"]
        lines += [f"{prefix} = mount{i}" for i, prefix in enumerate(mounts)]
        lines += ["", "[pipeline:api]", f"pipeline = {chain} app"]
        for i, use in enumerate(mounts.values()):
            lines += ["", f"[app:mount{i}]", f"use = {use}"]
    else:
        lines = ["[pipeline:main]", f"pipeline = {chain} app"]
    lines += ["", "[app:app]", f"use = {app_use}"]
    return "\n".join(lines) + "\n" + filter_sections(chain, options)
