"""The experiment loggers of ``configs/logger/``: which package each needs, checked before a run.

The CSV logger needs nothing beyond Lightning; TensorBoard, MLflow and Weights & Biases are
optional extras of this project. A logger whose package is missing is refused before anything is
written, with one line naming the extra to install (Lightning's own message is a long union
error from the config parser).

``MLFlowLoggerNoTelemetry`` (the MLflow overlay's logger) turns MLflow's telemetry off: MLflow 3
otherwise writes an installation id under ``~/.config/mlflow/`` and reports usage to its makers.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from typing import Any, NamedTuple

from pytorch_lightning.loggers import MLFlowLogger

from ..utils.errors import DataError

# MLflow's documented switch; read once, when ``mlflow`` is first imported.
MLFLOW_TELEMETRY_SWITCH = "MLFLOW_DISABLE_TELEMETRY"


class LoggerPackage(NamedTuple):
    """What a logger class needs: one of ``modules`` importable, from the project's ``extra``."""

    modules: tuple[str, ...]
    extra: str


MLFLOW_PACKAGE = LoggerPackage(("mlflow",), "mlflow")
LOGGER_PACKAGES = {
    "TensorBoardLogger": LoggerPackage(("tensorboard", "tensorboardX"), "tensorboard"),
    "MLFlowLogger": MLFLOW_PACKAGE,
    "MLFlowLoggerNoTelemetry": MLFLOW_PACKAGE,
    "WandbLogger": LoggerPackage(("wandb",), "wandb"),
}


class MLFlowLoggerNoTelemetry(MLFlowLogger):
    """Lightning's ``MLFlowLogger`` with MLflow's telemetry off (no installation id written, no
    usage reports sent), unless ``MLFLOW_DISABLE_TELEMETRY`` is set otherwise already.

    The switch is set before ``MLFlowLogger.__init__`` imports ``mlflow``, which is when MLflow
    reads it. Takes the same arguments as ``MLFlowLogger``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        os.environ.setdefault(MLFLOW_TELEMETRY_SWITCH, "true")
        super().__init__(*args, **kwargs)


def logger_class_names(logger: Any) -> list[str]:
    """The class names of the configured logger(s): one ``class_path`` entry or a list of them."""
    entries: Iterable[Any] = logger if isinstance(logger, (list, tuple)) else [logger]
    names = []
    for entry in entries:
        class_path = entry.get("class_path") if hasattr(entry, "get") else None
        if isinstance(class_path, str):
            names.append(class_path.rsplit(".", 1)[-1])
    return names


def is_importable(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_logger_packages(logger: Any) -> None:
    """``DataError`` naming the extra to install if a configured logger's package is missing."""
    for name in logger_class_names(logger):
        package = LOGGER_PACKAGES.get(name)
        if package and not any(is_importable(module) for module in package.modules):
            raise DataError(
                f"--trainer.logger {name}: the package {package.modules[0]} is not installed;"
                f' install the extra: pip install -e ".[{package.extra}]"'
            )
