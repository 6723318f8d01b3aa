"""Wait until the database schema is at the head revision of the migrations in this image.

Run by the api and worker pods' init container (python /etc/chorus/scripts/wait-for-schema.py):
the migration Job upgrades the schema; pods of a new version start only once it has, so no
pod ever serves against a schema older than its code. Exits 0 when the schema is at head,
1 when --timeout passes first. Reads DATABASE_URL; never changes the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chorus_schema.migrate import alembic_config


def _asyncpg_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


async def _current(url: str) -> set[str]:
    engine = create_async_engine(url, connect_args={"timeout": 5})
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(text("SELECT to_regclass('alembic_version')"))
            if exists is None:
                return set()
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between checks")
    args = parser.parse_args()
    url = _asyncpg_url(os.environ["DATABASE_URL"])
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            current = asyncio.run(_current(url))
            state = f"at {sorted(current) or 'no revision'}, waiting for {sorted(heads)}"
        except Exception as exc:  # the database may not be up yet: keep waiting
            current, state = set(), f"database not reachable ({type(exc).__name__}: {exc})"
        if current == heads:
            print(f"schema is at head {sorted(heads)}", flush=True)
            return 0
        if time.monotonic() >= deadline:
            print(f"gave up after {args.timeout:.0f}s: schema {state}", file=sys.stderr, flush=True)
            return 1
        print(f"schema {state}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
