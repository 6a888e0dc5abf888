"""`scripts/admin knowledge ...` and the demo seed's knowledge."""
from __future__ import annotations

import json

from scripts import admin


def run(capsys, *argv) -> tuple[int, str]:
    code = admin.main(list(argv))
    return code, capsys.readouterr().out


def test_import_folder_of_markdown_html_and_text_then_search(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'admin.db'}")
    assert run(capsys, "demo")[0] == 0
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "tour.md").write_text("---\ntitle: Steinbock-Runde\nurl: https://x/steinbock\ntype: tour\n---\n"
                                  "Eine Runde mit Steinböcken.")
    (docs / "sub" / "page.html").write_text("<title>Murmeltiere</title><p>Murmeltiere pfeifen laut.</p>")
    (docs / "notes.txt").write_text("Gämsen\n\nGämsen klettern steil.")
    (docs / "image.png").write_bytes(b"\x89PNG")
    code, out = run(capsys, "knowledge", "import", "--json", "--chatbot", "demo-bot", str(docs))
    assert code == 0
    rows = json.loads(out)
    assert sorted(r["title"] for r in rows) == ["Gämsen", "Murmeltiere", "Steinbock-Runde"]
    assert {r["status"] for r in rows} == {"imported"}
    _, out = run(capsys, "knowledge", "import", "--json", "--chatbot", "demo-bot", str(docs))
    assert {r["status"] for r in json.loads(out)} == {"unchanged"}
    _, out = run(capsys, "knowledge", "list", "--json", "--chatbot", "demo-bot")
    titles = {d["title"] for d in json.loads(out)}
    # The demo seed imported the shipped pages too.
    assert {"Steinbock-Runde", "Wandern in den Lienzer Dolomiten", "Wasserschaupfad Umbalfälle im Virgental"} <= titles

    from models import alpinechat, knowledge
    from models.db import Database

    database = Database(f"sqlite:///{tmp_path / 'admin.db'}")
    try:
        with database.unit_of_work() as s:
            bot = alpinechat.get_chatbot(s, "demo-bot")
            assert knowledge.search(s, bot.id, "Murmeltiere")[0].title == "Murmeltiere"
            assert knowledge.search(s, bot.id, "Dolomitenhütte")[0].url.endswith("lienzer-dolomiten")
    finally:
        database.dispose()


def test_unknown_chatbot_or_path_is_a_clean_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'admin.db'}")
    assert admin.main(["knowledge", "import", "--chatbot", "nope", str(tmp_path)]) == 1
    assert "chatbot 'nope' not found" in capsys.readouterr().err
    admin.main(["demo"])
    assert admin.main(["knowledge", "import", "--chatbot", "demo-bot", str(tmp_path / "missing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
