"""The rate limiter: exact moving windows, limits that share a request, and Redis failing
(down, frozen) without failing the requests it counts."""
from __future__ import annotations

import logging
import os
import random
import uuid

import pytest
import redis

from handlers.runtime.ratelimit import RateLimiter, RedisDown
from tests.throwaway_redis import needs_redis_server, throwaway_redis  # noqa: F401 (fixture)

REDIS_URL = os.environ.get("TEST_REDIS_URL")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.skipif(
    not REDIS_URL, reason="needs TEST_REDIS_URL"))])
def limiter_on(request):
    """A limiter with a clock the test moves, in memory or on Redis."""
    def make(clock):
        return RateLimiter(REDIS_URL if request.param == "redis" else None, clock=clock)
    return make


def test_a_limit_never_lets_n_plus_one_through_across_the_window_edge(limiter_on):
    clock, who = Clock(), uuid.uuid4().hex
    limiter = limiter_on(clock)
    start = clock.now
    # Three at the end of one clock hour, then at the start of the next: a fixed window
    # (and a weighted one) would let the second three through.
    for offset in (3597.0, 3598.0, 3599.0):
        clock.now = start + offset
        assert limiter.hit("3/hour", "edge", who).allowed
    for offset in (3600.0, 3601.0, 5400.0, 7196.999):
        clock.now = start + offset
        refused = limiter.hit("3/hour", "edge", who)
        assert not refused.allowed and refused.remaining == 0
        assert refused.retry_after == max(1, -(-(start + 3597.0 + 3600 - clock.now) // 1))
    clock.now = start + 3597.0 + 3600  # the first has left the rolling hour: exactly one more
    assert limiter.hit("3/hour", "edge", who).allowed
    assert not limiter.hit("3/hour", "edge", who).allowed


def test_no_rolling_window_ever_holds_more_than_the_limit(limiter_on):
    clock, who, rng = Clock(), uuid.uuid4().hex, random.Random(7)
    limiter = limiter_on(clock)
    allowed_at = []
    for _ in range(400):  # bursts and lulls over ~4 minutes against 10 per minute
        clock.now += rng.choice([0.0, 0.01, 0.5, 1.0, 3.0, 20.0])
        if limiter.hit("10/minute", "rolling", who).allowed:
            allowed_at.append(clock.now)
    assert len(allowed_at) >= 30
    for first in allowed_at:
        assert sum(1 for t in allowed_at if first <= t < first + 60) <= 10


def test_remaining_counts_down_and_identities_are_separate(limiter_on):
    clock, who = Clock(), uuid.uuid4().hex
    limiter = limiter_on(clock)
    decisions = [limiter.hit("3/hour", "unit", who) for _ in range(4)]
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 2), (True, 1), (True, 0), (False, 0)]
    assert decisions[-1].headers()["Retry-After"] == "3600"
    assert limiter.hit("3/hour", "unit", who + "-other").allowed


def test_the_organization_is_spent_only_by_requests_its_key_allowed(limiter_on):
    clock, org = Clock(), uuid.uuid4().hex
    limiter = limiter_on(clock)

    def request(key):
        clock.now += 1
        return limiter.hit_all(("3/hour", "key", key + org), ("5/hour", "org", org))

    # A misbehaving key: 3 allowed, the next 20 refused by its own limit, spending nothing.
    loop = [request("a") for _ in range(23)]
    assert [k.allowed for k, _ in loop] == [True] * 3 + [False] * 20
    assert all(o.allowed for _, o in loop)
    assert [o.remaining for _, o in loop[:3]] == [4, 3, 2] and loop[-1][1].remaining == 2
    # The organization's other key still has the two requests left of its budget.
    other = [request("b") for _ in range(3)]
    assert [(k.allowed, o.allowed) for k, o in other] == [(True, True), (True, True), (True, False)]
    # Refused by the organization, that request spent nothing of its key either.
    assert other[2][0].remaining == 1 and other[2][1].retry_after >= 1


@pytest.mark.skipif(not REDIS_URL, reason="needs TEST_REDIS_URL")
def test_on_redis_its_own_clock_times_the_windows():
    limiter, who = RateLimiter(REDIS_URL), uuid.uuid4().hex  # no clock given: Redis's TIME
    decisions = [limiter.hit("2/hour", "redis-clock", who) for _ in range(3)]
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 1), (True, 0), (False, 0)]
    assert 3590 <= decisions[-1].retry_after <= 3600


@pytest.mark.skipif(not REDIS_URL, reason="needs TEST_REDIS_URL")
def test_a_redis_that_forgot_the_script_loads_it_again():
    limiter, who = RateLimiter(REDIS_URL), uuid.uuid4().hex
    assert limiter.hit("2/hour", "script", who).allowed
    limiter._script.sha = "0" * 40  # as after a Redis restart: EVALSHA meets NOSCRIPT
    assert limiter.hit("2/hour", "script", who).allowed
    assert not limiter.hit("2/hour", "script", who).allowed


