"""``ip_blacklist``: allow and deny clients by address, behind trusted proxies too.

- The client address is ``REMOTE_ADDR``; when that peer is one of ``trusted_proxies``,
  it is taken from ``Forwarded`` (RFC 7239 ``for=``) or ``X-Forwarded-For``, read from
  the right, skipping trusted proxies: the first untrusted hop is the client (the
  leftmost hop when every one is trusted, the peer itself without such a header).
  These headers are ignored when the peer is not trusted. When a trusted peer sends
  both and they name different clients, one of them came from the client: 400.
- Addresses are compared as addresses: ``::ffff:10.0.0.1`` matches ``10.0.0.0/8``,
  brackets and IPv6 zone ids (``fe80::1%eth0``) are dropped.
- The client passes when the whitelist is not in force or has it, and the blacklist
  does not have it. The resolved address (canonical text, an IPv4-mapped address as
  IPv4) is put in ``environ['middleware_kit.client_addr']``.
- A denied client gets a 403 fault that does not say which list matched. A missing
  ``REMOTE_ADDR``, or one that is not an address, is a 403 with a logged warning, and
  so is a walk that reaches an ``unknown`` or obfuscated (``_name``) hop. A hop the
  walk needs that is not an address (a malformed header from a trusted proxy) is a 400.
- Verdicts are cached for one version of the lists (4096 at most, then all dropped):
  per ``REMOTE_ADDR``, and per trusted peer and forwarding header values; a malformed
  header is logged once per distinct value.
- List files are re-read when they change (inode, size or times), checked at most
  every ``reload_interval`` seconds, on a request. A file that cannot be read or has a
  bad line leaves the previous list in force and logs an error naming the file and
  the line. Write a new file and rename it over the old one, so a half-written file
  is never read.

::

    [filter:ip_blacklist]
    use = egg:middleware_kit#ip_blacklist
    blacklist = 192.0.2.0/24, 2001:db8:dead::/48
    blacklist_file = %(here)s/blocked.txt
    trusted_proxies = 10.0.0.10 10.0.0.11

Options (every entry an address or a network without host bits set, IPv4 or IPv6;
a bad one fails the load naming the option and the value):

``blacklist`` (entries separated by commas and/or white space; default none)
    Clients denied.
``whitelist`` (same; default none: every client may pass)
    When set, or ``whitelist_file`` is, only these clients may pass (minus the blacklist).
``blacklist_file``, ``whitelist_file`` (paths, relative to the ini's directory; default none)
    One entry a line, ``#`` comments and blank lines allowed; added to the option's
    entries. A missing or bad file fails the load; so does a whitelist file without
    entries (it would deny everyone).
``trusted_proxies`` (entries like ``blacklist``; default none)
    The load balancers whose forwarding headers are believed.
``reload_interval`` (seconds, a number >= 0; default 5)
    How often, at most, the list files are checked for a change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path
from typing import Any

from middleware_kit import fault
from middleware_kit._config import ConfigError, number, parse_options
from middleware_kit._wsgi import Environ, FilterFactory, StartResponse, WSGIApp
from middleware_kit.ip_blacklist._forwarded import (
    FORWARDED,
    UNKNOWN,
    X_FORWARDED_FOR,
    MalformedError,
    clients_named,
)
from middleware_kit.ip_blacklist._lists import (
    DENIED,
    Lists,
    Rules,
    Trusted,
    Verdict,
    list_file_parser,
)
from middleware_kit.ip_blacklist._networks import (
    Network,
    NetworkSet,
    format_address,
    parse_address,
    parse_entries,
    parse_network,
)

LOG = logging.getLogger(__name__)

# Read by ratelimit (key = ip) and the demo app's /whoami.
CLIENT_ADDR_KEY = "middleware_kit.client_addr"
MALFORMED = 400
DENIED_MESSAGE = "Access denied."
MALFORMED_MESSAGE = "Malformed forwarding header."

Entry = str | Network


class IpBlacklist:
    """Deny clients by address lists; resolve the client behind trusted proxies."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        blacklist: Iterable[Entry] = (),
        whitelist: Iterable[Entry] = (),
        blacklist_file: str | PathLike[str] | None = None,
        whitelist_file: str | PathLike[str] | None = None,
        trusted_proxies: Iterable[Entry] = (),
        reload_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.trusted = NetworkSet(parse_network(entry) for entry in trusted_proxies)
        self.lists = Lists(
            blacklist=tuple(parse_network(entry) for entry in blacklist),
            whitelist=tuple(parse_network(entry) for entry in whitelist),
            blacklist_file=blacklist_file,
            whitelist_file=whitelist_file,
            reload_interval=reload_interval,
            clock=clock,
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        rules = self.lists.current()
        remote = environ.get("REMOTE_ADDR")
        verdict = rules.cache.get(remote)
        if type(verdict) is str:  # a known peer, allowed: the common case
            environ[CLIENT_ADDR_KEY] = verdict
            return self.app(environ, start_response)
        if verdict is None:
            verdict = self._judge_peer(rules, remote)
        if type(verdict) is Trusted:
            verdict = self._judge_forwarded(rules, environ, verdict)
        if type(verdict) is str:
            environ[CLIENT_ADDR_KEY] = verdict
            return self.app(environ, start_response)
        if verdict == MALFORMED:
            return fault.send_fault(environ, start_response, MALFORMED, MALFORMED_MESSAGE)
        return fault.send_fault(environ, start_response, DENIED, DENIED_MESSAGE)

    def _judge_peer(self, rules: Rules, remote: object) -> Verdict:
        address = parse_address(remote) if isinstance(remote, str) else None
        if address is None:
            LOG.warning("denied: REMOTE_ADDR %r is not an address", remote)
            return DENIED
        own = rules.decide(address)
        verdict: Verdict = own
        if address in self.trusted:
            verdict = Trusted(address, format_address(address), own)
        rules.remember(remote, verdict)
        return verdict

    def _judge_forwarded(self, rules: Rules, environ: Environ, peer: Trusted) -> Verdict:
        """The verdict on the client behind ``peer``, cached per peer and header values."""
        key = (peer.text, environ.get(FORWARDED), environ.get(X_FORWARDED_FOR))
        verdict = rules.cache.get(key)
        if verdict is None:
            verdict = self._walk(rules, environ, peer)
            rules.remember(key, verdict)
        return verdict

    def _walk(self, rules: Rules, environ: Environ, peer: Trusted) -> str | int:
        try:
            clients = clients_named(environ, self.trusted)
        except MalformedError as exc:
            LOG.info("400: a header from trusted proxy %s: %s", peer.text, exc)
            return MALFORMED
        if not clients:
            return peer.own
        if len(clients) == 2 and clients[0] != clients[1]:
            LOG.info("400: Forwarded and X-Forwarded-For from %s disagree", peer.text)
            return MALFORMED
        if clients[0] is UNKNOWN:
            LOG.warning("denied: the client behind proxy %s is unknown", peer.text)
            return DENIED
        return rules.decide(clients[0])

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> FilterFactory:
        """Paste filter factory; options and list files are checked here, at load."""
        here = Path(global_conf.get("here") or ".")
        parsers = {
            "blacklist": parse_entries,
            "whitelist": parse_entries,
            "blacklist_file": list_file_parser(here, required=False),
            "whitelist_file": list_file_parser(here, required=True),
            "trusted_proxies": parse_entries,
            "reload_interval": number(minimum=0),
        }
        options = parse_options("ip_blacklist", local_conf, parsers)

        def make(app: WSGIApp) -> WSGIApp:
            try:
                return cls(app, **options)
            except ValueError as exc:
                raise ConfigError(f"ip_blacklist: {exc}") from None

        return make


filter_factory = IpBlacklist.factory
