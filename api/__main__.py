"""`python -m api` (or `todo-api`): serve (the default), migrate, export the specs.

    todo-api [serve]                    run the HTTP server (uvicorn, WEB_CONCURRENCY workers)
    todo-api migrate [--revision REV]   upgrade the database to the latest revision (or REV)
    todo-api migrate downgrade REV      revert to REV (`base`: no tables, `-1`: one step)
    todo-api migrate current            print the database's revision
    todo-api migrate revision -m MSG [--autogenerate]   write a new revision (developers)
    todo-api export-schema [--output FILE | --check FILE]    the GraphQL schema (SDL)
    todo-api export-openapi [--output FILE | --check FILE]   the OpenAPI document

A bad setting prints one line naming it and exits 1, as does a failed migration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING

from api.settings import SETTING_ERRORS, Settings, database_target, load_settings

if TYPE_CHECKING:
    from db.migrations import UpgradeResult
    from db.url import DatabaseTarget

log = logging.getLogger("todo.cli")


def _settings_or_none() -> Settings | None:
    try:
        return load_settings()
    except SETTING_ERRORS as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return None


def _serve() -> int:
    settings = _settings_or_none()
    if settings is None:
        return 1
    import uvicorn

    from api.logging import logging_config
    from api.metrics import prepare_multiprocess_dir
    from graphql_schema.router import MAX_BODY_BYTES

    if settings.metrics_enabled:
        prepare_multiprocess_dir()
    uvicorn.run(
        "api.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        log_level=settings.log_level,
        # Applied in every worker process; api.logging's request log replaces uvicorn's.
        log_config=logging_config(settings),
        access_log=False,
        # X-Forwarded-For is honoured by the app only from TRUSTED_PROXIES.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=20,
        # A WebSocket message may be as large as an HTTP body, no larger (uvicorn: 16 MiB).
        ws_max_size=MAX_BODY_BYTES,
    )
    return 0


def _report(database: DatabaseTarget, result: UpgradeResult) -> None:
    print(
        f"database {database.describe()} at revision {result.after or 'base'}"
        f" (was {result.before or 'base'})"
    )


def _migrate(args: argparse.Namespace) -> int:
    action = args.action or "upgrade"
    if args.revision_option is not None and (action != "upgrade" or getattr(args, "to", None)):
        print("migrate: --revision is the target of a plain `migrate` only", file=sys.stderr)
        return 2
    settings = _settings_or_none()
    if settings is None:
        return 1
    from alembic.util import CommandError

    from api.logging import configure_logging
    from db import migrations

    try:
        database = database_target(settings)
    except SETTING_ERRORS as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    configure_logging(settings, migrations_verbose=True)
    try:
        if action == "upgrade":
            revision = args.revision_option or getattr(args, "to", None) or "head"
            result = asyncio.run(migrations.upgrade(database, revision))
            _report(database, result)
        elif action == "downgrade":
            result = asyncio.run(migrations.downgrade(database, args.to))
            _report(database, result)
        elif action == "current":
            current = asyncio.run(migrations.current_revision(database))
            head = migrations.head_revision()
            print(f"{current or 'base'}{' (head)' if current == head else ''}")
        else:  # revision
            paths = asyncio.run(
                migrations.create_revision(database, args.message, autogenerate=args.autogenerate)
            )
            for path in paths:
                print(path)
    except CommandError as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        log.debug("migration failed", exc_info=True)
        print(f"migrate failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _export(command: str, extra: list[str]) -> int:
    from api import specfile  # builds the app: not needed to serve help

    exporter = specfile.schema_main if command == "export-schema" else specfile.openapi_main
    saved_argv = sys.argv
    sys.argv = [f"todo-api {command}", *extra]  # argparse names the command in its messages
    try:
        return exporter(extra)
    finally:
        sys.argv = saved_argv


EXPORTS = ("export-schema", "export-openapi")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-api", description="The Todo service.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="run the HTTP server (the default)")

    migrate = sub.add_parser(
        "migrate",
        help="apply database migrations (upgrade to the latest revision by default)",
        description="Apply database migrations to DATABASE_URL (or the default SQLite file). "
        "Takes the service's environment.",
    )
    migrate.add_argument(
        "--revision",
        dest="revision_option",
        metavar="REV",
        help="upgrade to this revision instead of the latest (head)",
    )
    actions = migrate.add_subparsers(dest="action", metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="upgrade to REV (default: head)")
    upgrade.add_argument("to", nargs="?", metavar="REV", help="target revision (default: head)")
    downgrade = actions.add_parser("downgrade", help="revert to REV (base: everything)")
    downgrade.add_argument("to", metavar="REV", help="target revision: base, -1, or an id")
    actions.add_parser("current", help="print the database's revision ('(head)' when latest)")
    revision = actions.add_parser("revision", help="write a new revision file (developers)")
    revision.add_argument("-m", "--message", required=True, help="what the revision does")
    revision.add_argument(
        "--autogenerate",
        action="store_true",
        help="fill it with what the models add over the database (which must be at head)",
    )

    # Their arguments (--output FILE, --check FILE) belong to api/specfile.py (see main).
    sub.add_parser("export-schema", help="print the GraphQL schema (SDL)", add_help=False)
    sub.add_parser("export-openapi", help="print the OpenAPI document", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in EXPORTS:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command in (None, "serve"):
        return _serve()
    if args.command == "migrate":
        return _migrate(args)
    return _export(args.command, extra)


if __name__ == "__main__":
    sys.exit(main())
