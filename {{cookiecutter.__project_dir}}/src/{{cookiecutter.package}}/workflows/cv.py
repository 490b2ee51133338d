"""``cv``: k-fold cross-validation with out-of-fold (OOF) predictions and tuned thresholds.

``run_cv(fit_args, n_folds, out)`` trains one model per fold with the same ``fit`` flags, the
fold index varying, and writes into ``out``:

- ``folds.csv`` (``image,fold``; identical images share a fold) and ``plan.json``;
- ``fold{k}/`` (that fold's ``checkpoints/`` and ``logs/``), ``fold{k}/best.ckpt`` (its best
  checkpoint by the metric) and ``fold{k}/oof.csv`` (its validation images' probabilities);
- ``oof.csv`` (``image,fold,<class>...``: every ``train.csv`` row once, predicted by the model
  that did not train on it), ``thresholds.json`` (see ``thresholds``) and ``cv.json``.

It records the run's resolved fit configuration in ``fit_config.yaml``. Re-running with the
same ``out`` and settings skips finished folds, resumes an interrupted one from its ``last.ckpt``
and trains again from scratch one killed before its first ``last.ckpt``; other settings are
refused (``--restart`` removes what cv wrote there first). ``predict --ckpt_path OUT`` then
averages the folds' models.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import time
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..cli.argtypes import fit_job_parser, positive_int
from ..utils.atomic import atomic_write, write_csv, write_json, write_text
from ..cli.checkpoints import LAST
from ..utils.errors import DataError
from ..folds import FoldPlan, assign_folds
from ..prep.image_checks import duplicate_groups
from ..utils.hardware import default_num_workers
from .cv_files import (
    BEST,
    FIT_CONFIG,
    FOLDS_CSV,
    OOF,
    PLAN,
    SUMMARY,
    THRESHOLDS,
    clear_cv_folder,
    clear_fold,
    fold_dir,
    fold_leftovers,
    is_cv_folder,
    read_plan,
)
from ..predict.inference import EnsembleClassifier, predict_images, read_checkpoint
from ..predict.submission import write_probabilities
from ..labels import Sample, encode_labels, label_vocabulary, read_train_csv
from ..layout import TRAIN_CSV, TRAIN_IMAGES
from .fit_jobs import config_changes, config_only_cli, fit_config_yaml, run_folder_flags, yaml
from ..cli.lightning import run_cli
from .. import metrics
from ..metrics import decode
from ..thresholds import choose_thresholds
from ..reports.report import summary_table

# Settings a rerun may change and still continue the same cv run (compared: everything else).
SETTINGS_IGNORED = (
    # set by cv for each fold
    "data.split_file",
    "data.fold",
    "checkpoint.dirpath",
    "trainer.default_root_dir",
    "ckpt_path",
    # where the data is read from, not what it is: plan.json and folds.csv pin the images and
    # their labels, and a prepare cache is checked against its data folder and image size
    "data.data_dir",
    "data.cache_dir",
    # how the run is watched, not what it learns
    "trainer.logger",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "checkpoint.verbose",
    # a property of the machine: the loader processes read the same images in the same batches
    # (random augmentations then come from other random streams, as on another machine)
    "data.num_workers",
)


RERUN_ADVICE = "use another --out, or --restart to train it again"


def check_settings(out: Path, settings: str, log: Callable[[str], None]) -> None:
    """``DataError`` naming the differences if ``out`` records other fit settings than these."""
    recorded = out / FIT_CONFIG
    if not recorded.is_file():
        if (out / PLAN).is_file():
            log(
                f"cv: {out} does not record the settings it was trained with (an older version"
                f" wrote it): recording this run's in {FIT_CONFIG}"
            )
        return
    try:
        before = yaml.safe_load(recorded.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{recorded}: unreadable ({type(exc).__name__}); {RERUN_ADVICE}") from None
    if not isinstance(before, dict):
        raise DataError(f"{recorded}: not a fit configuration; {RERUN_ADVICE}")
    changes = config_changes(before, yaml.safe_load(settings), SETTINGS_IGNORED)
    if changes:
        raise DataError(
            f"{out}: holds a cv run with other settings: {', '.join(changes)}; {RERUN_ADVICE}"
        )


def record_settings(out: Path, settings: str) -> None:
    """Write ``fit_config.yaml`` (once: later runs were checked against it)."""
    if not (out / FIT_CONFIG).is_file():
        write_text(
            out / FIT_CONFIG,
            "# The fit settings of this cv run (cv sets the split file, fold and folders of"
            " each fold).\n# A rerun with other settings is refused; `fit --config` reads"
            " this file.\n" + settings,
        )


def restart(out: Path, log: Callable[[str], None]) -> None:
    """``--restart``: remove what cv wrote into ``out``, keeping every other file."""
    if not is_cv_folder(out):
        log(f"cv: --restart: {out} holds no cv run (no {FOLDS_CSV}), nothing removed")
        return
    kept = clear_cv_folder(out)
    also = f" (kept what cv did not write: {', '.join(kept)})" if kept else ""
    log(f"cv: --restart: removed the earlier cv run from {out}{also}")


def make_plan(
    config: Any, samples: list[Sample], n_folds: int, out: Path, log: Callable[[str], None]
) -> FoldPlan:
    """The folds of ``samples``: written on the first run, checked against the folder after that."""
    data_dir = Path(config.data.data_dir)
    images = [sample.image for sample in samples]
    classes = label_vocabulary(samples)
    targets = encode_labels(samples, classes)
    log(f"cv: looking for identical images among {len(images)} ...")
    cache = Path(config.data.cache_dir) if config.data.cache_dir else None
    groups = duplicate_groups(data_dir / TRAIN_IMAGES, images, cache)
    plan = assign_folds(images, targets, n_folds, int(config.data.seed), groups)
    expected = {
        "folds": n_folds,
        "seed": int(config.data.seed),
        "images": len(images),
        "classes": classes,
        "duplicate_groups": len(groups),
        "conflicting_groups": plan.conflicting_groups,
    }
    if (out / PLAN).is_file():
        found = read_plan(out)
        changed = [
            key for key in ("folds", "seed", "images", "classes") if found.get(key) != expected[key]
        ]
        if changed:
            raise DataError(
                f"{out}: holds a cv run with other {', '.join(changed)} ("
                + ", ".join(f"{key}={found.get(key)}" for key in changed)
                + f"); {RERUN_ADVICE}"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        plan.save(out / FOLDS_CSV)
        write_json(out / PLAN, expected)
    return plan


def fold_flags(config: Any, out: Path, fold: int) -> list[str]:
    """The flags that make a ``fit`` train fold ``fold`` into its own folder."""
    run = fold_dir(out, fold)
    flags = ["--data.split_file", str(out / FOLDS_CSV), "--data.fold", str(fold)]
    flags += run_folder_flags(config, run)
    if (run / "checkpoints" / LAST).is_file():
        flags += ["--ckpt_path", "last"]
    return flags


def train_fold(
    fit_args: list[str],
    config: Any,
    out: Path,
    fold: int,
    plan: FoldPlan,
    log: Callable[[str], None],
) -> float | None:
    """Train one fold (resumed from its ``last.ckpt`` if it has one), predict its OOF; its score.

    A fold killed before its first ``last.ckpt`` (after its first best checkpoint, say) has
    nothing to resume from: its outputs are removed and it trains from scratch.
    """
    run = fold_dir(out, fold)
    name = f"fold {fold + 1}/{int(plan.folds.max()) + 1}"
    if not (run / "checkpoints" / LAST).is_file() and fold_leftovers(run):
        log(f"cv: {name}: {run} holds an unfinished start with no {LAST}: training it from scratch")
        clear_fold(run)
    log(f"cv: {name}: training ({run})")
    started = time.monotonic()
    run_cli(["fit", *fit_args, *fold_flags(config, out, fold)])
    score = write_fold_oof(config, out, fold, plan)
    log(f"cv: {name} done in {time.monotonic() - started:.0f} s")
    return score


def write_fold_oof(config: Any, out: Path, fold: int, plan: FoldPlan) -> float | None:
    """Predict the fold's validation images with its best checkpoint, into ``fold{k}/oof.csv``.

    Returns that checkpoint's score (``metrics.logged_key()``)."""
    run = fold_dir(out, fold)
    recorded = read_checkpoint(run / "checkpoints" / LAST).record.get("best_model_path")
    # The recorded path is where the folder was when that checkpoint was saved: a cv folder that
    # was moved or copied since still holds the file, under the same name.
    best = run / "checkpoints" / Path(recorded or "").name
    if not recorded or not best.is_file():
        key = metrics.logged_key()
        raise DataError(f"{run}: the fold's run recorded no best checkpoint (is {key} logged?)")
    _link_or_copy(best, run / BEST)
    data = config.data
    images = [name for name, f in zip(plan.images, plan.folds) if f == fold]
    folder = Path(data.cache_dir or data.data_dir) / TRAIN_IMAGES
    best_checkpoint = read_checkpoint(run / BEST)
    module = EnsembleClassifier.from_checkpoints([best_checkpoint])
    ids, probs = predict_images(
        module,
        folder,
        images,
        int(data.image_size),
        int(data.batch_size),
        default_num_workers(data.num_workers),
        config.trainer.get("accelerator") or "auto",
        config.trainer.get("precision"),
    )
    write_probabilities(run / OOF, ids, probs, module.classes, fold=fold)
    return best_checkpoint.best_model_score


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source`` (a hard link where the filesystem allows it)."""
    with atomic_write(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def pooled_oof(out: Path, plan: FoldPlan, classes: list[str]) -> np.ndarray:
    """Every fold's OOF probabilities, in ``train.csv`` order; written to ``out/oof.csv``."""
    by_image: dict[str, list[str]] = {}
    for fold in sorted(set(int(f) for f in plan.folds)):
        with (fold_dir(out, fold) / OOF).open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            if header[2:] != classes:
                raise DataError(
                    f"{fold_dir(out, fold) / OOF}: classes {header[2:]}, expected {classes}"
                )
            by_image.update({row[0]: row for row in reader})
    missing = [name for name in plan.images if name not in by_image]
    if missing:
        raise DataError(
            f"{out}: no out-of-fold prediction for {len(missing)} images (first: {missing[0]})"
        )
    rows = [by_image[name] for name in plan.images]
    write_csv(out / OOF, ["image", "fold", *classes], rows)
    return np.array([[float(value) for value in row[2:]] for row in rows])


