"""Drop what Lightning prints on every run that tells a user nothing about the run: the advert for
its hosted logger, and a deprecation warning that torch 2.14 raises inside Lightning's own code."""

from __future__ import annotations

import logging
import warnings

# torch 2.14 deprecates constructing ``LeafSpec``, which Lightning 2.6's ``utilities/_pytree.py``
# does in every fit and predict; nothing a user can change.
UPSTREAM_WARNINGS = [r"`isinstance\(treespec, LeafSpec\)` is deprecated"]


def no_advert(record: logging.LogRecord) -> bool:
    """False for Lightning's advert for its hosted logger, printed at the start of every run."""
    return "litlogger" not in record.getMessage().lower()


def quiet_lightning() -> None:
    """Install ``no_advert`` on Lightning's rank-zero logger (``addFilter`` adds it only once),
    and ignore ``UPSTREAM_WARNINGS``."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(no_advert)
    for message in UPSTREAM_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
