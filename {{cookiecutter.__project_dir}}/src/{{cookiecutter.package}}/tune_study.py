"""The Optuna study ``tune`` works on: its storage, its pruner, and creating or joining it.

- ``make_storage``: the journal file (no server, no heartbeats) or a database URL
  (``postgresql+psycopg2://...``, ``sqlite:///...``) with heartbeats, so the trial of a worker
  that died is failed and run again by a live worker;
- ``open_study``: create the study, or join it when another worker already did.

Both are safe when several workers start at the same moment, on one machine or many.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DataError

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


def shown_url(url: str) -> str:
    """``url`` for a message: its password, if any, replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: nothing to hide that it could find
        return url


def make_storage(storage: str | None, default_journal: Path) -> Any:
    """The study's storage: the journal file ``default_journal``, or the Optuna URL ``storage``."""
    optuna = import_optuna()
    if storage is None:
        from optuna.storages.journal import JournalFileBackend

        default_journal.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(default_journal)))
    if "://" not in storage:
        raise DataError(f"--storage {storage}: expected an Optuna storage URL (sqlite:///f.db)")
    return database_storage(storage)


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


def database_storage(url: str) -> Any:
    """An ``RDBStorage`` on ``url`` with heartbeats, its tables created if the database is new.

    Workers that start together on a new database race to create its tables, and all but one
    may fail (PostgreSQL: a unique key; SQLite: "table ... already exists", "database is
    locked"); the losers try again and find the tables made.
    """
    import sqlalchemy.exc

    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            return rdb_storage(url)
        except sqlalchemy.exc.DBAPIError as exc:
            if attempt < SCHEMA_ATTEMPTS and lost_table_race(exc):
                time.sleep(random.uniform(0.05, 0.2) * attempt)
            elif isinstance(exc, sqlalchemy.exc.OperationalError):
                raise DataError(
                    f"--storage {shown_url(url)}: cannot open the database: {first_line(exc)}"
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


def rdb_storage(url: str) -> Any:
    """``optuna.storages.RDBStorage(url)`` with heartbeats; a URL it cannot use is a DataError."""
    optuna = import_optuna()
    import sqlalchemy.exc

    try:
        with warnings.catch_warnings():
            # Heartbeats are "experimental" since Optuna 2.8; that says nothing to a user.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, **heartbeat_options())
    except ImportError as exc:
        hint = ' (pip install -e ".[postgres]")' if url.startswith("postgres") else ""
        raise DataError(f"--storage {shown_url(url)}: a driver is missing{hint}: {exc}") from None
    except sqlalchemy.exc.ArgumentError as exc:
        raise DataError(f"--storage {shown_url(url)}: not a database URL: {exc}") from None


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
            direction="maximize",
            pruner=pruner,
            load_if_exists=True,
        )
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