def run_cv(
    fit_args: list[str],
    n_folds: int,
    out: str | Path,
    log: Callable[[str], None] = print,
    restart_run: bool = False,
) -> dict[str, Any]:
    """Train ``n_folds`` folds with ``fit_args``, then pool the OOF predictions; see the module.

    ``restart_run``: first remove what an earlier cv run wrote into ``out``.
    """
    out = Path(out)
    cli = config_only_cli(fit_args)
    config, settings = cli.config.fit, fit_config_yaml(cli)
    samples = read_train_csv(Path(config.data.data_dir) / TRAIN_CSV)
    if restart_run:
        restart(out, log)
    check_settings(out, settings, log)
    plan = make_plan(config, samples, n_folds, out, log)
    record_settings(out, settings)
    classes = label_vocabulary(samples)
    log(
        f"cv: {n_folds} folds of {len(plan.images)} images into {out};"
        f" {len(plan.duplicate_groups)} groups of identical images kept in one fold"
        f" ({plan.conflicting_groups} with conflicting labels)"
    )
    fold_scores = []
    for fold in range(n_folds):
        run = fold_dir(out, fold)
        if (run / BEST).is_file() and (run / OOF).is_file():
            log(f"cv: fold {fold + 1}/{n_folds} is done, skipped")
            fold_scores.append(read_checkpoint(run / BEST).best_model_score)
        else:
            fold_scores.append(train_fold(fit_args, config, out, fold, plan, log))
    probs = pooled_oof(out, plan, classes)
    targets = encode_labels(samples, classes).astype(np.int64)
    default_threshold = float(config.model.threshold)
    report = choose_thresholds(probs, targets, default_threshold, classes)
    report.save(out / THRESHOLDS)
    name = metrics.NAME
    folds_score = [
        metrics.score(targets[plan.folds == k], decode(probs[plan.folds == k], default_threshold))
        for k in range(n_folds)
    ]
    summary = {
        "folds": n_folds,
        "seed": int(config.data.seed),
        "images": len(plan.images),
        "classes": classes,
        "duplicate_groups": len(plan.duplicate_groups),
        "conflicting_groups": plan.conflicting_groups,
        "metric": name,
        f"fold_best_val_{name}": fold_scores,
        f"fold_oof_{name}": folds_score,
        f"oof_{name}_default_threshold": metrics.score(targets, decode(probs, default_threshold)),
        "default_threshold": default_threshold,
        f"oof_{name}_tuned": report.chosen_score,
        "thresholds": report.thresholds_for_predict(),
        "thresholds_used": report.use,
    }
    write_json(out / SUMMARY, summary)
    log(cv_table(summary))
    return summary


