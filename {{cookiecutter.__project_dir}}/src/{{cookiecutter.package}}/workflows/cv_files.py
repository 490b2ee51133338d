"""The files of a ``cv`` folder: their names, where each fold's run lives, and clearing them:
``CV_FILES`` and each ``fold{k}/``'s ``FOLD_OUTPUTS``, what cv wrote, and nothing else."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..utils.errors import DataError
from ..utils.jsonfile import field, read_json

FOLDS_CSV = "folds.csv"
PLAN = "plan.json"
BEST = "best.ckpt"
OOF = "oof.csv"
THRESHOLDS = "thresholds.json"
SUMMARY = "cv.json"
FIT_CONFIG = "fit_config.yaml"
CV_FILES = (FOLDS_CSV, PLAN, OOF, THRESHOLDS, SUMMARY, FIT_CONFIG)
# What a fold's fit and cv write into fold{k}/: checkpoints, logs (a logger's save_dir, or
# Lightning's default logger), the config Lightning saves there when no logger has a folder.
FOLD_OUTPUTS = ("checkpoints", "logs", "lightning_logs", "config.yaml", BEST, OOF)


def fold_dir(out: Path, fold: int) -> Path:
    """The run folder of one fold."""
    return out / f"fold{fold}"


def clear(folder: Path, names: Sequence[str]) -> bool:
    """Delete the entries ``names`` of ``folder`` (files or whole folders) and the temporary files
    ``atomic_write`` left of them; whether there were any."""
    found = [folder / name for name in names if (folder / name).exists()]
    found += [path for name in names for path in sorted(folder.glob(f".{name}.*.partial"))]
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return bool(found)


def clear_fold(run: Path) -> bool:
    """Remove the fold's own outputs (``FOLD_OUTPUTS``), and the folder when nothing else is left
    in it; whether an earlier start of the fold had written any."""
    found = clear(run, FOLD_OUTPUTS)
    if run.is_dir() and not any(run.iterdir()):
        run.rmdir()
    return found


def clear_cv_folder(out: Path) -> list[str]:
    """Remove what ``cv`` wrote into ``out``, a ``cv`` folder (``is_cv_folder``: elsewhere those
    common names are not cv's to delete); return what is left there."""
    for run in out.iterdir():
        if run.is_dir() and re.fullmatch(r"fold\d+", run.name):
            clear_fold(run)
    clear(out, CV_FILES)
    return sorted(p.name for p in out.iterdir())


def is_cv_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``cv`` (it holds ``folds.csv`` and fold models)."""
    return Path(path).is_dir() and (Path(path) / FOLDS_CSV).is_file()


def fold_checkpoints(out: str | Path) -> list[Path]:
    """``fold{k}/best.ckpt`` of a ``cv`` folder, in fold order; ``DataError`` if one is missing."""
    out = Path(out)
    folds = range(read_plan(out)["folds"])
    missing = [str(k) for k in folds if not (fold_dir(out, k) / BEST).is_file()]
    if missing:
        raise DataError(
            f"{out}: fold(s) {', '.join(missing)} have no {BEST} yet; finish the cv run (run the"
            " same cv command again)"
        )
    return [fold_dir(out, k) / BEST for k in folds]


def read_plan(out: Path) -> dict[str, Any]:
    """The ``plan.json`` of a ``cv`` folder; ``DataError`` if it is missing or damaged."""
    return read_json(
        out / PLAN, lambda plan: dict(plan, folds=field(plan, "folds", int)), "cv plan"
    )
