"""Knowledge parsing, splitting and full-text search (on the run's backend: SQLite FTS5,
or PostgreSQL with the language's text-search configuration)."""
from __future__ import annotations

import pytest

from models import knowledge


def test_markdown_front_matter_title_url_and_meta():
    parsed = knowledge.parse_markdown("---\ntitle: Tour A\nurl: https://x/a\ntype: tour\ndifficulty: leicht\n---\n"
                                      "# Heading\n\nSome **bold** [link](https://y) text.")
    assert (parsed.title, parsed.url) == ("Tour A", "https://x/a")
    assert parsed.meta == {"type": "tour", "difficulty": "leicht"}
    assert "Some bold link text." in parsed.text and "**" not in parsed.text


def test_html_drops_scripts_and_navigation_and_keeps_title():
    parsed = knowledge.parse_html("<html><head><title>Hütten</title><link rel='canonical' href='https://x/h'>"
                                  "<script>var a=1;</script></head><body><nav>Menü</nav><h1>Hütten</h1>"
                                  "<p>Die Karlsbader&nbsp;Hütte liegt am Laserzsee.</p></body></html>")
    assert parsed.title == "Hütten" and parsed.url == "https://x/h"
    assert "Karlsbader\xa0Hütte liegt am Laserzsee." in parsed.text
    assert "var a" not in parsed.text and "Menü" not in parsed.text


def test_passages_are_bounded_and_keep_their_heading():
    body = "# Titel\n\n" + "\n\n".join(f"Absatz {i} " + "wort " * 60 for i in range(8))
    passages = knowledge.split_passages(body, limit=900)
    assert len(passages) > 1
    assert all(len(p) <= 900 + len("Titel\n\n") for p in passages)
    assert all(p.startswith("Titel") for p in passages)
    assert "Absatz 7" in passages[-1]


def test_query_terms_drop_function_words():
    assert knowledge.query_terms("Welche Touren gibt es in den Dolomiten?") == ["touren", "dolomiten"]


@pytest.fixture
def bot(make_chatbot):
    return make_chatbot()


def _import(database, chatbot_id, source, title, text_, language="de"):
    with database.unit_of_work() as s:
        return knowledge.import_document(s, chatbot_id, source=source, title=title, text_=text_,
                                         language=language, url=f"https://x/{source}")[1]


def test_search_ranks_this_chatbots_passages_and_inflections(database, bot, make_chatbot):
    _import(database, bot.chatbot_id, "huetten", "Hütten in Osttirol", "Die Hütten am Laserzsee sind bewirtschaftet.")
    _import(database, bot.chatbot_id, "wetter", "Wetter", "Gewitter am Nachmittag einplanen.")
    other = make_chatbot()
    _import(database, other.chatbot_id, "fremd", "Hütten anderswo", "Fremde Hütten.")
    with database.unit_of_work() as s:
        hits = knowledge.search(s, bot.chatbot_id, "Welche Hütte ist am Laserzsee?")
        assert [h.title for h in hits] == ["Hütten in Osttirol"]  # "Hütte" finds "Hütten"; no other tenant
        assert hits[0].url == "https://x/huetten"
        assert knowledge.search(s, bot.chatbot_id, "Gewitter")[0].title == "Wetter"
        assert knowledge.search(s, bot.chatbot_id, "Skilift Zermatt") == []
        assert knowledge.search(s, bot.chatbot_id, "?!") == []


def test_english_and_italian_passages_are_searched_too(database, bot):
    _import(database, bot.chatbot_id, "en", "Waterfalls", "The waterfalls trail is family friendly.", "en")
    _import(database, bot.chatbot_id, "it", "Cascate", "Il sentiero delle cascate è adatto alle famiglie.", "it")
    with database.unit_of_work() as s:
        assert [h.title for h in knowledge.search(s, bot.chatbot_id, "waterfall trails")] == ["Waterfalls"]
        assert [h.title for h in knowledge.search(s, bot.chatbot_id, "sentiero cascate")] == ["Cascate"]


def test_reimport_replaces_and_unchanged_is_a_no_op(database, bot):
    assert _import(database, bot.chatbot_id, "doc", "Alt", "Altes Murmeltier.") is True
    assert _import(database, bot.chatbot_id, "doc", "Alt", "Altes Murmeltier.") is False
    assert _import(database, bot.chatbot_id, "doc", "Neu", "Neuer Steinbock.") is True
    with database.unit_of_work() as s:
        assert knowledge.search(s, bot.chatbot_id, "Murmeltier") == []
        assert [h.title for h in knowledge.search(s, bot.chatbot_id, "Steinbock")] == ["Neu"]
        assert len(knowledge.list_documents(s, bot.chatbot_id)) == 1
