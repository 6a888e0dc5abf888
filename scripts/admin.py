"""Operator CLI for tenancy and keys: `scripts/admin <group> <action> [--json]`.

Every command first migrates DATABASE_URL to head. Human output is plain-text
tables; `--json` prints the same data as JSON (a created key under "key").
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import alpinechat, migrate, wepeople
from models.config import Settings
from models.db import Database
from models.keys import masked
from scripts import admin_refs as refs
from scripts.admin_refs import CommandError
from scripts.demo_keys import DEFAULT_FILE as DEMO_KEYS_FILE
from scripts.demo_keys import DemoKeyStore

KEY_WARNING = "Store the key now: it is shown only this once and cannot be recovered."


@dataclasses.dataclass
class Output:
    data: dict[str, Any] | list[dict[str, Any]]
    warning: str | None = None


# ── Rendering ────────────────────────────────────────────────────────────────


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "-"
    return str(value)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = [columns, ["-" * width for width in widths], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def render_record(record: dict[str, Any]) -> str:
    flat = _flatten(record)
    width = max(len(key) for key in flat)
    return "\n".join(f"{key.ljust(width)}  {_cell(value)}" for key, value in flat.items())


def emit(output: Output, as_json: bool) -> None:
    if as_json:
        print(json.dumps(output.data, indent=2, default=_plain))
    elif isinstance(output.data, list):
        print(render_table(output.data))
    else:
        print(render_record(output.data))
    if output.warning:
        print(f"WARNING: {output.warning}", file=sys.stderr)


# ── Rows ─────────────────────────────────────────────────────────────────────


def org_row(org: wepeople.Organization) -> dict[str, Any]:
    return {
        "id": str(org.id),
        "name": org.name,
        "plan": org.plan,
        "api_enabled": org.api_enabled,
        "created_at": org.created_at.isoformat(),
    }


def app_row(app: wepeople.App) -> dict[str, Any]:
    return {
        "id": str(app.id),
        "organization_id": str(app.organization_id),
        "slug": app.slug,
        "name": app.name,
        "allowed_event_types": app.allowed_event_types,
        "created_at": app.created_at.isoformat(),
    }


def ingest_key_row(key: wepeople.IngestApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "organization_id": str(key.organization_id),
        "app_id": str(key.app_id),
        "name": key.name,
        "display": masked(key.prefix, key.last4),
        "created_at": key.created_at.isoformat(),
        "last_used_at": _plain(key.last_used_at),
        "revoked_at": _plain(key.revoked_at),
    }


def tenant_row(tenant: alpinechat.Tenant) -> dict[str, Any]:
    return {
        "id": str(tenant.id),
        "name": tenant.name,
        "admin_email": tenant.admin_email,
        "created_at": tenant.created_at.isoformat(),
    }


def chatbot_row(chatbot: alpinechat.Chatbot) -> dict[str, Any]:
    config = chatbot.widget_config
    return {
        "id": str(chatbot.id),
        "tenant_id": str(chatbot.tenant_id),
        "slug": chatbot.slug,
        "title": chatbot.title,
        "active": chatbot.active,
        "language": chatbot.language,
        "lead_capture": bool(config.get("widget", {}).get("lead_capture")),
        "escalation": bool(config.get("escalation", {}).get("enabled")),
        "allowed_origins": chatbot.allowed_origins,
        "model": chatbot.model,
        "monthly_budget_usd": chatbot.monthly_budget_usd,
        "session_message_cap": chatbot.session_message_cap,
        "webhook_url": chatbot.webhook_url,
        "created_at": chatbot.created_at.isoformat(),
    }


def chat_key_row(key: alpinechat.ChatApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "tenant_id": str(key.tenant_id),
        # None: valid for every chatbot of the tenant.
        "chatbot": key.chatbot.slug if key.chatbot else None,
        "name": key.name,
        "scopes": key.scopes,
        "display": masked(key.prefix, key.last4),
        "created_at": key.created_at.isoformat(),
        "last_used_at": _plain(key.last_used_at),
        "revoked_at": _plain(key.revoked_at),
    }


# ── Lookups ──────────────────────────────────────────────────────────────────


def _required(value, what: str):
    if value is None:
        raise CommandError(f"{what} not found")
    return value


def _organization(session: Session, ref: str) -> wepeople.Organization:
    return refs.organization(session, ref)


def _tenant(session: Session, ref: str) -> alpinechat.Tenant:
    return refs.tenant(session, ref)


def _chatbot(session: Session, ref: str) -> alpinechat.Chatbot:
    return refs.chatbot(session, ref)


# ── Commands ─────────────────────────────────────────────────────────────────


def cmd_migrate(session: Session, args) -> Output:
    revision = MigrationContext.configure(session.connection()).get_current_revision()
    return Output({"revision": revision})


def cmd_org_create(session: Session, args) -> Output:
    org = wepeople.create_organization(
        session, args.name, plan=args.plan, api_enabled=not args.api_disabled
    )
    return Output(org_row(org))


def cmd_org_list(session: Session, args) -> Output:
    return Output([org_row(org) for org in wepeople.list_organizations(session)])


def cmd_org_set(session: Session, args) -> Output:
    org = _organization(session, args.org)
    if args.plan is not None:
        org.plan = args.plan
    if args.api_enabled is not None:
        org.api_enabled = args.api_enabled
    return Output(org_row(org))


def cmd_app_create(session: Session, args) -> Output:
    org = _organization(session, args.org)
    app = wepeople.create_app(session, org, args.slug, args.name, args.allowed_event_types)
    return Output(app_row(app))


def cmd_app_list(session: Session, args) -> Output:
    org_id = _organization(session, args.org).id if args.org else None
    return Output([app_row(app) for app in wepeople.list_apps(session, org_id)])


def _app(session: Session, args) -> wepeople.App:
    return refs.app(session, args.app, _organization(session, args.org) if args.org else None)


def cmd_key_create(session: Session, args) -> Output:
    app = _app(session, args)
    key, raw = wepeople.create_ingest_key(session, app, name=args.name)
    return Output({**ingest_key_row(key), "key": raw}, warning=KEY_WARNING)


def cmd_key_list(session: Session, args) -> Output:
    app_id = _app(session, args).id if args.app else None
    keys = wepeople.list_ingest_keys(session, app_id)
    if args.org and not args.app:
        keys = [key for key in keys if key.organization_id == _organization(session, args.org).id]
    return Output([ingest_key_row(key) for key in keys])


def cmd_key_revoke(session: Session, args) -> Output:
    key = _required(wepeople.revoke_ingest_key(session, args.id), f"key {args.id}")
    return Output(ingest_key_row(key))


def cmd_tenant_create(session: Session, args) -> Output:
    return Output(tenant_row(alpinechat.create_tenant(session, args.name, args.admin_email)))


def cmd_tenant_list(session: Session, args) -> Output:
    return Output([tenant_row(tenant) for tenant in alpinechat.list_tenants(session)])


def _widget_changes(args) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.greeting is not None:
        changes["greeting"] = args.greeting
    if args.lead_capture is not None:
        changes["widget"] = {"lead_capture": args.lead_capture}
    if args.escalation is not None:
        changes["escalation"] = {"enabled": args.escalation}
    if args.page_context is not None:
        changes["features"] = {"page_context": {"enabled": args.page_context}}
    return changes


def cmd_chatbot_create(session: Session, args) -> Output:
    chatbot = alpinechat.create_chatbot(
        session,
        _tenant(session, args.tenant),
        args.slug,
        args.title,
        language=args.language,
        active=not args.inactive,
        allowed_origins=args.allowed_origin or (),
        model=args.model,
        monthly_budget_usd=args.monthly_budget_usd,
        session_message_cap=args.session_message_cap,
        widget_config=_widget_changes(args),
    )
    return Output(chatbot_row(chatbot))


def cmd_chatbot_list(session: Session, args) -> Output:
    tenant_id = _tenant(session, args.tenant).id if args.tenant else None
    return Output([chatbot_row(bot) for bot in alpinechat.list_chatbots(session, tenant_id)])


def cmd_chatbot_set(session: Session, args) -> Output:
    chatbot = _chatbot(session, args.chatbot)
    for attribute in ("title", "language", "active", "monthly_budget_usd", "session_message_cap"):
        value = getattr(args, attribute)
        if value is not None:
            setattr(chatbot, attribute, value)
    if args.model is not None:
        chatbot.model = args.model or None
    if args.allowed_origin is not None:
        chatbot.allowed_origins = args.allowed_origin
    alpinechat.update_widget_config(chatbot, _widget_changes(args))
    if args.webhook_url is not None:
        chatbot.webhook_url = args.webhook_url or None
    if not chatbot.webhook_url:
        return Output(chatbot_row(chatbot))
    # Shown whenever a webhook is set: the receiver needs it to verify signatures.
    return Output({**chatbot_row(chatbot), "webhook_secret": alpinechat.ensure_webhook_secret(chatbot)})


def cmd_chat_key_create(session: Session, args) -> Output:
    tenant = _tenant(session, args.tenant)
    chatbot = _chatbot(session, args.chatbot) if args.chatbot else None
    key, raw = alpinechat.create_chat_key(session, tenant, args.scopes, chatbot=chatbot, name=args.name)
    return Output({**chat_key_row(key), "key": raw}, warning=KEY_WARNING)


def cmd_chat_key_list(session: Session, args) -> Output:
    tenant_id = _tenant(session, args.tenant).id if args.tenant else None
    return Output([chat_key_row(key) for key in alpinechat.list_chat_keys(session, tenant_id)])


def cmd_chat_key_revoke(session: Session, args) -> Output:
    key = _required(alpinechat.revoke_chat_key(session, args.id), f"chat key {args.id}")
    return Output(chat_key_row(key))


DEMO_ORG = "Demo Org"
DEMO_APP_SLUG = "demo-app"
DEMO_TENANT = "Demo Tenant"
DEMO_CHATBOT_SLUG = "demo-bot"
DEMO_KEY_NAME = "demo"


def cmd_demo(session: Session, args) -> Output:
    """Creates the demo objects once, and keys for them that later runs reuse (scripts/demo_keys.py)."""
    org = next((o for o in wepeople.list_organizations(session) if o.name == DEMO_ORG), None)
    if org is None:
        org = wepeople.create_organization(session, DEMO_ORG, plan="growth")
    app = wepeople.find_app(session, org, DEMO_APP_SLUG) or wepeople.create_app(
        session, org, DEMO_APP_SLUG, "Demo App"
    )
    # The slug is global: a run after a rename of the tenant still finds the bot.
    chatbot = alpinechat.get_chatbot(session, DEMO_CHATBOT_SLUG)
    if chatbot is None:
        tenant = next((t for t in alpinechat.list_tenants(session) if t.name == DEMO_TENANT), None)
        tenant = tenant or alpinechat.create_tenant(session, DEMO_TENANT, "admin@example.com")
        chatbot = alpinechat.create_chatbot(
            session,
            tenant,
            DEMO_CHATBOT_SLUG,
            "Osttirol Wanderhilfe",
            language="de",
            allowed_origins=["http://localhost:8000"],
            widget_config={
                "greeting": "Servus! Ich helfe dir bei Wanderungen in Osttirol. Wohin soll es gehen?",
                "widget": {"lead_capture": True},
                "escalation": {"enabled": True},
                "features": {"page_context": {"enabled": True}},
            },
        )
    store = DemoKeyStore(Path(args.keys_file), Settings.from_env().database_url)
    ingest_key = store.key(
        "wepeople",
        valid=lambda raw: getattr(wepeople.find_ingest_principal(session, raw), "app_id", None) == app.id,
        issue=lambda: wepeople.create_ingest_key(session, app, name=DEMO_KEY_NAME),
        others=lambda: [k for k in wepeople.list_ingest_keys(session, app.id) if k.name == DEMO_KEY_NAME],
        rotate=args.rotate,
    )
    chat_key = store.key(
        "alpinechat",
        valid=lambda raw: getattr(alpinechat.find_active_chat_key(session, raw), "tenant_id", None)
        == chatbot.tenant_id,
        issue=lambda: alpinechat.create_chat_key(session, chatbot.tenant, ["*"], name=DEMO_KEY_NAME),
        others=lambda: [k for k in alpinechat.list_chat_keys(session, chatbot.tenant_id) if k.name == DEMO_KEY_NAME],
        rotate=args.rotate,
    )
    store.save()
    # The demo bot answers from the shipped pages (re-imported only when they changed).
    from scripts.admin_chat import import_files

    import_files(session, chatbot, [str(Path(__file__).with_name("demo_knowledge"))])
    if store.issued:
        warning = (f"New demo keys ({', '.join(store.issued)}); any earlier ones are revoked. They are kept "
                   f"in {args.keys_file} (local demo only) and reused by the next run.")
    else:
        warning = f"Reusing the demo keys kept in {args.keys_file}; `scripts/admin demo --rotate` replaces them."
    return Output(
        {
            "wepeople": {"organization_id": str(org.id), "app_slug": app.slug, "key": ingest_key},
            "alpinechat": {
                "tenant_id": str(chatbot.tenant_id),
                "chatbot_slug": chatbot.slug,
                "key": chat_key,
            },
        },
        warning=warning,
    )


# ── Parser ───────────────────────────────────────────────────────────────────


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _add_chatbot_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--language", choices=alpinechat.LANGUAGES)
    parser.add_argument("--greeting")
    parser.add_argument("--lead-capture", action=argparse.BooleanOptionalAction)
    parser.add_argument("--escalation", action=argparse.BooleanOptionalAction)
    parser.add_argument("--page-context", action=argparse.BooleanOptionalAction)
    parser.add_argument(
        "--allowed-origin", action="append", metavar="URL", help="repeatable; replaces the list"
    )
    parser.add_argument("--model", help="LLM model; empty for the deployment default")
    parser.add_argument("--monthly-budget-usd", type=float)
    parser.add_argument("--session-message-cap", type=int)


ORG_HELP = "organization id or name"
APP_HELP = "app id or slug"
TENANT_HELP = "tenant id or name"
CHATBOT_HELP = "chatbot id or slug"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog="scripts/admin", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", required=True)

    def command(subparsers, name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(name, parents=[common], help=help)
        sub.set_defaults(handler=handler)
        return sub

    def group(name: str, help: str):
        return groups.add_parser(name, help=help).add_subparsers(dest="action", required=True)

    command(groups, "migrate", cmd_migrate, "migrate the database to head")
    sub = command(groups, "demo", cmd_demo, "seed the demo objects and print their keys (kept for the next run)")
    sub.add_argument("--rotate", action="store_true", help="revoke the demo keys and issue new ones")
    sub.add_argument("--keys-file", default=os.environ.get("DEMO_KEYS_FILE", str(DEMO_KEYS_FILE)),
                     help="where the demo keeps its raw keys (0600; default var/demo-keys.json)")

    org = group("org", "WePeople organizations")
    sub = command(org, "create", cmd_org_create, "create an organization")
    sub.add_argument("--name", required=True)
    sub.add_argument("--plan", choices=wepeople.PLANS, default="starter")
    sub.add_argument("--api-disabled", action="store_true")
    command(org, "list", cmd_org_list, "list organizations")
    sub = command(org, "set", cmd_org_set, "change plan or API access")
    sub.add_argument("--org", "--id", dest="org", required=True, metavar="ORG", help=ORG_HELP)
    sub.add_argument("--plan", choices=wepeople.PLANS)
    api = sub.add_mutually_exclusive_group()
    api.add_argument("--api-enabled", dest="api_enabled", action="store_true", default=None)
    api.add_argument("--api-disabled", dest="api_enabled", action="store_false", default=None)

    app = group("app", "WePeople apps")
    sub = command(app, "create", cmd_app_create, "create an app")
    sub.add_argument("--org", required=True, help=ORG_HELP)
    sub.add_argument("--slug", required=True)
    sub.add_argument("--name", required=True)
    sub.add_argument("--allowed-event-types", type=_csv, help="comma-separated; default: all")
    sub = command(app, "list", cmd_app_list, "list apps")
    sub.add_argument("--org", help=ORG_HELP)

    key = group("key", "WePeople ingest keys (wp_live_*)")
    sub = command(key, "create", cmd_key_create, "issue a key for an app")
    sub.add_argument("--app", required=True, help=APP_HELP)
    sub.add_argument("--org", help=ORG_HELP + "; narrows --app's slug")
    sub.add_argument("--name", default="default")
    sub = command(key, "list", cmd_key_list, "list keys (with their last use, to the minute)")
    sub.add_argument("--app", help=APP_HELP)
    sub.add_argument("--org", help=ORG_HELP)
    sub = command(key, "revoke", cmd_key_revoke, "revoke a key")
    sub.add_argument("--id", type=uuid.UUID, required=True)

    tenant = group("tenant", "AlpineChat tenants")
    sub = command(tenant, "create", cmd_tenant_create, "create a tenant")
    sub.add_argument("--name", required=True)
    sub.add_argument("--admin-email", required=True)
    command(tenant, "list", cmd_tenant_list, "list tenants")

    chatbot = group("chatbot", "AlpineChat chatbots")
    sub = command(chatbot, "create", cmd_chatbot_create, "create a chatbot")
    sub.add_argument("--tenant", required=True, help=TENANT_HELP)
    sub.add_argument("--slug", required=True)
    sub.add_argument("--title", required=True)
    sub.add_argument("--inactive", action="store_true")
    _add_chatbot_options(sub)
    sub.set_defaults(language="de", session_message_cap=alpinechat.DEFAULT_SESSION_MESSAGE_CAP)
    sub = command(chatbot, "list", cmd_chatbot_list, "list chatbots")
    sub.add_argument("--tenant", help=TENANT_HELP)
    sub = command(chatbot, "set", cmd_chatbot_set, "change a chatbot")
    sub.add_argument("--chatbot", "--slug", dest="chatbot", required=True, metavar="CHATBOT", help=CHATBOT_HELP)
    sub.add_argument("--title")
    active = sub.add_mutually_exclusive_group()
    active.add_argument("--active", dest="active", action="store_true", default=None)
    active.add_argument("--inactive", dest="active", action="store_false", default=None)
    sub.add_argument("--webhook-url", help="empty to remove; a signing secret is created on demand")
    _add_chatbot_options(sub)

    chat_key = group("chat-key", "AlpineChat API keys (ac_live_*)")
    sub = command(chat_key, "create", cmd_chat_key_create, "issue a scoped key")
    sub.add_argument("--tenant", required=True, help=TENANT_HELP)
    sub.add_argument("--chatbot", help="bind the key to one chatbot: " + CHATBOT_HELP)
    sub.add_argument(
        "--scopes", type=_csv, required=True, help=f"comma-separated: {', '.join(alpinechat.SCOPES)}"
    )
    sub.add_argument("--name", default="default")
    sub = command(chat_key, "list", cmd_chat_key_list, "list keys (with their last use, to the minute)")
    sub.add_argument("--tenant", help=TENANT_HELP)
    sub = command(chat_key, "revoke", cmd_chat_key_revoke, "revoke a key")
    sub.add_argument("--id", type=uuid.UUID, required=True)

    # Each bounded context adds its own commands: register(command, group).
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(command, group)
    return parser


# Modules with more commands, each defining `register(command, group)`.
COMMAND_MODULES: tuple[str, ...] = (
    "scripts.admin_backoffice",
    "scripts.admin_ingest",
    "scripts.admin_chat",
    "scripts.admin_widget",
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = Settings.from_env().database_url
    migrate.upgrade(url)
    database = Database(url)
    try:
        # Output only after the commit: a printed key must exist.
        with database.unit_of_work() as session:
            output = args.handler(session, args)
    except (CommandError, ValueError, IntegrityError) as exc:
        message = _error_message(exc)
        print(json.dumps({"error": message}) if args.json else f"error: {message}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
    emit(output, args.json)
    return 0


def _error_message(exc: Exception) -> str:
    if isinstance(exc, IntegrityError):
        return "conflicts with an existing record: " + str(exc.orig).splitlines()[0]
    return str(exc)


if __name__ == "__main__":
    # Run the imported module, not this `__main__` copy: command modules raise
    # `scripts.admin.CommandError`, which must be the class `main` catches.
    from scripts.admin import main as imported_main

    sys.exit(imported_main())