def cv_table(summary: dict[str, Any]) -> str:
    """The per-fold and pooled scores as a small text table."""
    name = summary["metric"]
    rows: list[list[object]] = [["fold", f"best val/{name}", f"oof {name}"]]
    folds = zip(summary[f"fold_best_val_{name}"], summary[f"fold_oof_{name}"])
    for fold, (best, oof) in enumerate(folds):
        rows.append([fold, "-" if best is None else f"{best:.4f}", f"{oof:.4f}"])
    lines = [summary_table(rows)]
    lines.append(
        f"pooled OOF {name}: {summary[f'oof_{name}_default_threshold']:.4f} at threshold"
        f" {summary['default_threshold']}, {summary[f'oof_{name}_tuned']:.4f} tuned"
        f" ({summary['thresholds_used']})"
    )
    return "\n".join(lines)


def run_command(argv: Sequence[str]) -> int:
    """``cv --folds K --out DIR [fit flags]``: the command line of ``run_cv``."""
    parser = fit_job_parser(
        "cv",
        "Train K folds with the same fit flags (any flag of `fit`, e.g. --config"
        " configs/baseline.yaml), write out-of-fold predictions, tuned thresholds and cv.json"
        " into --out; run it again to resume (with the same settings: others are refused)."
        " `fit --help` lists the fit flags.",
    )
    parser.add_argument("--folds", type=at_least_two, default=5, help="K (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/cv"), help="default runs/cv")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="remove what an earlier cv run wrote into --out (its folds, oof.csv, thresholds,"
        " cv.json, plan, folds and fit_config.yaml; nothing else) and train again",
    )
    known, fit_args = parser.parse_known_args(argv)
    run_cv(fit_args, known.folds, known.out, restart_run=known.restart)
    return 0


def at_least_two(text: str) -> int:
    """An ``argparse`` type: a number of folds (2 or more)."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text}: cross-validation needs 2 folds or more")
    return value
