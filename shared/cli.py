"""`quorum`: start everything, serve one service, migrate, inspect dead letters, and domain commands."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import signal
import sys

from shared.config import SERVICES, Settings, get_settings

# Domain modules that add subcommands: each exposes `register(subparsers)`.
COMMAND_MODULES: list[str] = ["services.api.identity.cli", "services.api.rotation.commands", "services.api.imports.cli"]

log = logging.getLogger("quorum.cli")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quorum", description="Quorum data-labeling backend")
    sub = parser.add_subparsers(dest="command")

    up = sub.add_parser("up", help="start everything (embedded PostgreSQL/Redis unless configured) behind one URL")
    up.add_argument("--host", default=None)
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--no-demo", action="store_true", help="do not seed the demo organisation and project")
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run one service as in production")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply (or roll back) database migrations")
    migrate.add_argument("--service", choices=SERVICES, action="append")
    migrate.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION (e.g. base)")
    migrate.set_defaults(func=cmd_migrate)

    dlq = sub.add_parser("dlq", help="inspect or replay dead-lettered events")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("service", choices=SERVICES, help="the consuming service whose dead letters to use")
    dlq.add_argument("--id", action="append", dest="ids", help="only these dead-letter entry ids")
    dlq.set_defaults(func=cmd_dlq)

    config = sub.add_parser("config", help="print the effective configuration (secrets hidden)")
    config.set_defaults(func=lambda a: print(json.dumps(get_settings().redacted(), indent=2, default=str)))

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def cmd_up(args: argparse.Namespace) -> int:
    import uvicorn

    from shared.embedded import ensure_infrastructure
    from shared.gateway import create_gateway
    from shared.migrations import upgrade_all
    from shared.observability import configure_logging

    base = get_settings()
    configure_logging("quorum", base.log_level)
    base.data_dir.mkdir(parents=True, exist_ok=True)
    infra = ensure_infrastructure(base.database_url, base.redis_url, base.data_dir)
    try:
        host = args.host or base.host
        port = args.port or base.port
        public = base.public_base_url or f"http://{host}:{port}"
        settings = base.model_copy(update={"database_url": infra.database_url, "redis_url": infra.redis_url,
                                           "public_base_url": public, "migrate_on_start": False})
        upgrade_all(settings.database_url)
        app = create_gateway(settings)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on",
                                               proxy_headers=False))
        _print_banner(public)
        if not args.no_demo:
            _seed_demo_when_ready(settings, public)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: end quietly, and make SIGTERM
        # unwind like Ctrl-C (its default action would kill us before the embedded servers are stopped).
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
    finally:
        infra.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _seed_demo_when_ready(settings: Settings, public: str) -> None:
    """Create the demo admin now; seed the project over HTTP from a thread once the server answers."""
    import threading

    from services.api import demo

    credentials = asyncio.run(demo.ensure_admin(settings))

    def seed() -> None:
        try:
            seeded = demo.seed_over_http(public, credentials)
        except Exception as exc:  # the server runs on; the demo is a convenience
            print(f"  demo seeding failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return
        lines = ["", "  Demo is ready:",
                 f"    sign in     POST {public}/api/v1/auth/login  as {credentials['email']}",
                 f"    password    in {demo.credentials_path(settings.data_dir)} (readable only by you)",
                 *(f"    {k:<11} {v}" for k, v in seeded.items()), ""]
        print("\n".join(lines), flush=True)

    threading.Thread(target=seed, name="demo-seed", daemon=True).start()


def _print_banner(public: str) -> None:
    lines = [
        "",
        f"  Quorum is starting at {public}",
        f"    api        {public}/api/v1/healthz       docs {public}/api/v1/docs",
        f"    worker     {public}/api/v1/distribution/healthz   docs {public}/api/v1/distribution/docs",
        f"    consensus  {public}/api/v1/consensus/healthz      docs {public}/api/v1/consensus/docs",
    ]
    lines.append("  Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from shared.observability import configure_logging

    settings = get_settings()
    missing = [name for name in ("database_url", "redis_url") if not getattr(settings, name)]
    if missing:
        print(f"quorum serve needs QUORUM_{missing[0].upper()} (production does not start embedded servers)",
              file=sys.stderr)
        return 2
    configure_logging(args.service, settings.log_level)
    uvicorn.run(f"services.{args.service}.app:create_app", factory=True, host=args.host or settings.host,
                port=args.port or settings.port, workers=args.workers, log_config=None, proxy_headers=True)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.migrations import downgrade, upgrade

    settings = get_settings()
    if not settings.database_url:
        print("quorum migrate needs QUORUM_DATABASE_URL", file=sys.stderr)
        return 2
    services = args.service or list(SERVICES)
    for service in (reversed(services) if args.downgrade else services):
        if args.downgrade:
            downgrade(service, settings.database_url, args.downgrade)
        else:
            upgrade(service, settings.database_url)
        print(f"{service}: {'downgraded to ' + args.downgrade if args.downgrade else 'at head'}")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from shared.events.consumer import dead_letter_stream, list_dead_letters, replay_dead_letters
    from shared.redis import create_redis

    settings = get_settings()
    if not settings.redis_url:
        print("quorum dlq needs QUORUM_REDIS_URL", file=sys.stderr)
        return 2

    async def run() -> int:
        redis = create_redis(settings.redis_url)
        stream = dead_letter_stream(settings.stream_prefix, args.service)
        try:
            if args.action == "list":
                for entry_id, fields in await list_dead_letters(redis, stream):
                    print(json.dumps({"id": entry_id, "type": fields.get("type"),
                                      "source": fields.get("dlq_source_stream"),
                                      "reason": fields.get("dlq_reason"), "envelope": fields.get("envelope")}))
                return 0
            count = await replay_dead_letters(redis, stream, args.ids)
            print(f"replayed {count} event(s)")
            return 0
        finally:
            await redis.aclose()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
