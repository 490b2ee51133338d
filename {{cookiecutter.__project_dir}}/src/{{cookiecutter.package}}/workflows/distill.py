"""``distill``: out-of-fold self-distillation (Plant Pathology 2020's winning step) from a ``cv``
folder, the teacher.

``run_distill`` trains the teacher's folds again, with its fit settings (``fit_config.yaml``; fit
flags change them), on soft targets ``alpha * oof + (1 - alpha) * labels``: each training image's
teacher probabilities come from the fold model that did not train on it. Validation and every
score stay on the hard labels. ``out`` becomes a cv folder of the same shape (the teacher's
``folds.csv`` and ``plan.json``, its own ``oof.csv``, ``thresholds.json``, ``cv.json``), plus
``soft_targets.csv`` and ``distill.json``: the pooled OOF scores of the teacher, the student and
their blend, whose thresholds ``predict --ckpt_path TEACHER,OUT --blend W_T,W_S`` uses. A rerun
resumes like ``cv``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics
from ..cli.argtypes import fit_job_parser, unit_interval
from ..folds import FoldPlan, read_folds
from ..labels import encode_labels, label_vocabulary, read_train_csv
from ..layout import TRAIN_CSV
from ..predict.blend import Blend
from ..predict.submission import read_probabilities, write_probabilities
from ..reports.ledger import record_cv_folder
from ..reports.report import summary_table
from ..thresholds import choose_thresholds
from ..utils.errors import DataError
from ..utils.atomic import write_json
from ..utils.jsonfile import field, read_json
from .cv import Log, run_cv
from .cv_files import FIT_CONFIG, FOLDS_CSV, OOF, fold_checkpoints, is_cv_folder, read_plan
from .fit_jobs import config_only_cli

SOFT_TARGETS = "soft_targets.csv"
DISTILL = "distill.json"


def soft_targets(teacher_oof: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """The student's training targets: ``alpha`` of the teacher's OOF, the rest the labels."""
    return alpha * teacher_oof + (1.0 - alpha) * labels


def check_teacher(teacher: Path, fit_args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The fit flags of the student (the teacher's settings, then ``fit_args``) and the teacher's
    ``plan.json``; ``DataError`` if the teacher is not a finished cv folder."""
    if not is_cv_folder(teacher):
        raise DataError(f"{teacher}: not a cv folder (no {FOLDS_CSV}); distill reads a cv run")
    plan = read_plan(teacher)
    fold_checkpoints(teacher)  # a missing fold is refused here
    for name in (FIT_CONFIG, OOF):
        if not (teacher / name).is_file():
            raise DataError(f"{teacher}: has no {name}; finish the cv run (run it again) first")
    return ["--config", str(teacher / FIT_CONFIG), *fit_args], plan


def teacher_targets(
    teacher: Path, plan: dict[str, Any], data_dir: Path, alpha: float
) -> tuple[list[str], list[str], np.ndarray, np.ndarray, FoldPlan]:
    """Images, classes, labels, soft targets (``train.csv`` order) and the teacher's folds;
    ``DataError`` if ``data_dir`` holds another data set or label vocabulary than the teacher's."""
    samples = read_train_csv(data_dir / TRAIN_CSV)
    images, classes = [sample.image for sample in samples], label_vocabulary(samples)
    if classes != plan.get("classes"):
        raise DataError(
            f"{teacher}: trained on the labels {plan.get('classes')}, {data_dir / TRAIN_CSV} has"
            f" {classes}: distill needs the teacher's data set"
        )
    folds = read_folds(teacher / FOLDS_CSV)
    ids, probs = read_probabilities(teacher / OOF, classes)
    if sorted(folds) != sorted(images) or sorted(ids) != sorted(images):
        raise DataError(
            f"{teacher}: trained on other images than the {len(images)} of"
            f" {data_dir / TRAIN_CSV} ({len(folds)} in its {FOLDS_CSV}): distill needs the"
            " teacher's data set"
        )
    missing = sorted(set(range(int(plan["folds"]))) - set(folds.values()))
    if missing:
        raise DataError(f"{teacher / FOLDS_CSV}: fold {missing[0]} holds no image")
    labels = encode_labels(samples, classes).astype(np.int64)
    soft = soft_targets(in_order(ids, probs, images), labels, alpha)
    conflicting = int(plan.get("conflicting_groups", 0))
    fold_plan = FoldPlan(images, np.array([folds[name] for name in images]), [], conflicting)
    return images, classes, labels, soft, fold_plan


def check_rerun(out: Path, teacher: Path, alpha: float) -> None:
    """Refuse an ``out`` that holds a distill run of another teacher or ``alpha``."""
    if out.resolve() == teacher.resolve():
        raise DataError(f"--out {out}: the teacher's own folder; the student needs another")
    if not (out / DISTILL).is_file():
        if is_cv_folder(out):
            raise DataError(f"--out {out}: holds a cv run that is not a student; use another")
        return
    before = read_json(out / DISTILL, lambda data: field(data, "alpha", float), "distill record")
    if before != alpha:
        raise DataError(
            f"{out}: holds a distill run with alpha {before}; use another --out for alpha {alpha}"
        )


