"""Prediction throughput: the package's ``predict`` path vs a plain PyTorch loop, same work.

Both predict the same synthetic test images (JPEGs decoded and resized by the same dataset) with
the same two-model ensemble and the same test-time augmentation (``flips``: 4 views), at the same
precision and channels-last layout. The package path is what ``predict --ckpt_path CV_DIR --tta
flips`` runs: ``Trainer.predict`` with the data module, the ``EnsembleClassifier`` and the
``SubmissionWriter``. The plain loop decodes, normalises, runs each member on each view and
averages. The two run alternately, ``--rounds`` times; the best round of each counts.

Usage: python benchmarks/bench_predict.py [--images 64] [--size 224] [--batch-size 16]
       [--rounds 2] [--precision auto|32-true|bf16-mixed]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from {{ cookiecutter.package }}.data import ImageDataset, PlantDataModule, build_transforms
from {{ cookiecutter.package }}.utils.hardware import default_precision
from {{ cookiecutter.package }}.predict.inference import EnsembleClassifier, tta_views
from {{ cookiecutter.package }}.layout import TEST_IMAGES
from {{ cookiecutter.package }}.models import PlantClassifier
from {{ cookiecutter.package }}.prep.sample_data import generate
from {{ cookiecutter.package }}.predict.submission import SubmissionWriter

CLASSES = ["complex", "frog_eye_leaf_spot", "healthy", "powdery_mildew", "rust", "scab"]


def members(backbone: str) -> list[PlantClassifier]:
    """Two differently initialised models, as two folds would be."""
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(PlantClassifier(backbone, classes=CLASSES).eval())
    return models


def package_rate(args: argparse.Namespace, data_dir: Path, precision: str, out: Path) -> float:
    ensemble = EnsembleClassifier(members(args.backbone), tta="flips")
    datamodule = PlantDataModule(
        str(data_dir), image_size=args.size, batch_size=args.batch_size, num_workers=0
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SubmissionWriter(str(out / "submission.csv"))],
    )
    started = time.perf_counter()
    trainer.predict(ensemble, datamodule=datamodule, return_predictions=False)
    return args.images / (time.perf_counter() - started)


def plain_rate(args: argparse.Namespace, data_dir: Path, precision: str) -> float:
    models = members(args.backbone)
    for model in models:
        model.to(memory_format=torch.channels_last)
    folder = data_dir / TEST_IMAGES
    names = sorted(p.name for p in folder.iterdir())
    dataset = ImageDataset(
        folder, names, build_transforms(args.size, train=False), decode_size=args.size
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=0)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16-mixed"
        else contextlib.nullcontext()
    )
    started = time.perf_counter()
    rows = []
    with torch.inference_mode(), autocast:
        for batch in loader:
            images = batch["image"]  # uint8: each model normalises with its own statistics
            probs = [
                torch.sigmoid(m(v).float()) for v in tta_views(images, "flips") for m in models
            ]
            rows.append(torch.stack(probs).mean(0))
    torch.cat(rows)
    return args.images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="auto = the project's default")
    args = parser.parse_args()
    precision = default_precision("cpu") if args.precision == "auto" else args.precision
    if precision not in ("32-true", "bf16-mixed"):
        parser.error("this benchmark compares CPU runs: use 32-true or bf16-mixed")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = generate(Path(tmp) / "data", n_train=8, n_test=args.images, size=(600, 400))
        print(
            f"{args.images} images 600x400 -> {args.size}px, 2 x {args.backbone}, tta flips"
            f" (8 forward passes per image), batch {args.batch_size}, {precision},"
            f" {torch.get_num_threads()} threads"
        )
        plain, package = [], []
        for round_ in range(args.rounds):
            plain.append(plain_rate(args, data_dir, precision))
            package.append(package_rate(args, data_dir, precision, Path(tmp)))
            print(
                f"round {round_ + 1}: plain {plain[-1]:.1f} img/s, predict {package[-1]:.1f} img/s"
            )
    print(f"plain PyTorch: {max(plain):.1f} img/s, predict: {max(package):.1f} img/s")
    print(f"predict/plain throughput ratio: {max(package) / max(plain):.2f}")


if __name__ == "__main__":
    main()
