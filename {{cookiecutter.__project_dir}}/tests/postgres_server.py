"""A throw-away PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` on a temporary folder.

The server listens only on a unix socket inside that folder (no TCP port), trusts local
connections, and is stopped and deleted when the ``throwaway_postgres`` context ends, whatever
happened inside it. Its URL has the bare ``postgresql://`` scheme: the tests use the driver
``tune`` picks for it (any installed driver lets them run, so a wrong pick fails, not skips).
``initdb`` refuses to run as root, so as root the server runs as ``nobody``.
Debian and Ubuntu keep the binaries in ``/usr/lib/postgresql/VERSION/bin``, off ``PATH``.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SERVER_USER = "nobody"
PORT = 5432  # only names the socket file: the server opens no TCP port


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (PATH first, then the newest Debian one)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    folders = glob.glob("/usr/lib/postgresql/*/bin")
    folders.sort(key=lambda folder: int(Path(folder).parent.name.split(".")[0] or 0))
    for folder in reversed(folders):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def why_unavailable() -> str | None:
    """Why no throw-away server can start here, or ``None`` when it can."""
    if os.name != "posix":
        return "a throw-away PostgreSQL server needs a POSIX system"
    if find_binaries() is None:
        return "PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)"
    if not any(importlib.util.find_spec(driver) for driver in ("psycopg", "psycopg2")):
        return 'no PostgreSQL driver: pip install -e ".[postgres]"'
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no user {SERVER_USER!r} to run initdb as"
    return None


def as_server_user() -> dict[str, Any]:
    """``subprocess`` arguments that run a command as ``nobody`` when we are root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    user = pwd.getpwnam(SERVER_USER)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def run_tool(folder: Path, *command: str) -> None:
    """Run a PostgreSQL tool in ``folder`` as the server's user; its output in the error."""
    done = subprocess.run(
        command,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        **as_server_user(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}")


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a server, yield a SQLAlchemy URL of its ``postgres`` database, stop and delete it.

    The folder is made outside pytest's ``tmp_path`` (which ``nobody`` cannot enter) and given
    to the server's user; its path is short, as a unix socket's path must be.
    """
    bin_dir = find_binaries()
    assert bin_dir is not None, why_unavailable()
    user = as_server_user()
    # As root, TMPDIR may be a folder nobody cannot enter; /tmp is open to all.
    base = "/tmp" if user and os.path.isdir("/tmp") else None
    folder = Path(tempfile.mkdtemp(prefix="pg-", dir=base))
    if user:
        os.chown(folder, user["user"], user["group"])
    data = folder / "data"
    started = False
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        run_tool(folder, *initdb, "-E", "UTF8", "--no-sync")
        options = f"-k {folder} -c listen_addresses='' -p {PORT} -F"
        started = True
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log")]
        try:
            run_tool(folder, *pg_ctl, "-o", options, "-w", "-t", "60", "start")
        except RuntimeError as exc:
            log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
            raise RuntimeError(f"{exc}\nserver log:\n{log}") from None
        # The bare scheme, as `tune --help` shows it: tune picks the [postgres] extra's driver.
        yield f"postgresql://postgres@/postgres?host={folder}&port={PORT}"
    finally:
        if started:
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                **user,
            )
        shutil.rmtree(folder, ignore_errors=True)


def new_database(url: str, name: str) -> str:
    """Create the empty database ``name`` on the server of ``url``; its URL."""
    import sqlalchemy

    from {{ cookiecutter.package }}.workflows.tune_study import database_url

    engine = sqlalchemy.create_engine(database_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return url.replace("@/postgres?", f"@/{name}?")
