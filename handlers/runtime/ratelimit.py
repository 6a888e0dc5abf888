"""Rate limits declared in the specs, as exact moving windows: a limit of N per period lets
at most N requests through in any rolling period (a fixed or weighted window lets up to
2N through across a window's edge).

The windows live in Redis when REDIS_URL is set (shared by every worker and host) and in
process memory otherwise. Redis is never a single point of failure: its client has short
connect and read timeouts, and while it does not answer, the limits count in this
process's memory (approximate: each process then allows the whole budget on its own).
After a failure Redis is left alone for a cool-down, then tried again by one request; the
first success shares the limits again. One log line says Redis went away, one that it is
back.

A request can be subject to several limits at once (an ingest key and its organization):
it counts against all of them only when every one has room, so requests refused by one
limit spend nothing of the others.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import math
import threading
import time
import typing as t

import limits
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from models import metrics

log = logging.getLogger("ratelimit")

Clock = t.Callable[[], float]


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool  # this limit had room (the request counted only if every limit had)
    limit: int
    remaining: int
    retry_after: int  # seconds until this limit has room again (0 when it has)

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@dataclasses.dataclass(frozen=True)
class Rule:
    """One limit for one identity."""

    amount: int
    seconds: int
    key: str


@functools.lru_cache(maxsize=256)
def parse_limit(limit: str) -> limits.RateLimitItem:
    return limits.parse(limit)  # "600/minute", "3 per hour"; ~5 µs of regex work otherwise


def rule_for(limit: str, *identifiers: str) -> Rule:
    item = parse_limit(limit)
    return Rule(item.amount, item.get_expiry(), "rl:" + item.key_for(*identifiers))


def _decision(rule: Rule, count: int, oldest: float | None, now: float, counted: bool) -> Decision:
    """`count` requests in the window after this one (`counted`) or without it."""
    if count < rule.amount or counted:
        return Decision(True, rule.amount, max(0, rule.amount - count), 0)
    wait = (oldest if oldest is not None else now) + rule.seconds - now
    return Decision(False, rule.amount, 0, max(1, math.ceil(wait)))


class MemoryWindows:
    """Moving windows in this process: per key, the times of the requests it let through
    within the window (at most its amount). Thread-safe."""

    SWEEP_SECONDS = 60.0

    def __init__(self, clock: Clock = time.time):
        self.clock = clock
        self._lock = threading.Lock()
        self._logs: dict[str, tuple[int, collections.deque]] = {}
        self._next_sweep = 0.0

    def acquire(self, rules: t.Sequence[Rule]) -> list[Decision]:
        now = self.clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            logs = []
            for rule in rules:
                entry = self._logs.get(rule.key)
                if entry is None:
                    entry = self._logs[rule.key] = (rule.seconds, collections.deque())
                times = entry[1]
                while times and times[0] <= now - rule.seconds:
                    times.popleft()
                logs.append(times)
            counted = all(len(times) < rule.amount for rule, times in zip(rules, logs, strict=True))
            if counted:
                for times in logs:
                    times.append(now)
            return [_decision(rule, len(times), times[0] if times else None, now, counted)
                    for rule, times in zip(rules, logs, strict=True)]

    def _sweep(self, now: float) -> None:
        """Forgets keys whose every request has left its window (memory stays bounded by
        the identities active within the longest window)."""
        self._logs = {key: entry for key, entry in self._logs.items()
                      if entry[1] and entry[1][-1] > now - entry[0]}
        self._next_sweep = now + self.SWEEP_SECONDS


# KEYS: one list per rule, newest first, holding the times (seconds) of the requests let
# through within the window. ARGV[1]: now, or "" for Redis's own clock (one clock for
# every host); then amount and window seconds per rule. Answers: counted (0/1), now, then
# per rule the count in the window (after this request when counted) and its oldest time.
MOVING_WINDOWS = """
local now = tonumber(ARGV[1])
if not now then
  if redis.replicate_commands then redis.replicate_commands() end
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local counted, counts = 1, {}
for i, key in ipairs(KEYS) do
  local amount, start = tonumber(ARGV[2 * i]), now - tonumber(ARGV[2 * i + 1])
  local newest = redis.call('LINDEX', key, 0)
  if newest and tonumber(newest) <= start then
    redis.call('DEL', key)
  else
    while true do
      local last = redis.call('LINDEX', key, -1)
      if not last or tonumber(last) > start then break end
      redis.call('RPOP', key)
    end
  end
  counts[i] = redis.call('LLEN', key)
  if counts[i] >= amount then counted = 0 end
