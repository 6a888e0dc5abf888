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
from limits.storage import MemoryStorage, RedisStorage, storage_from_string
from redis.exceptions import NoScriptError
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

    def hit_and_check(self, hit: tuple[str, ...], check: tuple[str, ...]) -> tuple[Decision, Decision]:
        """hit(*hit) and check(*check) (each a limit and its identifiers), on Redis in one
        round trip instead of three: the same scripts of `limits`, sent as one pipeline."""
        if not isinstance(self.storage, RedisStorage):
            return self.hit(*hit), self.check(*check)
        storage, (hit_limit, *hit_ids), (check_limit, *check_ids) = self.storage, hit, check
        first, second = parse_limit(hit_limit), parse_limit(check_limit)
        first_keys, second_keys = _window_keys(storage, first, hit_ids), _window_keys(storage, second, check_ids)
        calls = [  # (script, keys, arguments) as RedisStorage sends them
            (storage.lua_acquire_sliding_window, first_keys, [first.amount, first.get_expiry(), 1]),
            (storage.lua_sliding_window, first_keys, [first.get_expiry()]),
            (storage.lua_acquire_sliding_window, second_keys, [second.amount, second.get_expiry(), 1]),
        ]
        pipe = storage.get_connection().pipeline(transaction=False)
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results = pipe.execute(raise_on_error=False)
        for n, result in enumerate(results):
            if isinstance(result, NoScriptError):  # not loaded yet (a new or flushed Redis): it did not run
                script, keys, args = calls[n]
                results[n] = script(keys, args)  # loads the script, then runs it
            elif isinstance(result, Exception):
                raise result
        acquired, window, checked = results
        hit_decision = self._decision(first, hit_ids, bool(acquired), _window_of(window))
        if checked:
            return hit_decision, Decision(True, second.amount, None, 0)
        return hit_decision, self._window(check_limit, *check_ids, allowed=False)

    def _decision(self, item, identifiers, allowed: bool, window: tuple) -> Decision:
        """As _window(), from a window already read (RedisStorage.get_sliding_window's tuple)."""
        stats = SlidingWindowCounterRateLimiter(_ReadWindow(window)).get_window_stats(item, *identifiers)
        return _from_stats(item, stats, allowed)

    def _consume(self, limit: str, *identifiers: str, cost: int = 1) -> bool:
        """Counts one request; only whether it was allowed (one storage round trip)."""
        return self.strategy.hit(parse_limit(limit), *identifiers, cost=cost)

    def _window(self, limit: str, *identifiers: str, allowed: bool) -> Decision:
        """The window's state after a request that was `allowed` or not."""
        item = parse_limit(limit)
        return _from_stats(item, self.strategy.get_window_stats(item, *identifiers), allowed)


def _from_stats(item: limits.RateLimitItem, stats, allowed: bool) -> Decision:
    retry_after = 0 if allowed else max(1, math.ceil(stats.reset_time - time.time()))
    return Decision(allowed, item.amount, max(0, stats.remaining), retry_after)


def _window_keys(storage: RedisStorage, item: limits.RateLimitItem, identifiers) -> list[str]:
    """The previous and current window keys of a sliding window counter, as RedisStorage names them."""
    key = item.key_for(*identifiers)
    return [storage.prefixed_key(storage._previous_window_key(key)),
            storage.prefixed_key(storage._current_window_key(key))]


def _window_of(raw) -> tuple[int, float, int, float]:
    """The sliding window script's answer, read as RedisStorage.get_sliding_window reads it."""
    if not raw:
        return 0, 0.0, 0, 0.0
    return (int(raw[0] or 0), max(0, float(raw[1] or 0)) / 1000,
            int(raw[2] or 0), max(0, float(raw[3] or 0)) / 1000)


class _ReadWindow(MemoryStorage):
    """Answers get_sliding_window with a window already read, so the strategy's own
    arithmetic turns it into WindowStats."""

    def __init__(self, window: tuple):
        self.window = window

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self.window
