"""Checkpoints and cv folders forged for the ``package`` tests, and a helper that runs it.

``fake_checkpoint`` writes a file shaped like a training checkpoint (optimizer and loop state too)
from an untrained model, in well under a second; nothing here trains.
"""

import contextlib
import io
import json
from pathlib import Path

import torch

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.models import PlantClassifier

CLASSES = ["healthy", "rust", "scab"]


def fake_checkpoint(path: Path, classes: list[str] | None = CLASSES, image_size: int = 32) -> Path:
    """A checkpoint shaped like a training one (optimizer and loop state too), without training."""
    model = PlantClassifier("resnet18", classes=classes or ["a"])
    hparams = dict(model.hparams)
    if classes is None:
        hparams.pop("classes")
    weights = model.state_dict()
    optimizer = {"state": {name: {"exp_avg": value.clone()} for name, value in weights.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": weights,
            "hyper_parameters": hparams,
            "datamodule_hyper_parameters": {"image_size": image_size, "batch_size": 4},
            "optimizer_states": [optimizer],
            "loops": {"fit_loop": {"epoch_progress": {"current": 3}}},
            "epoch": 3,
            "pytorch-lightning_version": "2.6.0",
        },
        path,
    )
    return path


def fake_cv_folder(folder: Path, vocabularies: list[list[str]]) -> Path:
    """A ``cv`` output folder with one ``fold{k}/best.ckpt`` per vocabulary."""
    folder.mkdir(parents=True)
    (folder / "folds.csv").write_text("image,fold\n", encoding="utf-8")
    (folder / "plan.json").write_text(json.dumps({"folds": len(vocabularies)}), encoding="utf-8")
    for k, classes in enumerate(vocabularies):
        fake_checkpoint(folder / f"fold{k}" / "best.ckpt", classes)
    return folder


def package(*args: str) -> tuple[int, str]:
    """Run ``package`` with ``args``; its exit code and printed output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["package", *args])
    return code, out.getvalue()
