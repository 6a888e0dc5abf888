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


def test_german_inflections_match_on_every_backend(database, bot):
    _import(database, bot.chatbot_id, "umbal", "Wasserschaupfad", "Der Weg führt an den Umbalfällen entlang.")
    _import(database, bot.chatbot_id, "touren", "Touren", "Geführte Wanderungen für Familien.")
    with database.unit_of_work() as s:
        assert [h.title for h in knowledge.search(s, bot.chatbot_id, "Umbalfälle")] == ["Wasserschaupfad"]
        assert [h.title for h in knowledge.search(s, bot.chatbot_id, "geführte Wanderung")] == ["Touren"]
        assert knowledge.search(s, bot.chatbot_id, "Umbal") == []  # stems, not prefixes, as PostgreSQL


STEM_SAMPLES = {
    "de": "Umbalfällen Wanderungen Hütten Öffnungszeiten geöffnet Notrufnummer Bergschuhe Gästen ließ",
    "en": "waterfalls opening hours getting thunderstorms families prices running easily",
    "it": "cascate orari apertura temporali famiglie biglietti arrivare pomeriggio",
}


@pytest.mark.parametrize("language", list(knowledge.TS_CONFIGS))
def test_sqlite_stems_are_postgresqls(language):
    """The stems SQLite indexes are the lexemes of PostgreSQL's configuration for the language."""
    import os

    from sqlalchemy import create_engine, text

    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs TEST_DATABASE_URL")
    words = STEM_SAMPLES[language].split()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            lexemes = [connection.execute(text("SELECT lexemes[1] FROM (SELECT tsvector_to_array(to_tsvector("
                                               f"'{knowledge.TS_CONFIGS[language]}', :w)) AS lexemes) t"),
                                          {"w": word}).scalar() for word in words]
    finally:
        engine.dispose()
    assert knowledge.stem_words([w.lower() for w in words], language) == lexemes


def test_sentences_join_wrapped_lines_and_skip_headings():
    passage = ("Wasserschaupfad Umbalfälle\n\nBei Prägraten stürzt die Isel über Stufen. Der Weg ist\n"
               "gut angelegt.\n\n- Anreise: Mit dem Bus bis Ströden.\n- Tipp: Am Vormittag\n  ist es ruhiger.")
    assert knowledge.sentences(passage) == [
        "Bei Prägraten stürzt die Isel über Stufen.", "Der Weg ist gut angelegt.",
        "Anreise: Mit dem Bus bis Ströden.", "Tipp: Am Vormittag ist es ruhiger."]


def test_best_sentences_answer_the_question_from_the_best_passages():
    falls = "Umbalfälle\n\nDer Wasserschaupfad führt an den Umbalfällen entlang.\n\n- Anreise: Mit dem Bus bis Ströden."
    safety = "Sicherheit\n\nDas Wetter schlägt schnell um.\n\n- Notfall: Der alpine Notruf ist 140."
    quotes = knowledge.best_sentences("Wie komme ich zu den Umbalfällen?", [falls, safety])
    assert [q.passage for q in quotes] == [0]
    assert "Anreise: Mit dem Bus bis Ströden." in quotes[0].sentences
    quotes = knowledge.best_sentences("Welche Notrufnummer gilt im Notfall?", [falls, safety])
    assert quotes == [knowledge.Quote(1, ["Notfall: Der alpine Notruf ist 140."])]
    # Nothing matches: the best passage's first sentences, rather than silence.
    assert knowledge.best_sentences("Skilift?", [falls])[0].sentences[0].startswith("Der Wasserschaupfad")


def test_the_question_language_is_guessed_from_its_function_words():
    assert knowledge.guess_language("Wie komme ich zu den Umbalfällen?") == "de"
    assert knowledge.guess_language("How do I get to the waterfalls?") == "en"
    assert knowledge.guess_language("Come arrivo alle cascate?") == "it"
    assert knowledge.guess_language("Umbalfälle") is None


def test_an_older_sqlite_index_is_replaced_by_the_stemmed_one(tmp_path):
    from sqlalchemy import text

    from models import alpinechat, migrate
    from models.db import Database

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url)
    database = Database(url)
    try:
        with database.unit_of_work() as s:
            s.execute(text("CREATE VIRTUAL TABLE knowledge_passages_fts USING fts5(content, chatbot_id UNINDEXED)"))
            tenant = alpinechat.create_tenant(s, "T", "t@example.com")
            bot_id = alpinechat.create_chatbot(s, tenant, "old-index-bot", "Bot").id
        _import(database, bot_id, "umbal", "Wasserschaupfad", "Der Weg führt an den Umbalfällen entlang.")
        with database.unit_of_work() as s:
            assert [h.title for h in knowledge.search(s, bot_id, "Umbalfälle")] == ["Wasserschaupfad"]
            names = set(s.execute(text("SELECT name FROM sqlite_master")).scalars())
            assert knowledge.FTS_TABLE in names and "knowledge_passages_fts" not in names
    finally:
        database.dispose()


def test_the_retrieval_evaluation_scores_each_question():
    from models.chat.config import ChatConfig
    from scripts import eval_retrieval

    questions = [{"q": "Wie komme ich zu den Umbalfällen?", "lang": "de", "doc": "umbalfaelle", "fact": "Ströden"},
                 {"q": "What is the emergency number in the mountains?", "lang": "en", "doc": "en-safety",
                  "fact": "140"}]
    with eval_retrieval.sqlite_url() as url:
        results = eval_retrieval.evaluate(url, questions, ChatConfig.from_env({}))
    assert [(r["hit1"], r["hit3"], r["fact_found"]) for r in results] == [(True, True, True)] * 2
    assert results[0]["pages"][0] == "umbalfaelle" and "Ströden" in results[0]["answer"]
