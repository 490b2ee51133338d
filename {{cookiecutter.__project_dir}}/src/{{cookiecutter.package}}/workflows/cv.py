"""``cv``: k-fold cross-validation with out-of-fold (OOF) predictions and tuned thresholds.

``run_cv`` trains one model per fold with the same ``fit`` flags into ``out``: ``folds.csv``
(duplicate images share a fold), ``plan.json``, ``fit_config.yaml`` (the fit settings),
``fold{k}/`` (its ``checkpoints/``, ``logs/``, ``best.ckpt`` and the ``oof.csv`` of its validation
images), then ``oof.csv`` (every ``train.csv`` row, predicted by the model that did not train on
it), ``thresholds.json`` and ``cv.json``. A rerun with the same settings skips finished folds and
resumes an interrupted one (or retrains it if it has no ``last.ckpt``); other settings are
refused. ``predict --ckpt_path OUT`` then averages the folds' models.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics
from ..cli.argtypes import fit_job_parser, positive_int
from ..cli.checkpoints import LAST
from ..cli.lightning import run_cli
from ..folds import FoldPlan, assign_folds
from ..labels import Sample, encode_labels, label_vocabulary, read_train_csv
from ..layout import TRAIN_CSV, TRAIN_IMAGES
from ..metrics import decode
from ..predict.inference import EnsembleClassifier, predict_images, read_checkpoint
from ..predict.submission import write_probabilities
from ..prep.duplicates import near_duplicate_groups
from ..reports.ledger import record_cv_folder
from ..reports.report import summary_table
from ..thresholds import choose_thresholds
from ..utils.atomic import atomic_write, write_csv, write_json, write_text
from ..utils.errors import DataError
from ..utils.hardware import default_num_workers
from .cv_files import BEST, FIT_CONFIG, FOLDS_CSV, OOF, PLAN, SUMMARY, THRESHOLDS
from .cv_files import clear_cv_folder, clear_fold, fold_dir, is_cv_folder, read_plan
from .fit_jobs import config_changes, config_only_cli, fit_config_yaml, run_folder_flags, yaml

# Settings a rerun may change and still continue the same cv run: those cv sets per fold; where
# the data is read from (plan.json and folds.csv pin the images and labels, a prepare cache is
# checked against its data folder and image size); how the run is watched; the loader processes
# (a property of the machine). Everything else is compared.
SETTINGS_IGNORED = (
    *("data.split_file", "data.fold", "checkpoint.dirpath", "trainer.default_root_dir"),
    *("ckpt_path", "data.data_dir", "data.cache_dir", "trainer.logger", "checkpoint.verbose"),
    *("trainer.log_every_n_steps", "trainer.enable_progress_bar", "trainer.enable_model_summary"),
    "data.num_workers",
)
Log = Callable[[str], None]
RERUN_ADVICE = "use another --out, or --restart to train it again"
FIT_CONFIG_HEADER = (
    "# The fit settings of this cv run (cv sets the split file, fold and folders of each fold).\n"
    "# A rerun with other settings is refused; `fit --config` reads this file.\n"
)


def prepare_folder(
    config: Any,
    settings: str,
    samples: list[Sample],
    n_folds: int,
    out: Path,
    log: Log,
    assigned: tuple[FoldPlan, dict[str, Any]] | None = None,
) -> tuple[FoldPlan, dict[str, Any]]:
    """The folds (written first, then checked with ``fit_config.yaml``), or ``DataError``;
    ``assigned``: folds and their ``plan.json`` fields to use instead (``distill``: the
    teacher's)."""
    recorded = out / FIT_CONFIG
    if recorded.is_file():
        try:
            before = yaml.safe_load(recorded.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            kind = type(exc).__name__
            raise DataError(f"{recorded}: unreadable ({kind}); {RERUN_ADVICE}") from None
        if not isinstance(before, dict):
            raise DataError(f"{recorded}: not a fit configuration; {RERUN_ADVICE}")
        changes = config_changes(before, yaml.safe_load(settings), SETTINGS_IGNORED)
        if changes:
            raise DataError(
                f"{out}: holds a cv run with other settings: {', '.join(changes)}; {RERUN_ADVICE}"
            )
    elif (out / PLAN).is_file():
        log(
            f"cv: {out} does not record the settings it was trained with (an older version"
            f" wrote it): recording this run's in {FIT_CONFIG}"
        )
    if assigned is None:
        images, classes = [sample.image for sample in samples], label_vocabulary(samples)
        log(f"cv: looking for duplicate images among {len(images)} ...")
        cache = Path(config.data.cache_dir) if config.data.cache_dir else None
        folder, distance = Path(config.data.data_dir) / TRAIN_IMAGES, config.data.duplicate_distance
        groups = near_duplicate_groups(folder, images, distance, cache)
        targets = encode_labels(samples, classes)
        seed = int(config.data.seed)
        plan = assign_folds(images, targets, n_folds, seed, groups)
        expected: dict[str, Any] = dict(
            folds=n_folds, seed=seed, images=len(images), classes=classes
        )
        expected.update(duplicate_groups=len(groups), conflicting_groups=plan.conflicting_groups)
    else:
        plan, expected = assigned
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
    if not recorded.is_file():
        write_text(recorded, FIT_CONFIG_HEADER + settings)
    return plan, expected


def train_fold(
    fit_args: list[str], config: Any, run: Path, fold: int, plan: FoldPlan
) -> float | None:
    """Train one fold (from its ``last.ckpt`` if it has one), write its ``oof.csv``; its score."""
    flags = ["--data.split_file", str(run.parent / FOLDS_CSV), "--data.fold", str(fold)]
    flags += run_folder_flags(config, run)
    if (run / "checkpoints" / LAST).is_file():
        flags += ["--ckpt_path", "last"]
    run_cli(["fit", *fit_args, *flags])
    recorded = read_checkpoint(run / "checkpoints" / LAST).record.get("best_model_path")
    # The recorded path is where the folder was when that checkpoint was saved: a cv folder that
    # was moved or copied since still holds the file, under the same name.
    best = run / "checkpoints" / Path(recorded or "").name
    if not recorded or not best.is_file():
        key = metrics.logged_key()
        raise DataError(f"{run}: the fold's run recorded no best checkpoint (is {key} logged?)")
    with atomic_write(run / BEST) as tmp:  # a hard link where the filesystem allows it
        tmp.unlink()
        try:
            os.link(best, tmp)
        except OSError:
            shutil.copyfile(best, tmp)
    data, best_checkpoint = config.data, read_checkpoint(run / BEST)
    module = EnsembleClassifier.from_checkpoints([best_checkpoint])
    folder = Path(data.cache_dir or data.data_dir) / TRAIN_IMAGES
    images = [name for name, f in zip(plan.images, plan.folds) if f == fold]
    loader = int(data.image_size), int(data.batch_size), default_num_workers(data.num_workers)
    device = config.trainer.get("accelerator") or "auto", config.trainer.get("precision")
    ids, probs = predict_images(module, folder, images, *loader, *device)
    write_probabilities(run / OOF, ids, probs, module.classes, fold=fold)
    return best_checkpoint.best_model_score


def pooled_oof(out: Path, plan: FoldPlan, classes: list[str]) -> np.ndarray:
    """Every fold's OOF probabilities, in ``train.csv`` order; written to ``out/oof.csv``."""
    by_image: dict[str, list[str]] = {}
    for fold in np.unique(plan.folds):
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
    log: Log = print,
    restart_run: bool = False,
    assigned: tuple[FoldPlan, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train ``n_folds`` folds with ``fit_args`` (``restart_run``: first remove an earlier cv run
    from ``out``; ``assigned``: the folds to train, see ``prepare_folder``), then pool the OOF
    predictions; see the module."""
    out = Path(out)
    cli = config_only_cli(fit_args)
    config = cli.config.fit
    samples = read_train_csv(Path(config.data.data_dir) / TRAIN_CSV)
    if restart_run and not is_cv_folder(out):
        log(f"cv: --restart: {out} holds no cv run (no {FOLDS_CSV}), nothing removed")
    elif restart_run:
        kept = clear_cv_folder(out)
        also = f" (kept what cv did not write: {', '.join(kept)})" if kept else ""
        log(f"cv: --restart: removed the earlier cv run from {out}{also}")
    settings = fit_config_yaml(cli)
    plan, info = prepare_folder(config, settings, samples, n_folds, out, log, assigned)
    log(
        f"cv: {n_folds} folds of {len(plan.images)} images into {out};"
        f" {info['duplicate_groups']} groups of duplicate images kept in one fold"
        f" ({plan.conflicting_groups} with conflicting labels)"
    )
    fold_scores = []
    for fold in range(n_folds):
        run, name = fold_dir(out, fold), f"fold {fold + 1}/{n_folds}"
        if (run / BEST).is_file() and (run / OOF).is_file():
            log(f"cv: {name} is done, skipped")
            fold_scores.append(read_checkpoint(run / BEST).best_model_score)
            continue
        if not (run / "checkpoints" / LAST).is_file() and clear_fold(run):
            unfinished = f"{run} holds an unfinished start with no {LAST}"
            log(f"cv: {name}: {unfinished}: training it from scratch")
        log(f"cv: {name}: training ({run})")
        started = time.monotonic()
        fold_scores.append(train_fold(fit_args, config, run, fold, plan))
        log(f"cv: {name} done in {time.monotonic() - started:.0f} s")
    classes = info["classes"]
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
    pooled_score = metrics.score(targets, decode(probs, default_threshold))
    summary = {
        **info,
        "metric": name,
        f"fold_best_val_{name}": fold_scores,
        f"fold_oof_{name}": folds_score,
        f"oof_{name}_default_threshold": pooled_score,
        "default_threshold": default_threshold,
        f"oof_{name}_tuned": report.chosen_score,
        "thresholds": report.thresholds_for_predict(),
        "thresholds_used": report.use,
    }
    write_json(out / SUMMARY, summary)
    rows: list[list[object]] = [["fold", f"best val/{name}", f"oof {name}"]]
    for fold, (best, oof) in enumerate(zip(fold_scores, folds_score)):
        rows.append([fold, "-" if best is None else f"{best:.4f}", f"{oof:.4f}"])
    log(
        f"{summary_table(rows)}\npooled OOF {name}: {pooled_score:.4f} at threshold"
        f" {default_threshold}, {report.chosen_score:.4f} tuned ({report.use})"
    )
    return summary


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
    restart = "remove what an earlier cv run wrote into --out (its folds, oof.csv, thresholds,"
    restart += " cv.json, plan, folds and fit_config.yaml; nothing else) and train again"
    parser.add_argument("--restart", action="store_true", help=restart)
    known, fit_args = parser.parse_known_args(argv)
    started = time.time()
    run_cv(fit_args, known.folds, known.out, restart_run=known.restart)
    record_cv_folder("cv", started, known.out)
    return 0


def at_least_two(text: str) -> int:
    """An ``argparse`` type: a number of folds (2 or more)."""
    if positive_int(text) < 2:
        raise argparse.ArgumentTypeError(f"{text}: cross-validation needs 2 folds or more")
    return int(text)
