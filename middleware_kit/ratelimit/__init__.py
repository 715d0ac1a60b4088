"""``ratelimit``: nova's rate-limit rules per user, shared by every process and host.

- A request matched by one or more rules of its user is counted under its key; if any
  matched rule has already admitted N requests of that key in the last window of its
  unit (a sliding log: at most N in *any* interval of that length), it is answered 429
  ``overLimit`` with ``details``, ``retryAfter`` and ``Retry-After`` (whole seconds,
  rounded up, at least 1), and no rule counts it. Unmatched requests pass untouched.
- Rules (``limits``), nova's syntax: ``(VERB, "URI", REGEX, VALUE, UNIT)`` separated by
  ``;``. The verb is a method or ``*``; the URI is only shown in messages; the regex is
  matched with ``re.match`` against the request *path* (SCRIPT_NAME + PATH_INFO, then
  ``?`` and the query string when there is one), not the full URL as nova did (where
  ``^/servers`` never matched); the unit is SECOND, MINUTE, HOUR or DAY in any case.
- ``limits.<user_id>`` replaces the rules for that ``X-User-Id`` (whatever ``key`` is).
- Responses to matched requests carry ``RateLimit-Policy`` and ``RateLimit`` (IETF draft
  structured fields: ``"post-minute";q=10;w=60`` and ``"post-minute";r=9;t=60``: ``r``
  requests left, ``t`` seconds until one more is left, i.e. until the oldest counted
  request leaves the window; with ``r=0`` the wait before a retry), and
  ``environ['middleware_kit.ratelimit']`` lists the matched rules' state (``verb, uri,
  regex, value, unit, remaining, reset``) for the app (the demo's ``/whoami`` shows it).
- The storage is consulted once per matched request: one round trip on Redis and on
  memcached for all rules (none on memcached when this process already knows a rule
  is full). When it fails or exceeds ``storage_timeout``, ``fail_open`` lets the
  request through (logging a warning at most once a minute) or answers 503; a storage
  that comes back is used again.

::

    [filter:ratelimit]
    use = egg:middleware_kit#ratelimit
    limits = (POST, "*", .*, 10, MINUTE);(GET, "*changes-since*", .*changes-since.*, 3, MINUTE)
    limits.admin-user-id =
    key = user
    storage_url = redis://127.0.0.1:6379/0

Options:

``limits`` (nova's rules; default ``120`` per ``MINUTE`` each for POST, PUT, DELETE on
    any path; empty: no limits)
``limits.<user_id>`` (nova's rules; default none) The rules of that user instead.
``key`` (``user``, ``project`` or ``ip``; default ``user``) What is counted: the
    ``X-User-Id`` (or ``X-Project-Id``) that noauth or authtoken set, the client address
    when there is none; ``ip`` the address ip_blacklist resolved, else ``REMOTE_ADDR``.
``headers`` (``draft``, ``legacy`` or ``none``; default ``draft``) ``legacy`` answers
    ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (epoch seconds) for the rule with
    the fewest requests left.
``storage_url`` (URL; default ``memory://``) ``memory://`` (this process only),
    ``memcached://host:port[,host:port...]`` (rendezvous hashing over the servers),
    ``redis://host:port/db``, ``rediss://...`` (TLS), ``redis+sentinel://host:port[,...]
    /service[/db]``. Every process pointing at the same storage shares the counts.
``storage_timeout`` (seconds; default ``0.1``) Bounds every storage call.
``fail_open`` (boolean; default ``true``) When the storage fails: let requests through
    (``true``) or answer 503 (``false``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from middleware_kit import fault
from middleware_kit._config import ConfigError, boolean, choice, number, parse_options, shown
from middleware_kit._wsgi import Environ, ExcInfo, FilterFactory, StartResponse, WSGIApp
from middleware_kit.ratelimit import answers
from middleware_kit.ratelimit import rules as _rules
from middleware_kit.ratelimit.rules import DEFAULT_RULES, Rule, parse_rules, plans
from middleware_kit.ratelimit.storage import Storage, StorageError, check_url, from_url

LOG = logging.getLogger(__name__)

# Read by apps that render a /limits view (the demo's /whoami).
ENVIRON_KEY = "middleware_kit.ratelimit"
# Set by ip_blacklist: the client address it resolved (behind trusted proxies).
CLIENT_ADDR_KEY = "middleware_kit.client_addr"
# key option -> (environ key of the identity, tag of the counter key).
KEY_HEADERS = {
    "user": ("HTTP_X_USER_ID", "u:"),
    "project": ("HTTP_X_PROJECT_ID", "p:"),
    "ip": ("", ""),
}
UNAVAILABLE = "The rate limiter's storage is unavailable; try again later."
WARN_EVERY_S = 60.0
OPTIONS = {
    "limits": parse_rules,
    "key": choice(*KEY_HEADERS),
    "headers": choice("draft", "legacy", "none"),
    "storage_url": check_url,
    "storage_timeout": number(minimum=0.001, maximum=60),
    "fail_open": boolean,
}


class RateLimit:
    """Count matched requests per key in a shared storage; answer 429 past a limit."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        limits: Iterable[Rule] = DEFAULT_RULES,
        user_limits: Mapping[str, Iterable[Rule]] | None = None,
        key: str = "user",
        headers: str = "draft",
        storage_url: str = "memory://",
        storage_timeout: float = 0.1,
        fail_open: bool = True,
        storage: Storage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        limits = tuple(limits)
        users = {user: tuple(rules) for user, rules in (user_limits or {}).items()}
        # Policy names are distinct within one rule set, the most a response shows.
        self.by_verb = plans(limits, _rules.policy_names(limits))
        self.user_by_verb = {
            user: plans(rules, _rules.policy_names(rules)) for user, rules in users.items()
        }
        self.key_header, self.key_tag = KEY_HEADERS[key]
        self.headers = headers
        self.draft_headers = headers == "draft"
        self.fail_open = fail_open
        self.clock = clock
        self.storage = storage or from_url(check_url(storage_url), storage_timeout)
        self._warned = answers.Throttle(WARN_EVERY_S)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        by_verb = self.by_verb
        if self.user_by_verb:
            by_verb = self.user_by_verb.get(environ.get("HTTP_X_USER_ID"), by_verb)  # type: ignore[arg-type]
        plan = by_verb.get(environ.get("REQUEST_METHOD", "GET")) or by_verb["*"]
        if not plan.rules:
            return self.app(environ, start_response)
        if not plan.all_match:
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            if environ.get("QUERY_STRING"):
                path += "?" + environ["QUERY_STRING"]
            plan = plan.matching(path)
            if not plan.rules:
                return self.app(environ, start_response)
        key = environ.get(self.key_header) if self.key_header else None
        if key:
            key = self.key_tag + key
        else:
            key = "ip:" + (environ.get(CLIENT_ADDR_KEY) or environ.get("REMOTE_ADDR") or "-")
        now = self.clock()
        now_ms = int(now * 1000)
        prefixes = plan.prefixes
        keys = [prefixes[0] + key] if len(prefixes) == 1 else [p + key for p in prefixes]
        try:
            admitted, states = self.storage.hit(keys, plan.limits, plan.windows_ms, now_ms)
        except StorageError as exc:
            return self._unavailable(environ, start_response, exc, now)
        views, report = [], []
        for (value, window_ms, view, name), (count, free_at) in zip(
            plan.records, states, strict=True
        ):
            left = value - count if count < value else 0
            # free_at can be a few ms after now (algorithm.stamp): never more than a window.
            reset_ms = min(free_at + window_ms - now_ms, window_ms) if count else 0
            reset_s = -(-reset_ms // 1000)
            views.append({**view, "remaining": left, "reset": reset_s})
            report.append((left, reset_ms, f"{name};r={left};t={reset_s}"))
        environ[ENVIRON_KEY] = views
        if self.draft_headers:
            state = report[0][2] if len(report) == 1 else ", ".join(item[2] for item in report)
            headers = [("RateLimit-Policy", plan.policy), ("RateLimit", state)]
        else:
            headers = answers.legacy_headers(plan, report, now) if self.headers == "legacy" else []
        if not admitted:
            return answers.deny(environ, start_response, plan, report, headers)
        if not headers:
            return self.app(environ, start_response)

        def start(
            status: str, response_headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            return start_response(status, [*response_headers, *headers], exc_info)

        return self.app(environ, start)

    def _unavailable(
        self, environ: Environ, start_response: StartResponse, exc: StorageError, now: float
    ) -> Iterable[bytes]:
        if self._warned.due(now):
            action = "letting requests through" if self.fail_open else "answering 503"
            LOG.warning("rate-limit storage unavailable (%s); %s", exc, action)
        if self.fail_open:
            return self.app(environ, start_response)
        return fault.send_fault(environ, start_response, 503, UNAVAILABLE)

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: str) -> FilterFactory:
        """Paste filter factory; options are parsed and the storage reached here, once."""
        users = {name: parse_rules for name in local_conf if name.startswith("limits.")}
        options = parse_options("ratelimit", local_conf, {**OPTIONS, **users})
        user_limits = {name[len("limits.") :]: options.pop(name) for name in users}
        if "" in user_limits:
            raise ConfigError("ratelimit: option 'limits.' names no user id")
        url = options.pop("storage_url", "memory://")
        storage = from_url(url, options.pop("storage_timeout", 0.1))
        largest = storage.max_rule_value
        rule_sets = {"limits": options.get("limits", DEFAULT_RULES)}
        rule_sets.update({f"limits.{user}": rules for user, rules in user_limits.items()})
        for option, rules in rule_sets.items():
            for rule in rules:
                if largest is not None and rule.value > largest:
                    raise ConfigError(
                        f"ratelimit: option {option!r}: {rule.value} per {rule.unit.lower()}"
                        f" ({rule.verb} {rule.regex}) is more than {url.partition(':')[0]}://"
                        f" can count (it keeps each request of a window; at most {largest});"
                        " use redis:// for larger limits"
                    )
        try:
            storage.ping()
        except StorageError as exc:
            LOG.warning(
                "ratelimit: storage %s is not usable now (%s)", shown("storage_url", url), exc
            )
        return lambda app: cls(app, user_limits=user_limits, storage=storage, **options)


filter_factory = RateLimit.factory
