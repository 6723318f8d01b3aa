"""``python -m chorus_api`` serves the api; ``python -m chorus_api migrate`` upgrades the schema."""

from __future__ import annotations

import argparse

from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_common.server import run
from chorus_schema.migrate import upgrade


def main() -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m chorus_api")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve HTTP (the default)")
    migrate = sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    migrate.add_argument("--revision", default="head")
    args = parser.parse_args()
    settings = ApiSettings()
    if args.command == "migrate":
        upgrade(settings.database_url, revision=args.revision)
    else:
        run(create_app(settings), settings)


if __name__ == "__main__":
    main()
