"""Each chatbot's knowledge base: documents split into passages, searched by full text.

PostgreSQL searches with the passage language's text-search configuration (german,
english, italian; one partial GIN index per language). SQLite uses an FTS5 table of the
passages' Snowball stems (PyStemmer: the algorithms PostgreSQL's configurations use), each
tagged with its language (`de_wander`), so both backends match the same word forms: it
is a derived index (rebuilt from the passages whenever it is missing or of an older
shape), so it is created on first use rather than by a migration, which keeps the
models/migrations drift check exact.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import html.parser
import re
import threading
import uuid
from collections.abc import Iterable
from typing import Any

import Stemmer
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.db import Base, CreatedAt, UUIDPk

TS_CONFIGS = {"de": "german", "en": "english", "it": "italian"}
PASSAGE_CHARS = 900  # about 200 tokens: several fit in a prompt
FTS_TABLE = "knowledge_stems_fts"
OLD_FTS_TABLES = ("knowledge_passages_fts",)  # earlier shapes of the derived index, dropped on sight


class KnowledgeDocument(Base):
    __tablename__ = "knowledge_documents"
    __table_args__ = (UniqueConstraint("chatbot_id", "source"),)

    id: Mapped[UUIDPk]
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"), index=True)
    # Where it was imported from (file path or any stable name): re-importing replaces it.
    source: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(String(500))
    url: Mapped[str | None] = mapped_column(String(2048))
    language: Mapped[str] = mapped_column(String(2))
    # Front matter beyond title/url (tour facts: difficulty, duration, lat/lon, booking_url, ...).
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]

    passages: Mapped[list[KnowledgePassage]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True,
        order_by="KnowledgePassage.seq")


class KnowledgePassage(Base):
    __tablename__ = "knowledge_passages"
    __table_args__ = tuple(
        Index(f"ix_knowledge_passages_fts_{lang}", text(f"to_tsvector('{config}', content)"),
              postgresql_using="gin", postgresql_where=text(f"language = '{lang}'")).ddl_if(dialect="postgresql")
        for lang, config in TS_CONFIGS.items()
    )

    # An integer key: SQLite's FTS5 index refers to passages by rowid.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("knowledge_documents.id", ondelete="CASCADE"), index=True)
    # Denormalized so that a search touches one table.
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"), index=True)
    language: Mapped[str] = mapped_column(String(2))
    seq: Mapped[int]
    content: Mapped[str] = mapped_column(Text)

    document: Mapped[KnowledgeDocument] = relationship(back_populates="passages")


@dataclasses.dataclass(frozen=True)
class Hit:
    passage_id: int
    document_id: uuid.UUID
    title: str
    url: str | None
    content: str
    score: float
    meta: dict[str, Any]
    language: str = ""


# ── Parsing ──────────────────────────────────────────────────────────────────

@dataclasses.dataclass
class ParsedDocument:
    title: str | None
    url: str | None
    text: str
    meta: dict[str, Any]


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def parse_markdown(raw: str) -> ParsedDocument:
    """Front matter (`title:`, `url:`, anything else becomes meta), then the body with
    Markdown emphasis stripped; the first `# heading` is the title when none is given."""
    meta: dict[str, Any] = {}
    match = _FRONT_MATTER.match(raw)
    if match:
        import yaml

        loaded = yaml.safe_load(match.group(1)) or {}
        meta = {str(k): v for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        raw = raw[match.end():]
    title = meta.pop("title", None)
    url = meta.pop("url", None)
    heading = re.search(r"^#\s+(.+)$", raw, re.M)
    if title is None and heading:
        title = heading.group(1).strip()
    body = re.sub(r"(\*\*|__|`)", "", raw)
    body = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", body)  # links keep their text
    return ParsedDocument(str(title) if title else None, str(url) if url else None, body.strip(), meta)


class _HtmlText(html.parser.HTMLParser):
    BLOCKS = {"p", "div", "li", "br", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "ul", "ol"}
    SKIP = {"script", "style", "nav", "footer", "head", "noscript"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self.canonical: str | None = None
        self._skip = 0
        self._in_title = False
        self._heading: list[str] | None = None
        self.first_h1: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip += 1
        elif tag == "link" and (attrs.get("rel") or "").lower() == "canonical":
            self.canonical = attrs.get("href")
        if tag == "h1" and self.first_h1 is None:
            self._heading = []
        if tag in self.BLOCKS:
            self.parts.append("\n\n" if tag.startswith("h") or tag == "p" else "\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag == "h1" and self._heading is not None:
            self.first_h1 = " ".join("".join(self._heading).split())
            self._heading = None
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title = (self.title or "") + data
        elif not self._skip:
            self.parts.append(data)
            if self._heading is not None:
                self._heading.append(data)


def parse_html(raw: str) -> ParsedDocument:
    parser = _HtmlText()
    parser.feed(raw)
    body = "".join(parser.parts)
    body = re.sub(r"[ \t]+", " ", body)
    body = re.sub(r"\n\s*\n\s*", "\n\n", body).strip()
    title = (parser.title or "").strip() or parser.first_h1
    return ParsedDocument(title or None, parser.canonical, body, {})


def parse_text(raw: str) -> ParsedDocument:
    first = next((line.strip() for line in raw.splitlines() if line.strip()), None)
    return ParsedDocument(first[:200] if first else None, None, raw.strip(), {})


def parse_file(name: str, raw: str) -> ParsedDocument:
    lower = name.lower()
    if lower.endswith((".md", ".markdown")):
        return parse_markdown(raw)
    if lower.endswith((".html", ".htm")):
        return parse_html(raw)
    return parse_text(raw)


def split_passages(body: str, limit: int = PASSAGE_CHARS) -> list[str]:
    """Paragraph-aligned chunks of at most `limit` characters; each chunk after a heading
    keeps that heading, so a passage read alone still says what it is about."""
    passages: list[str] = []
    heading = ""
    current = ""
    for block in (b.strip() for b in re.split(r"\n\s*\n", body)):
        if not block:
            continue
        if re.match(r"^#{1,6}\s", block) and "\n" not in block:
            if current:
                passages.append(current)
            heading = block.lstrip("#").strip()
            current = heading
            continue
        while len(block) > limit:  # one very long paragraph: cut at a sentence or space
            cut = max(block.rfind(". ", 0, limit), block.rfind(" ", 0, limit))
            cut = cut + 1 if cut > 0 else limit
            if current and current != heading:
                passages.append(current)
            passages.append(((heading + "\n") if heading else "") + block[:cut].strip())
            current = heading
            block = block[cut:].strip()
        candidate = f"{current}\n\n{block}" if current else block
        if len(candidate) > limit and current and current != heading:
            passages.append(current)
            current = f"{heading}\n\n{block}" if heading else block
        else:
            current = candidate
    if (current and current != heading) or (current and not passages):
        passages.append(current)
    return passages


# ── Writing ──────────────────────────────────────────────────────────────────

def import_document(session: Session, chatbot_id: uuid.UUID, *, source: str, title: str, text_: str,
                    language: str, url: str | None = None, meta: dict[str, Any] | None = None,
                    ) -> tuple[KnowledgeDocument, bool]:
    """Stores (or replaces, by `source`) one document and its passages.
    Returns the document and whether anything changed."""
    if language not in TS_CONFIGS:
        raise ValueError(f"unknown language {language!r}; expected one of {', '.join(TS_CONFIGS)}")
    digest = hashlib.sha256("\x00".join([title, url or "", language, repr(sorted((meta or {}).items())),
                                         text_]).encode()).hexdigest()
    existing = session.scalar(select(KnowledgeDocument).where(
        KnowledgeDocument.chatbot_id == chatbot_id, KnowledgeDocument.source == source))
    if existing is not None and existing.content_sha256 == digest:
        return existing, False
    sqlite = _is_sqlite(session)
    if sqlite:
        _ensure_fts(session)  # before the new passages exist: a fresh index is filled from the table
    if existing is not None:
        delete_document(session, existing)
    document = KnowledgeDocument(chatbot_id=chatbot_id, source=source, title=title, url=url,
                                 language=language, meta=dict(meta or {}), content_sha256=digest)
    session.add(document)
    session.flush()
    chunks = split_passages(text_) or [title]
    passages = [KnowledgePassage(document_id=document.id, chatbot_id=chatbot_id, language=language, seq=i,
                                 content=chunk) for i, chunk in enumerate(chunks)]
    session.add_all(passages)
    session.flush()
    if sqlite:
        session.execute(text(f"INSERT INTO {FTS_TABLE}(rowid, stems, chatbot_id) VALUES (:id, :stems, :bot)"),
                        [{"id": p.id, "stems": indexed_stems(f"{title}\n{p.content}", language), "bot": chatbot_id.hex}
                         for p in passages])
    return document, True


def delete_document(session: Session, document: KnowledgeDocument) -> None:
    if _is_sqlite(session):
        _ensure_fts(session)
        session.execute(text(f"DELETE FROM {FTS_TABLE} WHERE rowid IN "
                             f"(SELECT id FROM knowledge_passages WHERE document_id = :doc)"),
                        {"doc": document.id.hex})
    session.execute(delete(KnowledgePassage).where(KnowledgePassage.document_id == document.id))
    session.delete(document)
    session.flush()


def list_documents(session: Session, chatbot_id: uuid.UUID) -> list[KnowledgeDocument]:
    return list(session.scalars(select(KnowledgeDocument).where(KnowledgeDocument.chatbot_id == chatbot_id)
                                .order_by(KnowledgeDocument.source)))


def get_documents(session: Session, document_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, KnowledgeDocument]:
    ids = list(document_ids)
    if not ids:
        return {}
    return {d.id: d for d in session.scalars(select(KnowledgeDocument).where(KnowledgeDocument.id.in_(ids)))}


# ── Searching ────────────────────────────────────────────────────────────────

_WORD = re.compile(r"\w{2,}", re.U)
# Function words per language: dropped from queries, so that an OR query is not dominated by
# them on SQLite (PostgreSQL's configurations have their own stop lists), and counted to guess
# the language a question is asked in.
STOPWORDS = {
    "de": set("""der die das und oder ein eine einen einem einer ist sind gibt es wie was wo wer welche welcher
