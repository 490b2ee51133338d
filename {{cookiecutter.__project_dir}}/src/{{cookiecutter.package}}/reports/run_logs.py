"""What a ``fit`` run folder (e.g. ``runs/demo``) or a ``cv`` folder left behind: its CSV metric
logs, and the probabilities and true labels of its held-out images."""

from __future__ import annotations

import csv
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils.errors import DataError
from ..workflows.cv_files import OOF, THRESHOLDS, is_cv_folder
from ..labels import encode_labels, read_train_csv
from ..layout import TRAIN_CSV

METRICS_CSV = "metrics.csv"


@dataclass(frozen=True)
class MetricLog:
    """The rows of one CSVLogger ``metrics.csv``: each metric's values by step and epoch."""

    name: str  # where it sits in the run folder, e.g. ``fold0/logs/lightning_logs/version_0``
    rows: list[dict[str, float]]

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The values of ``key`` against the epoch, in the rows that logged both."""
        rows = [row for row in self.rows if key in row and "epoch" in row]
        return np.array([row["epoch"] for row in rows]), np.array([row[key] for row in rows])

    def last(self, key: str) -> float | None:
        """The value ``key`` was last logged with, or ``None``."""
        values = [row[key] for row in self.rows if key in row]
        return values[-1] if values else None


def read_metric_log(path: Path, name: str) -> MetricLog:
    """Parse a CSVLogger ``metrics.csv`` (empty cells: not logged in that row)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            cells = list(csv.DictReader(handle))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    rows: list[dict[str, float]] = []
    for line, row in enumerate(cells, 2):
        rows.append({})
        for key, text in row.items():
            try:
                if key is not None and text and text.strip():
                    rows[-1][key] = float(text)
            except ValueError:
                raise DataError(f"{path}: row {line}: {key}={text!r} is not a number") from None
    return MetricLog(name, rows)


def metric_logs(run_dir: str | Path) -> list[MetricLog]:
    """Every ``metrics.csv`` under ``run_dir``, in path order; ``DataError`` if there is none."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"{run}: run folder not found (train one first, e.g. `make demo`)")
    paths = sorted(run.rglob(METRICS_CSV))
    if not paths:
        hint = "report reads the CSV logs of a fit or cv run (configs/logger/csv.yaml)"
        raise DataError(f"{run}: no {METRICS_CSV} in it; {hint}")
    return [read_metric_log(path, path.parent.relative_to(run).as_posix()) for path in paths]


@dataclass(frozen=True)
class Predictions:
    """Held-out probabilities with the true labels, and the thresholds the run would decode at."""

    classes: list[str]
    targets: np.ndarray  # images x classes, 0/1
    probs: np.ndarray  # images x classes
    threshold: float  # the run's decision threshold
    tuned_threshold: float | None  # a cv folder's tuned global threshold
    source: str  # what the images are, for the figure titles


def load_predictions(run_dir: str | Path, data_dir: str | Path) -> Predictions:
    """The held-out predictions of a cv folder (pooled OOF) or a single run (validation fold)."""
    read = _cv_predictions if is_cv_folder(run_dir) else _run_predictions
    return read(Path(run_dir), Path(data_dir))


def _cv_predictions(run: Path, data_dir: Path) -> Predictions:
    """Pooled OOF probabilities of a finished cv folder, with the labels of ``train.csv``."""
    from ..predict.threshold_report import ThresholdReport

    if not (run / OOF).is_file():
        raise DataError(f"{run}: no {OOF} yet; finish the cv run (run the same cv command again)")
    with (run / OOF).open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle)) or [[]]
    classes = header[2:]
    if header[:2] != ["image", "fold"] or not classes:
        raise DataError(f"{run / OOF}: expected the columns image,fold,<class>...")
    labels = {sample.image: sample for sample in read_train_csv(data_dir / TRAIN_CSV)}
    missing = next((row[0] for row in rows if row[0] not in labels), None)
    if missing is not None:
        hint = "pass the data folder the cv run trained on"
        raise DataError(f"{run / OOF}: image {missing} is not in {data_dir / TRAIN_CSV}; {hint}")
    try:
        probs = np.array([[float(value) for value in row[2:]] for row in rows])
    except ValueError:
        raise DataError(f"{run / OOF}: a probability is not a number") from None
    report = ThresholdReport.load(run / THRESHOLDS)
    return Predictions(
        classes=classes,
        targets=encode_labels([labels[row[0]] for row in rows], classes).astype(np.int64),
        probs=probs,
        threshold=report.default_threshold,
        tuned_threshold=report.global_threshold,
        source=f"pooled out-of-fold predictions of {len(rows)} images",
    )


def _run_predictions(run: Path, data_dir: Path) -> Predictions:
    """The run's best checkpoint (else its last) applied to the validation fold it trained with."""
    from ..cli.checkpoints import LAST
    from ..data import PlantDataModule
    from ..predict.inference import EnsembleClassifier, load_classifier, predict_images
    from ..predict.inference import read_checkpoint

    last = run / "checkpoints" / LAST
    if not last.is_file():
        raise DataError(f"{run}: no checkpoints/{LAST}; is it the folder of a fit (or cv) run?")
    read = read_checkpoint(last)
    best = read.record.get("best_model_path")
    if best and Path(best).is_file() and Path(best).resolve() != last.resolve():
        read = read_checkpoint(best)
    model, saved = load_classifier(read)
    module = EnsembleClassifier([model])
    settings = {key: value for key, value in saved.items() if not key.startswith("_")}
    settings.update(data_dir=str(data_dir), num_workers=0, cache_dir=None)
    data = PlantDataModule(**settings)
    data.setup("validate")
    dataset = data.val_set
    assert dataset is not None and dataset.targets is not None
    if list(data.classes) != list(module.classes):
        raise DataError(
            f"{read.path}: trained on the labels {module.classes}, {data_dir / TRAIN_CSV} has"
            f" {data.classes}; pass the data folder the run trained on"
        )
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.setLevel(logging.WARNING)  # no start-up lines (nor deprecation noise) for this one
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
            _, probs = predict_images(
                module, dataset.folder, dataset.names, data.image_size, data.batch_size, 0
            )
    finally:
        logger.setLevel(level)
    return Predictions(
        classes=list(module.classes),
        targets=dataset.targets.numpy().astype(np.int64),
        probs=probs,
        threshold=float(module.hparams["threshold"]),
        tuned_threshold=None,
        source=f"validation fold ({len(dataset)} images) of {read.path.name}",
    )
