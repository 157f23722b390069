"""`python -m api` (or `todo-api`): start the service with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from api.settings import ConfigError, load_settings


def _serve() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "api.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        log_level=settings.log_level,
        # X-Forwarded-For is honoured by the app only from TRUSTED_PROXIES.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=20,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="todo-api", description="The Todo service.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP server (the default)")
    args = parser.parse_args(argv)
    if args.command in (None, "serve"):
        return _serve()
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