welches für mit von zu zum zur im in am an auf den dem des ich du wir ihr sie mir mich dir kann können hat
habe muss darf bis wann nach""".split()),
    "en": set("""the a an and or is are of to for in on at with what which where how who can i you we it do does
there my me by when much many""".split()),
    "it": set("""il lo la le gli un una uno e di da per con su che come dove quale quali sono è del della dei
delle al alla ai si mi ci quanto quando""".split()),
}
_STOP = set().union(*STOPWORDS.values())

# What visitors ask about and the words the answering page uses for it, which the question
# itself often lacks ("Wie komme ich hin?" is answered under "Anreise"), per language: for a
# question in a guessed language, found passages with its intents' cues rank higher and the
# answer prefers sentences with them. Words of the domain, not per-page answers.
INTENTS = {
    "de": [("komme kommt hinkommen erreiche anreisen", "anreise anfahrt bus zug bahn auto parkplatz"),
           ("notruf notrufnummer notfall unfall hilfe", "notruf bergrettung"),
           ("wann geöffnet offen öffnungszeiten", "öffnungszeiten geöffnet täglich uhr"),
           ("kostet kosten preis preise eintritt teuer", "preis preise euro eintritt"),
           ("telefon telefonnummer kontakt erreichbar", "telefon mail")],
    "en": [("get reach getting", "bus train car parking"),
           ("emergency accident rescue help", "emergency rescue"),
           ("open opening hours when", "opening hours open daily"),
           ("cost costs price prices fee much", "price prices euro admission"),
           ("phone call contact email", "phone email")],
    "it": [("arrivo arrivare raggiungere arriva", "autobus treno auto parcheggio"),
           ("emergenza incidente soccorso aiuto", "emergenza soccorso"),
           ("aperto apertura orari quando", "orari apertura aperto giorni dalle"),
           ("costa costo prezzo prezzi biglietto", "prezzo prezzi euro biglietto"),
           ("telefono contatto", "telefono")],
}


def guess_language(question: str) -> str | None:
    """The language whose function words the question uses most; None on a tie or none."""
    words = words_of(question)
    counts = sorted(((sum(w in stop for w in words), language) for language, stop in STOPWORDS.items()),
                    reverse=True)
    return counts[0][1] if counts[0][0] > counts[1][0] else None


@functools.cache
def _stemmer_for(language: str, _thread: int) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(TS_CONFIGS[language])


def stem_words(words: list[str], language: str) -> list[str]:
    # PyStemmer's stemmers keep state: one per thread.
    return _stemmer_for(language, threading.get_ident()).stemWords(words)


def words_of(text_: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text_)]


def indexed_stems(text_: str, language: str) -> str:
    """What SQLite's index holds for a passage: its words' stems in its language, tagged."""
    return " ".join(f"{language}_{stem}" for stem in stem_words(words_of(text_), language))


def all_stems(words: Iterable[str]) -> set[str]:
    """Every language's stem of each word: a question's language is not known."""
    words = list(words)
    return {stem for language in TS_CONFIGS for stem in stem_words(words, language)}


@functools.cache
def _intents(language: str) -> list[tuple[frozenset[str], tuple[str, ...]]]:
    return [(frozenset(stem_words(words_of(triggers), language)), tuple(words_of(cues)))
            for triggers, cues in INTENTS[language]]


def query_terms(question: str, limit: int = 12) -> list[str]:
    """The question's content words."""
    return list(dict.fromkeys(w for w in words_of(question) if w not in _STOP and not w.isdigit()))[:limit]


