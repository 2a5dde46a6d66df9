"""`quorum keys rotate | status | retire`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict

from shared.config import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="key-encryption keys: rotate, status, retire")
    actions = keys.add_subparsers(dest="keys_action")

    rotate = actions.add_parser("rotate", help="new KEK version; re-wrap all data keys and re-seal secrets "
                                               "(blobs are never re-encrypted)")
    rotate.add_argument("--no-new-version", action="store_true",
                        help="only move everything onto the active version (after editing QUORUM_KEYRING)")
    rotate.set_defaults(func=cmd_rotate)

    show = actions.add_parser("status", help="KEK versions and what each still protects")
    show.set_defaults(func=cmd_status)

    retire = actions.add_parser("retire", help="erase an old KEK version once nothing live uses it")
    retire.add_argument("version", type=int)
    retire.set_defaults(func=cmd_retire)

    keys.set_defaults(func=lambda a: (keys.print_help(), 2)[1])


def _run(coro_factory) -> int:  # noqa: ANN001
    from shared.crypto import keyring_from_settings
    from shared.crypto.errors import CryptoError
    from shared.db import create_engine, create_session_factory

    settings = get_settings()
    if not settings.database_url:
        print("quorum keys needs QUORUM_DATABASE_URL", file=sys.stderr)
        return 2

    async def main() -> int:
        engine = create_engine(settings.database_url, pool_size=2, application_name="quorum-keys")
        try:
            ring = keyring_from_settings(settings)
            return await coro_factory(create_session_factory(engine), ring)
        except CryptoError as exc:
            print(f"quorum keys: {exc}", file=sys.stderr)
            return 1
        finally:
            await engine.dispose()

    return asyncio.run(main())


def cmd_rotate(args: argparse.Namespace) -> int:
    from services.api.rotation import service

    async def run(factory, ring) -> int:  # noqa: ANN001
        report = await service.rotate(factory, ring, add_version=not args.no_new_version)
        print(json.dumps(asdict(report), indent=2))
        if report.secrets_failed:
            print("some sealed secrets could not be opened and were left as they are", file=sys.stderr)
            return 1
        print(f"key version {report.active_version} is active; run `quorum keys status`, then "
              f"`quorum keys retire {report.previous_version}` once every api process has reloaded",
              file=sys.stderr)
        return 0

    return _run(run)


def cmd_status(args: argparse.Namespace) -> int:
    from services.api.rotation import service

    async def run(factory, ring) -> int:  # noqa: ANN001
        current = await service.status(factory, ring)
        print(json.dumps({**asdict(current), "retireable": current.retireable()}, indent=2, default=str))
        return 0

    return _run(run)


def cmd_retire(args: argparse.Namespace) -> int:
    from services.api.rotation import service

    async def run(factory, ring) -> int:  # noqa: ANN001
        await service.retire(factory, ring, args.version)
        print(f"key version {args.version} retired")
        return 0

    return _run(run)
