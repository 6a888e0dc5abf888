"""Chat engine settings: the provider comes from the deployment's Settings, the rest from
`CHAT_*` environment variables, and prices from a price table file (not from code)."""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from models.config import env_flag

DEFAULT_PRICES_FILE = Path(__file__).with_name("prices.json")


@dataclasses.dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return round((prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6, 8)


@dataclasses.dataclass(frozen=True)
class PriceTable:
    prices: dict[str, Price]

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> PriceTable:
        prices = {}
        for model, entry in raw.items():
            if model.startswith("_"):
                continue
            prices[model] = Price(float(entry["input"]), float(entry["output"]))
        return cls(prices)

    def for_model(self, model: str) -> Price:
        if model in self.prices:
            return self.prices[model]
        # Dated snapshots ("gpt-4o-mini-2024-07-18") are priced like their family.
        family = max((m for m in self.prices if model.startswith(m + "-")), key=len, default=None)
        if family:
            return self.prices[family]
        # Unknown models are priced high rather than free: budgets must hold.
        return self.prices.get("*", Price(0.0, 0.0))

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self.for_model(model).cost(prompt_tokens, completion_tokens)


@dataclasses.dataclass(frozen=True)
class ChatConfig:
    prices: PriceTable
    # Upper bound of one answer (the provider's max_tokens); reaching it ends with `finish: length`.
    max_output_tokens: int = 700
    # History given to the model, newest first, within this many (estimated) tokens.
    history_tokens: int = 1500
    retrieval_limit: int = 4
    # A `: keep-alive` comment after this many quiet seconds on an open stream.
    keepalive_seconds: float = 10.0
    # Hard ceiling for a whole turn, tools included: a stream never hangs.
    turn_timeout_seconds: float = 120.0
    max_tool_rounds: int = 3
    upstream_connections: int = 2000
    # Ask the provider's moderation endpoint before answering (OpenAI only).
    moderation: bool = False
    # "none" (the card says so) or "open-meteo".
    weather_provider: str = "none"
    weather_timeout_seconds: float = 5.0
    # Graceful stop: streams still open this long before the server's graceful timeout
    # (gunicorn's graceful_timeout; GRACEFUL_TIMEOUT when not run by gunicorn) end with
    # `error`, `finish: error`, `done`, and are stored with what they used.
    shutdown_margin_seconds: float = 5.0
    graceful_timeout_seconds: float = 30.0
    # A reservation (pending assistant message) older than this was left by a worker that
    # died; the sweep settles it. 0: the turn timeout plus 60 s.
    reservation_stale_seconds: float = 0.0
    # How often each server worker (and the outbox worker) runs that sweep.
    sweep_interval_seconds: float = 60.0

    @property
    def stale_after_seconds(self) -> float:
        return self.reservation_stale_seconds or self.turn_timeout_seconds + 60.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> ChatConfig:
        env = dict(os.environ if env is None else env)
        if env.get("CHAT_PRICES"):
            raw = json.loads(env["CHAT_PRICES"])
        else:
            raw = json.loads(Path(env.get("CHAT_PRICES_FILE") or DEFAULT_PRICES_FILE).read_text())
        values: dict[str, Any] = dict(
            prices=PriceTable.from_mapping(raw),
            max_output_tokens=int(env.get("CHAT_MAX_OUTPUT_TOKENS", cls.max_output_tokens)),
            history_tokens=int(env.get("CHAT_HISTORY_TOKENS", cls.history_tokens)),
            retrieval_limit=int(env.get("CHAT_RETRIEVAL_LIMIT", cls.retrieval_limit)),
            keepalive_seconds=float(env.get("CHAT_KEEPALIVE_SECONDS", cls.keepalive_seconds)),
            turn_timeout_seconds=float(env.get("CHAT_TURN_TIMEOUT", cls.turn_timeout_seconds)),
            max_tool_rounds=int(env.get("CHAT_MAX_TOOL_ROUNDS", cls.max_tool_rounds)),
            upstream_connections=int(env.get("CHAT_UPSTREAM_CONNECTIONS", cls.upstream_connections)),
            moderation=env_flag(env.get("CHAT_MODERATION")),
            weather_provider=env.get("CHAT_WEATHER_PROVIDER", cls.weather_provider),
            weather_timeout_seconds=float(env.get("CHAT_WEATHER_TIMEOUT", cls.weather_timeout_seconds)),
            shutdown_margin_seconds=float(env.get("CHAT_SHUTDOWN_MARGIN_SECONDS", cls.shutdown_margin_seconds)),
            graceful_timeout_seconds=float(env.get("GRACEFUL_TIMEOUT", cls.graceful_timeout_seconds)),
            reservation_stale_seconds=float(env.get("CHAT_RESERVATION_STALE_SECONDS",
                                                    cls.reservation_stale_seconds)),
            sweep_interval_seconds=float(env.get("CHAT_SWEEP_SECONDS", cls.sweep_interval_seconds)),
        )
        values.update(overrides)
        return cls(**values)


def estimate_tokens(text: str) -> int:
    """About four characters a token: enough for budgets and history trimming, which
    are corrected by the provider's own usage report afterwards."""
    return max(1, (len(text) + 3) // 4)


def estimate_prompt_tokens(messages: Iterable[dict]) -> int:
    """The prompt's tokens, estimated as its messages are sent (role and all): for the
    budget reservation, and the usage of a turn the provider did not report."""
    return sum(estimate_tokens(json.dumps(m, ensure_ascii=False)) for m in messages)
