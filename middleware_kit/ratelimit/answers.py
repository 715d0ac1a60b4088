"""What ratelimit answers besides passing a request on: the 429, the legacy headers."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from middleware_kit import fault
from middleware_kit._wsgi import Environ, StartResponse
from middleware_kit.ratelimit.rules import Plan

LOG = logging.getLogger("middleware_kit.ratelimit")

DENIED = "This request was rate-limited."
# Per matched rule: (requests left, ms until one more is left, its RateLimit item).
Report = Sequence[tuple[int, int, str]]


def legacy_headers(plan: Plan, report: Report, now: float) -> list[tuple[str, str]]:
    """``X-RateLimit-*`` of the rule with the fewest requests left (the longest wait)."""
    i = min(range(len(report)), key=lambda i: (report[i][0], -report[i][1]))
    left, ms, _item = report[i]
    return [
        ("X-RateLimit-Limit", str(plan.rules[i].value)),
        ("X-RateLimit-Remaining", str(left)),
        ("X-RateLimit-Reset", str(math.ceil(now + ms / 1000))),
    ]


def deny(
    environ: Environ,
    start_response: StartResponse,
    plan: Plan,
    report: Report,
    headers: list[tuple[str, str]],
) -> list[bytes]:
    """429 for the rule (of those with none left) whose wait is the longest."""
    full = [i for i, (left, _ms, _item) in enumerate(report) if not left]
    i = max(full or range(len(report)), key=lambda i: report[i][1])
    rule = plan.rules[i]
    retry = str(max(1, -(-report[i][1] // 1000)))  # whole seconds, rounded up
    # DEBUG: a client hammering past its limit must not flood the logs.
    LOG.debug("rate-limited %s: %s", environ.get("REQUEST_METHOD"), rule.details)
    return fault.send_fault(
        environ,
        start_response,
        429,
        DENIED,
        headers=[("Retry-After", retry), *headers],
        extra={"details": rule.details, "retryAfter": retry},
    )


class Throttle:
    """True at most once per ``every_s`` (races between threads only repeat a warning)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.last = -math.inf

    def due(self, now: float) -> bool:
        if now - self.last < self.every_s:
            return False
        self.last = now
        return True
