"""Rate limits declared in the specs, counted in Redis when REDIS_URL is set (shared by
every worker and host) and in process memory otherwise.

Built on `limits`, the counting library under flask-limiter: the decisions are rendered
in each API's own error shape, and the chat operation turns a breach into an SSE event
rather than a 429, which flask-limiter's decorator-and-abort model cannot express.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time

import limits
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int | None  # None: not read (see RateLimiter.check)
    retry_after: int  # seconds until a request would be allowed again (0 when allowed)

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@functools.lru_cache(maxsize=64)
def parse_limit(limit: str) -> limits.RateLimitItem:
    return limits.parse(limit)  # ~5 µs of regex work per call otherwise


class RateLimiter:
    def __init__(self, redis_url: str | None):
        self.storage = storage_from_string(redis_url or "memory://")
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)

    def hit(self, limit: str, *identifiers: str, cost: int = 1) -> Decision:
        """Counts one request against `limit` ("5/hour") for the given identity."""
        return self._window(limit, *identifiers, allowed=self._consume(limit, *identifiers, cost=cost))

    def check(self, limit: str, *identifiers: str) -> Decision:
        """As hit(), but an allowed request's remaining budget is not read (None)."""
        if self._consume(limit, *identifiers):
            return Decision(True, parse_limit(limit).amount, None, 0)
        return self._window(limit, *identifiers, allowed=False)

    def _consume(self, limit: str, *identifiers: str, cost: int = 1) -> bool:
        """Counts one request; only whether it was allowed (one storage round trip)."""
        return self.strategy.hit(parse_limit(limit), *identifiers, cost=cost)

    def _window(self, limit: str, *identifiers: str, allowed: bool) -> Decision:
        """The window's state after a request that was `allowed` or not."""
        item = parse_limit(limit)
        stats = self.strategy.get_window_stats(item, *identifiers)
        retry_after = 0 if allowed else max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, item.amount, max(0, stats.remaining), retry_after)
