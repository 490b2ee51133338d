"""Lightning's start-of-run advert for its hosted logger, dropped wherever this package trains or
predicts (the command line, and the offline notebook that never imports it)."""

from __future__ import annotations

import logging


class NoAdverts(logging.Filter):
    """Drop Lightning's advert for its hosted logger, printed at the start of every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


def drop_adverts() -> None:
    """Install the filter on Lightning's rank-zero logger (once, however often it is called)."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(existing, NoAdverts) for existing in logger.filters):
        logger.addFilter(NoAdverts())