# --- Redis failing ---------------------------------------------------------------------

class Monotonic(Clock):
    pass


def _limiters(url, clock):
    """Two limiters on one Redis, as two server processes, with a breaker clock the test moves."""
    made = [RateLimiter(url, cooldown=5.0) for _ in range(2)]
    for limiter in made:
        limiter.redis.breaker.clock = clock
    return made


def _shared(one, two, who) -> bool:
    """Whether two limiters count one window: 2 through one, 1 through the other, then full."""
    decisions = [one.hit("3/hour", "shared", who), one.hit("3/hour", "shared", who),
                 two.hit("3/hour", "shared", who), two.hit("3/hour", "shared", who)]
    return [d.allowed for d in decisions] == [True, True, True, False]


def _ratelimit_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ratelimit"]


@needs_redis_server
@pytest.mark.parametrize("fault", ["down", "frozen"])
def test_limits_count_in_memory_while_redis_fails_and_share_again_after(throwaway_redis, caplog, fault):
    caplog.set_level(logging.WARNING, logger="ratelimit")
    clock = Monotonic(100.0)
    one, two = _limiters(throwaway_redis.url, clock)
    assert _shared(one, two, "before")
    assert one.redis.ping() and one.redis.up

    if fault == "down":
        throwaway_redis.stop()
    else:
        throwaway_redis.freeze()
    # Every request is still decided: per process, in memory. Its limit still holds there.
    decisions = [one.hit("2/hour", "outage", "x") for _ in range(3)] + [two.hit("2/hour", "outage", "x")]
    assert [d.allowed for d in decisions] == [True, True, False, True]
    assert not one.redis.up and not two.redis.up
    with pytest.raises(RedisDown):  # the health probe's answer during the cool-down: at once
        one.redis.ping()
    lines = _ratelimit_lines(caplog)
    assert len(lines) == 2 and all(line.startswith("Redis unreachable") for line in lines)  # one per process

    # Past the cool-down, still failing: one probe, no new line, still served from memory.
    clock.now += 6
    assert one.hit("2/hour", "outage", "y").allowed
    assert len(_ratelimit_lines(caplog)) == 2 and not one.redis.up

    if fault == "down":
        throwaway_redis.start()  # same port, empty (no persistence)
    else:
        throwaway_redis.thaw()
    assert not one.hit("2/hour", "outage", "x").allowed  # still in the cool-down: memory
    clock.now += 6
    assert _shared(one, two, "after")  # each probed Redis, found it, and counts there again
    assert one.redis.up and two.redis.up and one.redis.ping()
    lines = _ratelimit_lines(caplog)[2:]
    assert lines == ["Redis answers again: rate limits are shared again"] * 2


def test_a_redis_nobody_listens_on_is_skipped_during_its_cool_down(caplog):
    from handlers.runtime.ratelimit import GuardedRedis
    from scripts.ports import free_port

    caplog.set_level(logging.WARNING, logger="ratelimit")
    clock = Monotonic(0.0)
    guarded = GuardedRedis(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.3, read_timeout=0.3,
                           cooldown=5.0, clock=clock)
    with pytest.raises(redis.exceptions.ConnectionError) as refused:
        guarded.ping()
    assert not isinstance(refused.value, RedisDown) and not guarded.up
    with pytest.raises(RedisDown):
        guarded.ping()
    clock.now += 6

    def not_redis(client):
        raise ValueError("a bug of ours, not Redis failing")

    with pytest.raises(ValueError):  # the probe ended without an answer about Redis...
        guarded.call(not_redis)
    with pytest.raises(redis.exceptions.ConnectionError) as probed:  # ...so the next caller probes
        guarded.ping()
    assert not isinstance(probed.value, RedisDown)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["Redis unreachable"]


def test_memory_forgets_identities_whose_window_has_passed():
    from handlers.runtime.ratelimit import MemoryWindows, rule_for

    clock = Clock()
    memory = MemoryWindows(clock)
    for n in range(100):  # one request each from many visitors
        memory.acquire([rule_for("5/minute", "visitor", str(n))])
    clock.now += 30
    memory.acquire([rule_for("5/hour", "steady", "one")])
    assert len(memory._logs) == 101
    clock.now += memory.SWEEP_SECONDS + 1  # past the minute windows, within the hour's
    memory.acquire([rule_for("5/minute", "visitor", "new")])
    assert set(memory._logs) == {rule_for("5/hour", "steady", "one").key, rule_for("5/minute", "visitor", "new").key}