def intent_cues(question: str, language: str | None = None) -> list[str]:
    """The cue words of the intents the question names, in its language (guessed if not given)."""
    language = language or guess_language(question)
    if language is None:
        return []
    stems = set(stem_words(words_of(question), language))
    return list(dict.fromkeys(cue for triggers, cues in _intents(language) if stems & triggers for cue in cues))


# A passage in the language the question is asked in scores this much more: a place name
# ("Lienz") is on the pages of every language, the visitor reads one.
SAME_LANGUAGE_BOOST = 1.5
CUE_BOOST = 0.25  # per cue word found, at most two


def search(session: Session, chatbot_id: uuid.UUID, question: str, *, limit: int = 4) -> list[Hit]:
    """The best passages of this chatbot's knowledge for `question`, best first.
    Any matching word counts (OR), ranked by relevance, then passages in the question's
    language (guessed from its function words) first among equals."""
    terms = query_terms(question)
    if not terms:
        return []
    language = guess_language(question)
    cues = intent_cues(question, language)
    candidates = limit * 3 if language else limit
    if not _is_sqlite(session):
        hits = _search_postgresql(session, chatbot_id, " ".join(terms), candidates)
    else:
        hits = _sqlite_hits(session, chatbot_id, terms, candidates)
    if language:
        hits = sorted((dataclasses.replace(hit, score=hit.score * _rerank(hit, language, cues)) for hit in hits),
                      key=lambda hit: -hit.score)  # stable: equal scores keep the backend's order
    return hits[:limit]


