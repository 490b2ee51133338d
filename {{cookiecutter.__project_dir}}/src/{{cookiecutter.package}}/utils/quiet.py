"""Drop Lightning's start-of-run advert for its hosted logger wherever this package runs it."""

from __future__ import annotations

import logging


def no_advert(record: logging.LogRecord) -> bool:
    """False for Lightning's advert for its hosted logger, printed at the start of every run."""
    return "litlogger" not in record.getMessage().lower()


def drop_adverts() -> None:
    """Install ``no_advert`` on Lightning's rank-zero logger (``addFilter`` adds it only once)."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(no_advert)
