"""Admin commands for the chat engine: `scripts/admin knowledge import|list|delete`.

`knowledge import --chatbot CHATBOT PATH...` reads Markdown (front matter `title:`, `url:`
and tour facts), HTML and text files, or folders of them (recursively), and stores each
as a document split into passages. Re-importing a file replaces its document; an
unchanged file is skipped.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from models import alpinechat, knowledge

SUFFIXES = (".md", ".markdown", ".html", ".htm", ".txt")


class CommandError(ValueError):
    """A user mistake; scripts/admin reports ValueErrors without a traceback (also when it
    runs as __main__, where its own CommandError is another class than the imported one)."""


def _chatbot(session: Session, ref: str) -> alpinechat.Chatbot:
    from scripts.admin_refs import chatbot

    return chatbot(session, ref)


def files_under(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"no such file or folder: {raw}")
    return found


def import_files(session: Session, chatbot: alpinechat.Chatbot, paths: list[str],
                 language: str | None = None) -> list[dict]:
    rows = []
    for path in files_under(paths):
        parsed = knowledge.parse_file(path.name, path.read_text(encoding="utf-8", errors="replace"))
        # A page's own `language:` (front matter) beats the chatbot's; --language beats both.
        own_language = parsed.meta.pop("language", None)
        document, changed = knowledge.import_document(
            session, chatbot.id, source=str(path.resolve()), title=parsed.title or path.stem,
            text_=parsed.text, language=language or own_language or chatbot.language, url=parsed.url,
            meta=parsed.meta)
        rows.append({"source": str(path), "title": document.title, "passages": len(document.passages),
                     "status": "imported" if changed else "unchanged"})
    return rows


def cmd_import(session: Session, args):
    from scripts.admin import Output

    chatbot = _chatbot(session, args.chatbot)
    return Output(import_files(session, chatbot, args.paths, args.language))


def cmd_list(session: Session, args):
    from scripts.admin import Output

    chatbot = _chatbot(session, args.chatbot)
    return Output([{"id": str(d.id), "title": d.title, "url": d.url, "language": d.language,
                    "passages": len(d.passages), "source": d.source}
                   for d in knowledge.list_documents(session, chatbot.id)])


def cmd_delete(session: Session, args):
    from scripts.admin import Output

    chatbot = _chatbot(session, args.chatbot)
    wanted = {args.source, str(Path(args.source).resolve())}
    documents = [d for d in knowledge.list_documents(session, chatbot.id) if d.source in wanted]
    if not documents:
        raise CommandError(f"no document from {args.source!r}")
    for document in documents:
        knowledge.delete_document(session, document)
    return Output({"deleted": [d.source for d in documents]})


def register(command, group) -> None:
    knowledge_group = group("knowledge", "a chatbot's knowledge base (retrieval for chat answers)")
    sub = command(knowledge_group, "import", cmd_import, "import Markdown/HTML/text files or folders")
    sub.add_argument("--chatbot", metavar="CHATBOT", required=True, help="chatbot id or slug")
    sub.add_argument("--language", choices=list(knowledge.TS_CONFIGS), help="default: the chatbot's language")
    sub.add_argument("paths", nargs="+", metavar="PATH")
    sub = command(knowledge_group, "list", cmd_list, "list imported documents")
    sub.add_argument("--chatbot", metavar="CHATBOT", required=True, help="chatbot id or slug")
    sub = command(knowledge_group, "delete", cmd_delete, "delete the document imported from a file")
    sub.add_argument("--chatbot", metavar="CHATBOT", required=True, help="chatbot id or slug")
    sub.add_argument("--source", required=True, help="the file path it was imported from")