def _rerank(hit: Hit, language: str, cues: list[str]) -> float:
    """A found passage in the question's language, and one using the words of what is asked
    ("Anreise" for "Wie komme ich hin?"), scores more. Cues only re-rank what the question's
    own words found: searched for, they would outweigh those words on pages about anything."""
    factor = SAME_LANGUAGE_BOOST if hit.language == language else 1.0
    if cues and hit.language == language:
        present = set(stem_words(words_of(f"{hit.title} {hit.content}"), language))
        factor *= 1 + CUE_BOOST * min(2, len(set(stem_words(cues, language)) & present))
    return factor


def _sqlite_hits(session: Session, chatbot_id: uuid.UUID, terms: list[str], limit: int) -> list[Hit]:
    rows = _search_sqlite(session, chatbot_id, terms, limit)
    if not rows:
        return []
    # One round trip for the passages and their documents, as plain rows: this runs on
    # every chat turn, where loading ORM objects cost more than the search itself.
    found = {row.id: row for row in session.execute(_PASSAGES_BY_ID, {"ids": [pid for pid, _ in rows]})}
    hits = []
    for passage_id, score in rows:
        row = found.get(passage_id)
        if row is None:
            continue
        hits.append(Hit(row.id, row.document_id, row.title, row.url, row.content, float(score),
                        dict(row.meta or {}), row.language))
    return hits


