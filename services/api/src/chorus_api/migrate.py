"""Schema migrations with Alembic (async template), run by ``python -m chorus_api migrate``.

The Alembic environment lives in the package (``chorus_api/migrations``) so the installed
wheel — and so the container image and the chart's migration Job — carries it. The
upgrade holds a Postgres advisory lock, so two pods migrating at once cannot collide.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from chorus_api.settings import ApiSettings

__all__ = ["alembic_config", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(settings: ApiSettings) -> Config:
    """An Alembic config pointing at the packaged migrations and the settings' database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = settings.database_url
    return config


def upgrade(settings: ApiSettings, *, revision: str = "head") -> None:
    """Upgrade the schema to ``revision``."""
    command.upgrade(alembic_config(settings), revision)
