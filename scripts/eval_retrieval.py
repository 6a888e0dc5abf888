"""`scripts/eval-retrieval`: how well the demo knowledge answers its question set.

Imports scripts/demo_knowledge/ into a throwaway database, asks every question of
scripts/demo_knowledge/eval-questions.yaml and prints, per backend and language:
hit@1 and hit@3 (the expected page is the first / among the first three distinct pages
retrieved) and how often the offline (extractive) answer contains the expected fact.
Backends: SQLite always; PostgreSQL with --postgres URL (or a postgresql DATABASE_URL), in
a database created and dropped for the run.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import tempfile
import uuid
from pathlib import Path

import yaml

from models import alpinechat, knowledge, migrate
from models.chat.config import ChatConfig
from models.chat.providers import ExtractiveProvider, ProviderRequest, TextDelta
from models.db import Database
from scripts.admin_chat import import_files
from scripts.databases import throwaway_postgres

KNOWLEDGE = Path(__file__).with_name("demo_knowledge")
QUESTIONS = KNOWLEDGE / "eval-questions.yaml"


@contextlib.contextmanager
def sqlite_url():
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{folder}/eval.db"


async def offline_answer(question: str, language: str, passages: list[dict], max_tokens: int) -> str:
    request = ProviderRequest(model="extractive", messages=[{"role": "user", "content": question}],
                              max_tokens=max_tokens, question=question, language=language, passages=passages)
    return "".join([event.text async for event in ExtractiveProvider().stream(request)
                    if isinstance(event, TextDelta)])


def evaluate(url: str, questions: list[dict], config: ChatConfig) -> list[dict]:
    migrate.upgrade(url)
    database = Database(url)
    try:
        with database.unit_of_work() as session:
            tenant = alpinechat.create_tenant(session, "Eval", "eval@example.com")
            bot = alpinechat.create_chatbot(session, tenant, f"eval-{uuid.uuid4().hex[:8]}", "Eval", language="de")
            import_files(session, bot, [str(KNOWLEDGE)])
            bot_id = bot.id
        results = []
        for item in questions:
            with database.unit_of_work() as session:
                hits = knowledge.search(session, bot_id, item["q"], limit=12)
                documents = knowledge.get_documents(session, {hit.document_id for hit in hits})
            pages = list(dict.fromkeys(Path(documents[hit.document_id].source).stem for hit in hits))
            # As a chat turn does: the first `retrieval_limit` passages go to the provider.
            passages = [{"title": h.title, "url": h.url, "content": h.content} for h in hits[:config.retrieval_limit]]
            answer = asyncio.run(offline_answer(item["q"], item["lang"], passages, config.max_output_tokens))
            results.append({**item, "pages": pages[:3], "hit1": pages[:1] == [item["doc"]],
                            "hit3": item["doc"] in pages[:3], "fact_found": item["fact"].lower() in answer.lower(),
                            "answer": answer})
        return results
    finally:
        database.dispose()


def report(backend: str, results: list[dict], verbose: bool) -> None:
    groups = collections.defaultdict(list)
    for result in results:
        groups[result["lang"]].append(result)
        groups["all"].append(result)
    print(f"\n{backend}")
    print(f"  {'questions':<10} {'n':>3} {'hit@1':>7} {'hit@3':>7} {'fact in answer':>15}")
    for name in ("de", "en", "it", "all"):
        rows = groups.get(name, [])
        if rows:
            share = lambda key, rows=rows: f"{100 * sum(r[key] for r in rows) / len(rows):.0f}%"  # noqa: E731
            print(f"  {name:<10} {len(rows):>3} {share('hit1'):>7} {share('hit3'):>7} {share('fact_found'):>15}")
    for result in results:
        if verbose or not (result["hit1"] and result["fact_found"]):
            mark = ("hit@1" if result["hit1"] else "hit@3" if result["hit3"] else "miss") + \
                   ("" if result["fact_found"] else ", fact missing")
            print(f"  - [{mark}] {result['q']} -> {', '.join(result['pages']) or 'nothing'} "
                  f"(expected {result['doc']}: {result['fact']!r})")
            if verbose:
                print("      " + result["answer"].replace("\n", " ")[:400])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_pg = (os.environ.get("DATABASE_URL", "")
                  if os.environ.get("DATABASE_URL", "").startswith("postgresql") else None)
    parser.add_argument("--postgres", metavar="URL", default=default_pg,
                        help="also evaluate on PostgreSQL: a server URL (a throwaway database is created there)")
    parser.add_argument("--verbose", action="store_true", help="every question with its answer")
    args = parser.parse_args(argv)
    questions = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    config = ChatConfig.from_env({})
    print(f"{len(questions)} questions over {len(list(KNOWLEDGE.glob('*.md')))} pages of {KNOWLEDGE}")
    with sqlite_url() as url:
        report("SQLite (FTS5 over Snowball stems)", evaluate(url, questions, config), args.verbose)
    if args.postgres:
        with throwaway_postgres(args.postgres, "eval_retrieval") as url:
            report("PostgreSQL (text-search configurations)", evaluate(url, questions, config), args.verbose)
    else:
        print("\nPostgreSQL: skipped (give --postgres URL or a postgresql DATABASE_URL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