def _pg_search_sql() -> str:
    # One branch per configured language, each shaped like its partial index (to_tsvector
    # with the language's configuration, language = '..'); a language without passages
    # finds nothing. plainto_tsquery stems the words with the language's dictionary; the
    # words are ORed together.
    branch = ("(SELECT p.id, ts_rank_cd(to_tsvector('{c}', p.content), q.query) AS score"
              " FROM knowledge_passages p, (SELECT replace(plainto_tsquery('{c}', :words)::text, '&', '|')::tsquery"
              " AS query) q WHERE p.chatbot_id = :chatbot_id AND p.language = '{l}'"
              " AND to_tsvector('{c}', p.content) @@ q.query ORDER BY score DESC, p.id LIMIT :limit)")
    union = " UNION ALL ".join(branch.format(c=config, l=language) for language, config in TS_CONFIGS.items())
    return ("SELECT p.id, p.content, p.language, d.id AS document_id, d.title, d.url, d.meta, r.score"
            f" FROM ({union}) r JOIN knowledge_passages p ON p.id = r.id"
            " JOIN knowledge_documents d ON d.id = p.document_id ORDER BY r.score DESC, r.id LIMIT :limit")


# Plain SQL, built once: one statement per turn (it was three: the chatbot's languages,
# a search per language, the passages' documents), and no statement to compile or key.
_PG_SEARCH = text(_pg_search_sql())


def _search_postgresql(session: Session, chatbot_id: uuid.UUID, words: str, limit: int) -> list[Hit]:
    rows = session.execute(_PG_SEARCH, {"chatbot_id": chatbot_id, "words": words, "limit": limit})
    return [Hit(row.id, row.document_id, row.title, row.url, row.content, float(row.score), dict(row.meta or {}),
                row.language) for row in rows]


# Built once: these run on every chat turn, where building and cache-keying a statement
# cost about as much as the search.
_SQLITE_SEARCH = text(
    f"SELECT rowid, -bm25({FTS_TABLE}) AS score FROM {FTS_TABLE} "
    f"WHERE {FTS_TABLE} MATCH :match AND chatbot_id = :bot ORDER BY bm25({FTS_TABLE}), rowid LIMIT :limit")
_PASSAGES_BY_ID = (
    select(KnowledgePassage.id, KnowledgePassage.content, KnowledgePassage.language,
           KnowledgeDocument.id.label("document_id"),
           KnowledgeDocument.title, KnowledgeDocument.url, KnowledgeDocument.meta)
    .join(KnowledgeDocument, KnowledgeDocument.id == KnowledgePassage.document_id)
    .where(KnowledgePassage.id.in_(bindparam("ids", expanding=True)))
)


def _search_sqlite(session: Session, chatbot_id: uuid.UUID, terms: list[str], limit: int) -> list[tuple[int, float]]:
    _ensure_fts(session)
    # Each word stemmed as each language would, matching only passages of that language (the
    # tag), as PostgreSQL's one branch per configuration does.
    tokens = dict.fromkeys(f'"{language}_{stem}"' for language in TS_CONFIGS
                           for stem in stem_words(terms, language) if '"' not in stem)
    match = " OR ".join(tokens)
    rows = session.execute(_SQLITE_SEARCH, {"match": match, "bot": chatbot_id.hex, "limit": limit})
    return [(row[0], row[1]) for row in rows]


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


_fts_ready: set[str] = set()
_fts_lock = threading.Lock()