end
local stamp = string.format('%.6f', now)
local answer = {counted, stamp}
for i, key in ipairs(KEYS) do
  if counted == 1 then
    redis.call('LPUSH', key, stamp)
    redis.call('EXPIRE', key, tonumber(ARGV[2 * i + 1]) + 1)
    counts[i] = counts[i] + 1
  end
  answer[#answer + 1] = counts[i]
  answer[#answer + 1] = redis.call('LINDEX', key, -1) or ''
end
return answer
"""


class RedisDown(redis.exceptions.ConnectionError):
    """Redis failed recently and is not tried again until its cool-down has passed."""


class Breaker:
    """Whether to use Redis now: after a failure it is skipped for `cooldown` seconds, then
    one caller at a time probes it. Logs one line on each change of state."""

    def __init__(self, cooldown: float, clock: Clock = time.monotonic):
        self.cooldown = cooldown
        self.clock = clock
        self._lock = threading.Lock()
        self.up = True
        self._retry_at = 0.0
        self._probing = False

    def allows(self) -> bool:
        if self.up:
            return True
        with self._lock:
            if self.up:
                return True
            if self._probing or self.clock() < self._retry_at:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        if self.up:
            return
        with self._lock:
            if not self.up:
                self.up, self._probing = True, False
                metrics.DEPENDENCY_UP.labels("redis").set(1)
                log.warning("Redis answers again: rate limits are shared again")

    def abandoned(self) -> None:
        """A call ended without telling whether Redis works."""
        with self._lock:
            self._probing = False

    def failed(self, error: BaseException) -> bool:
        """Records a failure; True when it took Redis down (the first since it was up)."""
        with self._lock:
            went_down = self.up
            self.up, self._probing = False, False
            self._retry_at = self.clock() + self.cooldown
        if went_down:
            metrics.DEPENDENCY_UP.labels("redis").set(0)
            log.warning("Redis unreachable (%s: %s): rate limits count in each process's memory, "
                        "trying Redis again every %gs", type(error).__name__, error, self.cooldown)
        return went_down


class GuardedRedis:
    """A Redis client with bounded timeouts behind a breaker: `call(fn)` runs fn(client), or
    raises RedisDown at once while the breaker is open."""

    def __init__(self, url: str, *, connect_timeout: float, read_timeout: float, cooldown: float,
                 clock: Clock = time.monotonic):
        # One retry, without backoff, on a broken connection only (a pooled socket that a
        # Redis restart closed); a timeout is not retried: that is where the time would go.
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=connect_timeout, socket_timeout=read_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)))
        self.breaker = Breaker(cooldown, clock)
        metrics.DEPENDENCY_UP.labels("redis").set(1)  # until a call fails

    @property
    def up(self) -> bool:
        return self.breaker.up

    def call(self, fn: t.Callable[[redis.Redis], t.Any]) -> t.Any:
        if not self.breaker.allows():
            raise RedisDown("Redis failed recently; not tried again before its cool-down")
        try:
            result = fn(self.client)
        except (redis.exceptions.RedisError, OSError) as error:
            metrics.REDIS_ERRORS.inc()
            if self.breaker.failed(error):
                # Drop the idle pooled sockets (a frozen Redis may answer them late); those
                # in use fail by their own timeout (closing them under a reader races).
                self.client.connection_pool.disconnect(inuse_connections=False)
            raise
        except BaseException:
            self.breaker.abandoned()  # not Redis failing: let the next caller probe
            raise
        self.breaker.succeeded()
        return result

    def ping(self) -> bool:
        """For the health probe: raises while Redis is down (at once during the cool-down)."""
        return self.call(lambda client: client.ping())


class RateLimiter:
    def __init__(self, redis_url: str | None, *, connect_timeout: float = 0.3, read_timeout: float = 0.3,
                 cooldown: float = 2.0, clock: Clock | None = None):
        """`clock` (tests only) replaces the wall clock, in memory and in Redis (which
        otherwise uses its own, one clock for every host)."""
        self.memory = MemoryWindows(clock or time.time)
        self.redis = (GuardedRedis(redis_url, connect_timeout=connect_timeout, read_timeout=read_timeout,
                                   cooldown=cooldown) if redis_url else None)
        self._script = self.redis.client.register_script(MOVING_WINDOWS) if self.redis else None
        self._clock = clock

    def hit(self, limit: str, *identifiers: str) -> Decision:
        """Counts one request against `limit` ("5/hour") for the given identity."""
        return self.acquire(rule_for(limit, *identifiers))[0]

    def hit_all(self, *limits_and_ids: tuple[str, ...]) -> list[Decision]:
        """One request against several limits, each `(limit, *identifiers)`: counted against
        all of them only when each has room; a decision per limit."""
        return self.acquire(*(rule_for(*each) for each in limits_and_ids))

    def acquire(self, *rules: Rule) -> list[Decision]:
        if self.redis is not None:
            try:
                return self.redis.call(functools.partial(self._acquire_in_redis, rules))
            except (redis.exceptions.RedisError, OSError):
                pass  # logged once by the breaker; counted in memory meanwhile
        return self.memory.acquire(rules)

    def _acquire_in_redis(self, rules: t.Sequence[Rule], client: redis.Redis) -> list[Decision]:
        now = self._clock() if self._clock else None
        args = ["" if now is None else repr(now)]
        for rule in rules:
            args += [rule.amount, rule.seconds]
        answer = self._script(keys=[rule.key for rule in rules], args=args, client=client)
        counted, now = bool(answer[0]), float(answer[1])
        return [_decision(rule, int(answer[2 + 2 * n]), float(answer[3 + 2 * n]) if answer[3 + 2 * n] else None,
                          now, counted)
                for n, rule in enumerate(rules)]