def run_distill(
    teacher: str | Path,
    out: str | Path,
    alpha: float = 0.3,
    blend_weight: float = 0.5,
    fit_args: Sequence[str] = (),
    log: Log = print,
) -> dict[str, Any]:
    """Train the student of ``teacher`` into ``out`` (see the module); the ``distill.json``
    record. ``blend_weight`` is the student's share of the blend."""
    teacher, out = Path(teacher), Path(out)
    for name, value in (("--alpha", alpha), ("--blend_weight", blend_weight)):
        if not 0.0 <= value <= 1.0:
            raise DataError(f"{name} {value}: must be within [0, 1]")
    args, plan = check_teacher(teacher, list(fit_args))
    config = config_only_cli(args).config.fit
    data_dir = Path(config.data.data_dir)
    images, classes, labels, soft, fold_plan = teacher_targets(teacher, plan, data_dir, alpha)
    check_rerun(out, teacher, alpha)
    out.mkdir(parents=True, exist_ok=True)
    write_probabilities(out / SOFT_TARGETS, images, soft, classes)
    record: dict[str, Any] = {"teacher": str(teacher), "alpha": alpha, "blend_weight": blend_weight}
    write_json(out / DISTILL, record)
    log(f"distill: soft targets {alpha:g} x the OOF of {teacher} + {1 - alpha:g} x the labels")
    args += ["--data.soft_targets", str(out / SOFT_TARGETS)]
    run_cv(args, int(plan["folds"]), out, log, assigned=(fold_plan, plan))
    blend = Blend([teacher, out], [1.0 - blend_weight, blend_weight])
    default = float(config.model.threshold)
    reports = {
        "teacher": choose_thresholds(read_oof(teacher, images, classes), labels, default, classes),
        "student": choose_thresholds(read_oof(out, images, classes), labels, default, classes),
        "blend": blend.thresholds(labels),
    }
    name = metrics.NAME
    record["scores"] = {
        model: {
            f"oof_{name}_default_threshold": r.default_score,
            f"oof_{name}_tuned": r.chosen_score,
        }
        for model, r in reports.items()
    }
    write_json(out / DISTILL, record)
    rows: list[list[object]] = [["model", f"oof {name} at {default:g}", f"oof {name} tuned"]]
    shares = f"blend ({1 - blend_weight:g} teacher + {blend_weight:g} student)"
    for model, label in (("teacher", "teacher"), ("student", "student"), ("blend", shares)):
        report = reports[model]
        rows.append([label, f"{report.default_score:.4f}", f"{report.chosen_score:.4f}"])
    log(summary_table(rows))
    log(
        f"predict the blend: predict --ckpt_path {teacher},{out}"
        f" --blend {1 - blend_weight:g},{blend_weight:g}"
    )
    return record


def read_oof(folder: Path, images: list[str], classes: list[str]) -> np.ndarray:
    """The pooled OOF probabilities of a cv folder, in ``images`` order."""
    return in_order(*read_probabilities(folder / OOF, classes), images)


def in_order(ids: list[str], probs: np.ndarray, images: list[str]) -> np.ndarray:
    """The rows of ``probs`` (one per image of ``ids``) in ``images`` order."""
    row_of = {name: row for row, name in enumerate(ids)}
    return probs[[row_of[name] for name in images]]


def run_command(argv: Sequence[str]) -> int:
    """``distill TEACHER --out DIR [--alpha A] [--blend_weight W] [fit flags]``."""
    parser = fit_job_parser(
        "distill",
        "Train the folds of a cv folder (the teacher) again on soft targets alpha x its"
        " out-of-fold predictions + (1 - alpha) x the labels, with its fit settings (fit flags"
        " change them), into --out, a cv folder; print the pooled OOF scores of the teacher,"
        " the student and their blend. Run it again to resume.",
    )
    parser.add_argument("teacher", type=Path, metavar="TEACHER_CV_DIR", help="a cv folder")
    parser.add_argument("--out", type=Path, required=True, help="the student's cv folder")
    parser.add_argument(
        "--alpha", type=unit_interval, default=0.3, help="the teacher's share (default 0.3)"
    )
    parser.add_argument(
        "--blend_weight",
        type=unit_interval,
        default=0.5,
        help="the student's share of the reported blend (default 0.5)",
    )
    known, fit_args = parser.parse_known_args(list(argv))
    started = time.time()
    run_distill(known.teacher, known.out, known.alpha, known.blend_weight, fit_args)
    record_cv_folder("distill", started, known.out)
    return 0