def _ensure_fts(session: Session) -> None:
    """Creates the FTS5 index once per database file, filling it from the passages."""
    url = str(session.get_bind().engine.url)
    if url in _fts_ready:
        return
    with _fts_lock:
        exists = session.execute(text("SELECT 1 FROM sqlite_master WHERE name = :n"), {"n": FTS_TABLE}).first()
        if not exists:
            for old in OLD_FTS_TABLES:
                session.execute(text(f"DROP TABLE IF EXISTS {old}"))
            # tokenchars '_': a tagged stem (de_wander) is one token.
            session.execute(text(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
                f"stems, chatbot_id UNINDEXED, tokenize = \"unicode61 remove_diacritics 2 tokenchars '_'\")"))
            rows = session.execute(text(
                "SELECT p.id, d.title, p.content, p.language, replace(p.chatbot_id, '-', '') AS bot "
                "FROM knowledge_passages p JOIN knowledge_documents d ON d.id = p.document_id")).all()
            if rows:
                session.execute(text(f"INSERT INTO {FTS_TABLE}(rowid, stems, chatbot_id) VALUES (:id, :stems, :bot)"),
                                [{"id": r.id, "stems": indexed_stems(f"{r.title}\n{r.content}", r.language),
                                  "bot": r.bot} for r in rows])
            return  # remembered only once seen committed: this transaction may roll back
        _fts_ready.add(url)


# ── Answer sentences ─────────────────────────────────────────────────────────

_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'„«(]?[A-ZÄÖÜ0-9])")


def sentences(content: str) -> list[str]:
    """A passage's sentences: paragraphs and list items, re-joined where a line wraps, then
    split after . ! ? before a capital; headings (also a passage's carried heading) are not."""
    units: list[str] = []
    for block in re.split(r"\n\s*\n", content):
        items: list[str] = []
        for line in block.splitlines():
            if not line.strip() or re.match(r"^\s*#{1,6}\s", line):
                continue
            if _ITEM.match(line) or not items:
                items.append(_ITEM.sub("", line).strip())
            else:
                items[-1] += " " + line.strip()
        units.extend(items)
    if len(units) > 1 and len(units[0]) < 100 and not re.search(r"[.!?:;]", units[0]):
        units = units[1:]  # the heading split_passages carries at the top of a passage
    found = []
    for unit in units:
        found.extend(part.strip() for part in _SENTENCE_END.split(unit) if part.strip())
    return found


@dataclasses.dataclass(frozen=True)
class Quote:
    passage: int  # index into the passages given
    sentences: list[str]


def best_sentences(question: str, passages: list[str], *, max_sentences: int = 4, max_chars: int = 600) -> list[Quote]:
    """The sentences of `passages` (best first) that answer `question` best: each scores by
    the question's words it contains (stemmed in every language; an intent's cue words count
    half), a little less in a lower-ranked passage. Quotes come per passage in rank order,
    sentences in text order. No sentence matching: the first sentences of the best passage."""
    asked = query_terms(question)
    cues = [cue for cue in intent_cues(question) if cue not in asked]
    weights: dict[frozenset[str], float] = {}
    for word in asked:
        weights[frozenset(all_stems([word]))] = 1.0
    for word in cues:
        weights.setdefault(frozenset(all_stems([word])), 0.5)
    scored = []
    for rank, passage in enumerate(passages):
        for position, sentence in enumerate(sentences(passage)):
            stems = all_stems(words_of(sentence)) | set(words_of(sentence))
            score = sum(weight for forms, weight in weights.items() if forms & stems)
            if score > 0:
                scored.append((score - 0.25 * rank, rank, position, sentence))
    if not scored:
        first = sentences(passages[0])[:2] if passages else []
        return [Quote(0, first)] if first else []
    chosen, used = [], 0
    for _, rank, position, sentence in sorted(scored, key=lambda s: (-s[0], s[1], s[2])):
        if len(chosen) == max_sentences or (chosen and used + len(sentence) > max_chars):
            break
        chosen.append((rank, position, sentence))
        used += len(sentence)
    quotes: dict[int, list[tuple[int, str]]] = {}
    for rank, position, sentence in chosen:
        quotes.setdefault(rank, []).append((position, sentence))
    return [Quote(rank, [s for _, s in sorted(quotes[rank])]) for rank in sorted(quotes)]
