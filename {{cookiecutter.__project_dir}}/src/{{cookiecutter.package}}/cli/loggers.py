"""The experiment loggers of ``configs/logger/``: the extra each needs (TensorBoard, MLflow,
Weights & Biases; not CSV), checked before a run: one line naming it, not a long union error."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger

from ..utils.errors import DataError

# Logger class name -> (modules, one of which it needs; the project's extra that installs it).
LOGGER_PACKAGES = {
    "TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard"),
    "MLFlowLogger": (("mlflow",), "mlflow"),
    "MLFlowLoggerNoTelemetry": (("mlflow",), "mlflow"),
    "WandbLogger": (("wandb",), "wandb"),
}


class MLFlowLoggerNoTelemetry(MLFlowLogger):
    """Lightning's ``MLFlowLogger`` with MLflow's telemetry off unless set otherwise (MLflow 3
    writes an installation id under ``~/.config/mlflow/`` and reports usage to its makers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # read when mlflow is imported
        super().__init__(*args, **kwargs)


def is_importable(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_logger_packages(logger: Any) -> None:
    """``DataError`` naming the extra to install if a logger of ``--trainer.logger`` (one
    ``class_path`` entry or a list of them) lacks its package."""
    for entry in logger if isinstance(logger, (list, tuple)) else [logger]:
        name = str(entry.get("class_path") if hasattr(entry, "get") else "").rsplit(".", 1)[-1]
        modules, extra = LOGGER_PACKAGES.get(name, ((), ""))
        if modules and not any(is_importable(module) for module in modules):
            raise DataError(
                f"--trainer.logger {name}: the package {modules[0]} is not installed;"
                f' install the extra: pip install -e ".[{extra}]"'
            )
