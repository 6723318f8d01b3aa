"""SQLAlchemy: what the session-less Reader (``transport/reader.py``) compiles statements with.

The Reader compiles Core statements once for the asyncpg dialect and runs the SQL on
asyncpg itself, so it reads the compiled statement's parameter order (``positiontup``) and
bind parameters (``binds``), and opens its pool with the dialect's connect arguments minus
those only SQLAlchemy's adapter understands. SQLAlchemy is pinned below its next minor
release in ``pyproject.toml``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

USERS = Table(
    "users",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("email", String),
)


def test_a_compiled_select_has_positional_parameters_in_order() -> None:
    dialect = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]
    statement = select(USERS.c.email).where(
        USERS.c.id == bindparam("user_id"), USERS.c.email != bindparam("email")
    )
    compiled = statement.compile(dialect=dialect)
    assert tuple(compiled.positiontup or ()) == ("user_id", "email")
    assert set(compiled.binds) == {"user_id", "email"}
    assert "$1" in str(compiled)
    assert "$2" in str(compiled)


def test_the_adapter_only_arguments_are_where_we_drop_them() -> None:
    dialect = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]
    url = make_url("postgresql+asyncpg://u:p@db:5433/chorus?prepared_statement_cache_size=0")
    _, arguments = dialect.create_connect_args(url)
    assert {"host", "port", "user", "password", "database"} <= set(arguments)
    # Passed on by the adapter, refused by asyncpg.connect: the Reader drops it.
    assert arguments["prepared_statement_cache_size"] == 0
