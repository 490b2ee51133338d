"""The Optuna study ``tune`` works on: its storage, its pruner, and creating or joining it.

- ``make_storage``: the journal file (no server, no heartbeats) or a database URL
  (``postgresql://...`` through psycopg 3, the ``[postgres]`` extra; ``sqlite:///...``, its
  folder made) with heartbeats, so the trial of a worker that died is failed and run again by a
  live worker. No message shows a password of the URL (user-info or query field);
- ``open_study``: create the study, or join it when another worker already did.

Both are safe when several workers start at the same moment, on one machine or many.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .. import metrics
from ..utils.errors import DataError, full_disk_named

if TYPE_CHECKING:
    import optuna

HEARTBEAT_SECONDS = 60
MAX_RETRY = 3
SCHEMA_ATTEMPTS = 8
INSTALL_HINT = 'tune needs Optuna: pip install -e ".[tune]"'


def import_optuna() -> Any:
    """The ``optuna`` module, or a ``DataError`` saying which extra to install."""
    try:
        import optuna
    except ImportError:
        raise DataError(INSTALL_HINT) from None
    return optuna


# What SQLAlchemy reads as the password of ``scheme://user:password@host``.
USER_INFO_PASSWORD = re.compile(r"^((?:[^:/?#@]+://)?[^:/@]*):([^@]*)@")
# The port of a URL, as SQLAlchemy finds it (after the user-info, an [IPv6] or a host name).
URL_PORT = re.compile(r"^[^:/]+://(?:[^:/]*(?::[^@]*)?@)?(?:\[[^/?]+\]|[^/:?]*):([^/?]*)")
QUERY_FIELD = re.compile(r"([?&])([^=&]*)=([^&]*)")
SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token")
# The driver of each dialect whose module may be missing, and how to install it.
DRIVER_INSTALL = {
    "psycopg": 'pip install -e ".[postgres]"',
    "psycopg2": "pip install psycopg2-binary, or use postgresql://... (the [postgres] extra)",
}
# The driver the [postgres] extra installs, for bare postgresql:// (SQLAlchemy 2.1's default;
# 2.0's is psycopg2).
POSTGRES_DRIVER = "psycopg"
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
STUDY_NAME_MAX = 100  # the journal, its lock file and the study's folder are named after it


def secret_field(key: str) -> bool:
    """Whether the query field ``key`` of a storage URL holds a password or the like."""
    return any(word in unquote(key).lower() for word in SECRET_WORDS)


def url_secrets(url: str) -> list[str]:
    """The passwords in ``url``: its user-info password and secret query fields, as written."""
    found = []
    user_info = USER_INFO_PASSWORD.match(url)
    if user_info and user_info.group(2):
        found.append(user_info.group(2))
    for _, key, value in QUERY_FIELD.findall(url):
        if value and secret_field(key):
            found.append(value)
    return found


def shown_url(url: str) -> str:
    """``url`` for a message: its user-info password and secret query fields as ``***``."""
    shown = USER_INFO_PASSWORD.sub(r"\1:***@", url, count=1)

    def field(match: re.Match[str]) -> str:
        sep, key, value = match.groups()
        return f"{sep}{key}={'***' if value and secret_field(key) else value}"

    return QUERY_FIELD.sub(field, shown)


def storage_error(url: str, problem: str) -> DataError:
    """The one-line error ``--storage URL: problem``, with no password of ``url`` in it (the
    problem, a driver's message, is searched for them too, as written and decoded)."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        for form in (secret, unquote(secret)):
            problem = problem.replace(form, "***")
    return DataError(f"--storage {shown_url(url)}: {problem}")


def check_study_name(name: str) -> None:
    """Refuse a study name that cannot be a plain folder and file name (it names both)."""
    if len(name) > STUDY_NAME_MAX:
        raise DataError(
            f"--study: a study name is at most {STUDY_NAME_MAX} characters (got {len(name)})"
        )
    if not STUDY_NAME.fullmatch(name):
        raise DataError(
            f"--study {name!r}: a study name is letters, digits, '.', '_' and '-', starting with"
            " a letter or a digit"
        )


def journal_file(path: Path) -> Any:
    """The journal file backend on ``path``, its folder made; on a full disk, a ``disk_full``
    error, and the entry the disk cut short is removed (else the next one would be glued to it).
    """
    from optuna.storages.journal import JournalFileBackend

    class JournalFile(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            with full_disk_named(path):
                try:
                    super().append_logs(logs)
                except OSError:
                    self.drop_partial_entry()
                    raise

        def drop_partial_entry(self) -> None:
            """Cut the file after its last complete line, under the journal's own lock."""
            self._lock.acquire()
            try:
                with contextlib.suppress(OSError), open(path, "rb+") as journal:
                    journal.truncate(journal.read().rfind(b"\n") + 1)
            finally:
                self._lock.release()

    with full_disk_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalFile(str(path))


def make_storage(storage: str | None, default_journal: Path) -> Any:
    """The study's storage: the journal file ``default_journal``, or the Optuna URL ``storage``."""
    optuna = import_optuna()
    url = check_storage(storage)
    if storage is None or url is None:
        return optuna.storages.JournalStorage(journal_file(default_journal))
    make_sqlite_folder(storage, url)
    return database_storage(storage, url.render_as_string(hide_password=False))


def check_storage(storage: str | None) -> Any:
    """The SQLAlchemy ``URL`` of ``storage`` (``None``: the journal file); a DataError for one
    that cannot be read. Quick and without side effects, so ``tune`` checks it first."""
    if storage is None:
        return None
    if "://" not in storage:
        raise storage_error(
            storage, "expected an Optuna storage URL (sqlite:///f.db, postgresql://user@host/db)"
        )
    return database_url(storage)


def database_url(storage: str) -> Any:
    """``storage`` parsed by SQLAlchemy (a ``URL``); bare ``postgresql://`` gets the driver of
    the [postgres] extra, so the extra and the form ``tune --help`` shows agree on any SQLAlchemy.
    """
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        url = make_url(storage)
        url.get_dialect()  # SQLAlchemy knows the database kind (not the driver: not imported)
    except sqlalchemy.exc.ArgumentError as exc:
        raise storage_error(storage, f"not a database URL: {exc}") from None
    except ValueError:  # the only one SQLAlchemy raises: a port int() cannot read
        port = URL_PORT.match(storage)
        problem = f"the port {port.group(1)!r}" if port else "the port"
        raise storage_error(storage, f"{problem} is not a number") from None
    if url.drivername == "postgresql":
        url = url.set(drivername=f"postgresql+{POSTGRES_DRIVER}")
    return url


def make_sqlite_folder(storage: str, url: Any) -> None:
    """Create the folder of a SQLite database file (``sqlite:///runs/tune/studies.db``)."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:"):  # a SQLite URI filename: SQLite reads it, not us
        return
    folder = Path(database).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(storage, f"cannot make the folder {folder}: {exc.strerror}") from None


def heartbeat_options() -> dict[str, Any]:
    """RDBStorage arguments: a heartbeat, and a retry of the trials whose heartbeat stopped."""
    optuna = import_optuna()
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:  # Optuna >= 4.9 renamed the callback and its argument
        callback = {"heartbeat_stale_trial_callback": retry(max_retry=MAX_RETRY)}
    else:
        callback = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(MAX_RETRY)}
    return {
        "heartbeat_interval": HEARTBEAT_SECONDS,
        "grace_period": 2 * HEARTBEAT_SECONDS,
        **callback,
    }


def database_storage(storage: str, url: str) -> Any:
    """An ``RDBStorage`` on ``url`` (``storage`` as given) with heartbeats, its tables created
    if the database is new.

    Workers that start together on a new database race to create its tables, and all but one
    may fail (PostgreSQL: a unique key; SQLite: "table ... already exists", "database is
    locked"); the losers try again and find the tables made.
    """
    import sqlalchemy.exc

    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            return rdb_storage(storage, url)
        except sqlalchemy.exc.DBAPIError as exc:
            if attempt < SCHEMA_ATTEMPTS and lost_table_race(exc):
                time.sleep(random.uniform(0.05, 0.2) * attempt)
            elif isinstance(exc, sqlalchemy.exc.OperationalError):
                raise storage_error(
                    storage, f"cannot open the database: {first_line(exc)}"
                ) from None
            else:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def lost_table_race(exc: Exception) -> bool:
    """Whether ``exc`` is what a worker gets when another one is creating the same tables."""
    import sqlalchemy.exc

    text = str(exc).lower()
    return isinstance(exc, sqlalchemy.exc.IntegrityError) or any(
        words in text for words in ("already exists", "database is locked")
    )


def first_line(exc: Exception) -> str:
    """The driver's own message of a database error, first line only."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def rdb_storage(storage: str, url: str) -> Any:
    """``optuna.storages.RDBStorage(url)`` with heartbeats; a URL it cannot use is a DataError
    naming ``storage``, the URL as given."""
    optuna = import_optuna()
    import sqlalchemy.exc

    try:
        with warnings.catch_warnings():
            # Heartbeats are "experimental" since Optuna 2.8; that says nothing to a user.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, **heartbeat_options())
    except ImportError as exc:
        driver = url.split("://")[0].partition("+")[2]
        hint = DRIVER_INSTALL.get(driver, f"install the driver {driver or 'of the URL'}")
        raise storage_error(storage, f"a driver is missing ({hint}): {exc}") from None
    except sqlalchemy.exc.ArgumentError as exc:
        raise storage_error(storage, f"not a database URL: {exc}") from None


def make_pruner(name: str) -> Any:
    """``median`` (stop trials below the median of earlier ones at the same epoch) or ``none``."""
    optuna = import_optuna()
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def open_study(name: str, storage: Any, pruner: Any) -> optuna.Study:
    """Create the study, or load it when it exists (several workers may start at once)."""
    optuna = import_optuna()
    try:
        return optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize" if metrics.HIGHER_IS_BETTER else "minimize",
            pruner=pruner,
            load_if_exists=True,
        )
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
