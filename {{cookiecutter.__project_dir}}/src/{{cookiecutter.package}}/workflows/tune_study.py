"""The study of ``tune``: its storage (a journal file, or a database with heartbeats, so a dead
worker's trial is retried), pruner, and creating or joining it; safe with workers racing."""

from __future__ import annotations

import contextlib
import random
import re
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

from .. import metrics
from ..utils.errors import DataError, full_disk_named

if TYPE_CHECKING:
    import optuna

HEARTBEAT_SECONDS = 60
MAX_RETRY = 3
SCHEMA_ATTEMPTS = 8
LOST_RACE = ("already exists", "database is locked")  # SQLite's words; PostgreSQL: IntegrityError
# What SQLAlchemy reads as the password of ``scheme://user:password@host``.
USER_INFO_PASSWORD = re.compile(r"^((?:[^:/?#@]+://)?[^:/@]*:)([^@]*)(@)")
QUERY_FIELD = re.compile(r"([?&][^=&]*=)([^&]*)()")
SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token")
DRIVER_INSTALL = {  # the drivers a URL may name that are often missing, and how to install them
    "psycopg": 'pip install -e ".[postgres]"',
    "psycopg2": "pip install psycopg2-binary, or use postgresql://... (the [postgres] extra)",
}
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
STUDY_NAME_MAX = 100  # the journal, its lock file and the study's folder are named after it


def storage_error(url: str, problem: str) -> DataError:
    """``--storage URL: problem`` with the passwords of ``url`` (user-info, secret query fields)
    as ``***``, in the URL and in ``problem`` (a driver's message), as written and decoded."""
    secrets: list[str] = []

    def hide(match: re.Match[str]) -> str:
        head, value, tail = match.groups()  # a user-info head ends with ":", a query field's "="
        secret = head.endswith(":") or any(w in unquote(head).lower() for w in SECRET_WORDS)
        if not value or not secret:
            return match.group(0)
        secrets.extend([value, unquote(value)])
        return f"{head}***{tail}"

    shown = QUERY_FIELD.sub(hide, USER_INFO_PASSWORD.sub(hide, url, count=1))
    for secret in sorted(secrets, key=len, reverse=True):
        problem = problem.replace(secret, "***")
    return DataError(f"--storage {shown}: {problem}")


def check_study_name(name: str) -> None:
    """Refuse a study name that cannot be a plain folder and file name (it names both)."""
    if len(name) > STUDY_NAME_MAX:
        problem = f"at most {STUDY_NAME_MAX} characters (got {len(name)})"
        raise DataError(f"--study: a study name is {problem}")
    if not STUDY_NAME.fullmatch(name):
        problem = "letters, digits, '.', '_' and '-', starting with a letter or a digit"
        raise DataError(f"--study {name!r}: a study name is {problem}")


def journal_storage(path: Path) -> Any:
    """A ``JournalStorage`` on the file ``path``, its folder made; a full disk is a ``disk_full``
    error, and the entry it cut short is removed (the next one would be glued to it)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))  # the backend's default lock, kept to cut the file

    class JournalFile(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            with full_disk_named(path):
                try:
                    super().append_logs(logs)
                except OSError:
                    lock.acquire()
                    try:  # cut the file after its last complete line
                        with contextlib.suppress(OSError), open(path, "rb+") as journal:
                            journal.truncate(journal.read().rfind(b"\n") + 1)
                    finally:
                        lock.release()
                    raise

    with full_disk_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFile(str(path), lock_obj=lock))


def make_storage(storage: str | None, default_journal: Path) -> Any:
    """The study's storage: the journal file ``default_journal``, or the Optuna URL ``storage``."""
    return journal_storage(default_journal) if storage is None else database_storage(storage)


def database_url(storage: str | None) -> Any:
    """The SQLAlchemy ``URL`` of ``storage`` (``None``: the journal file), or a DataError; no
    side effects, so ``tune`` checks it first."""
    if storage is None:
        return None
    if "://" not in storage:
        raise storage_error(
            storage, "expected an Optuna storage URL (sqlite:///f.db, postgresql://user@host/db)"
        )
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        url = make_url(storage)
        url.get_dialect()  # SQLAlchemy knows the database kind (not the driver: not imported)
    except sqlalchemy.exc.ArgumentError as exc:
        raise storage_error(storage, f"not a database URL: {exc}") from None
    except ValueError as exc:  # the only one SQLAlchemy raises: int() cannot read the port
        port = str(exc).rpartition(": ")[2]  # "invalid literal for int() with base 10: 'abc'"
        raise storage_error(storage, f"the port {port} is not a number") from None
    if url.drivername == "postgresql":  # the [postgres] extra's, whatever SQLAlchemy's default
        url = url.set(drivername="postgresql+psycopg")
    return url


def heartbeat_options() -> dict[str, Any]:
    """RDBStorage arguments: a heartbeat, and a retry of the trials whose heartbeat stopped."""
    import optuna

    beat = {"heartbeat_interval": HEARTBEAT_SECONDS, "grace_period": 2 * HEARTBEAT_SECONDS}
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:  # Optuna >= 4.9 renamed the callback and its argument
        return {**beat, "heartbeat_stale_trial_callback": retry(max_retry=MAX_RETRY)}
    return {**beat, "failed_trial_callback": optuna.storages.RetryFailedTrialCallback(MAX_RETRY)}


def database_storage(storage: str) -> Any:
    """An ``RDBStorage`` on the URL ``storage`` with heartbeats, its tables (and a SQLite file's
    folder) made if new. Workers that start together race to make them: the losers try again."""
    import optuna
    import sqlalchemy.exc

    parsed = database_url(storage)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database != ":memory:" and database[:5] != "file:":
        folder = Path(database).parent  # a SQLite URI filename (file:...) is SQLite's to read
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"cannot make the folder {folder}: {exc.strerror}"
            raise storage_error(storage, problem) from None
    url = parsed.render_as_string(hide_password=False)
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **heartbeat_options())
        except ImportError as exc:
            driver = url.split("://")[0].partition("+")[2]
            hint = DRIVER_INSTALL.get(driver, f"install the driver {driver or 'of the URL'}")
            raise storage_error(storage, f"a driver is missing ({hint}): {exc}") from None
        except sqlalchemy.exc.DBAPIError as exc:
            lost_race = isinstance(exc, sqlalchemy.exc.IntegrityError)
            lost_race |= any(words in str(exc).lower() for words in LOST_RACE)
            if attempt < SCHEMA_ATTEMPTS and lost_race:
                time.sleep(random.uniform(0.05, 0.2) * attempt)
            elif isinstance(exc, sqlalchemy.exc.OperationalError):
                driver_said = str(exc.orig or exc).strip().splitlines()[0]
                raise storage_error(storage, f"cannot open the database: {driver_said}") from None
            else:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def make_pruner(name: str) -> Any:
    """``median`` (stop trials below the median of earlier ones at the same epoch) or ``none``."""
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def open_study(name: str, storage: Any, pruner: Any) -> optuna.Study:
    """Create the study, or join it (Optuna loads it when another worker made it first)."""
    import optuna

    direction: Literal["maximize", "minimize"] = (
        "maximize" if metrics.HIGHER_IS_BETTER else "minimize"
    )
    return optuna.create_study(
        study_name=name, storage=storage, direction=direction, pruner=pruner, load_if_exists=True
    )
