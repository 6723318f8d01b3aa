"""Schema migrations with Alembic (async), as ``python -m chorus_api migrate`` runs them.

The Alembic environment ships inside the package, so the installed wheel — the container
image, the chart's migration Job — carries it. Upgrades hold a Postgres advisory lock, so
two pods migrating at once cannot collide.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["MIGRATIONS", "alembic_config", "downgrade", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the packaged migrations against ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def _in_own_thread(action: Callable[[], None]) -> None:
    # The async Alembic environment starts an event loop of its own, which must not
    # disturb one the caller (a test session, an async command) may be running.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="alembic")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def upgrade(database_url: str, *, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (idempotent)."""
    _in_own_thread(lambda: command.upgrade(alembic_config(database_url), revision))


def downgrade(database_url: str, *, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``base`` drops every table)."""
    _in_own_thread(lambda: command.downgrade(alembic_config(database_url), revision))
