"""Price table, budgets and the blocklist."""
from __future__ import annotations

import datetime as dt
import json

from models.chat.config import ChatConfig, PriceTable
from models.chat.turn import blocked, month_start


def test_prices_come_from_config_and_price_families_and_unknown_models():
    table = PriceTable.from_mapping({"gpt-4o-mini": {"input": 0.15, "output": 0.6}, "*": {"input": 10, "output": 30}})
    assert table.cost("gpt-4o-mini", 1823, 124) == round((1823 * 0.15 + 124 * 0.6) / 1e6, 8)
    assert table.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == 0.15
    assert table.cost("mystery", 1_000_000, 1_000_000) == 40  # unknown models are not free


def test_price_table_from_env_file_and_inline(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"m": {"input": 1, "output": 2}}))
    assert ChatConfig.from_env({"CHAT_PRICES_FILE": str(path)}).prices.cost("m", 10**6, 10**6) == 3
    inline = ChatConfig.from_env({"CHAT_PRICES": '{"m": {"input": 4, "output": 0}}', "CHAT_MAX_OUTPUT_TOKENS": "50"})
    assert inline.prices.cost("m", 10**6, 0) == 4 and inline.max_output_tokens == 50
    shipped = ChatConfig.from_env({})
    assert shipped.prices.cost("gpt-4o-mini", 10**6, 0) == 0.15


def test_blocklist_matches_words_and_phrases_case_insensitively():
    assert blocked("Was kostet es bei der KONKURRENZ gmbh?", ["Konkurrenz GmbH"])
    assert not blocked("Konkurrenzlos günstig", ["Konkurrenz"])
    assert not blocked("anything", ["", "  "])


def test_month_start_is_utc_first_of_month():
    now = dt.datetime(2026, 3, 17, 13, 5, tzinfo=dt.UTC)
    assert month_start(now) == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
