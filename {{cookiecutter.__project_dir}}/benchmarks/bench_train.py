"""Training throughput: Lightning ``fit`` vs a minimal plain-PyTorch loop, same everything else,
and ``fit`` with an EMA of the weights (``--ema_decay``) vs without, for a torchvision and a timm
backbone (the baseline's architecture, random weights: nothing is downloaded).

All train the project's model (same backbone, batch size, precision, channels-last layout,
AdamW) on the same in-memory uint8 batches, normalised the same way, for the same number of
steps; the first steps of each run are warm-up and not timed. The three are run alternately,
``--rounds`` times, and the best round of each counts (least disturbed by other processes).

Usage: python benchmarks/bench_train.py [--backbone resnet18 timm/convnext_tiny] [--batch-size 32]
       [--size 224]
       [--steps 12] [--rounds 2] [--precision auto|32-true|bf16-mixed] [--ema-decay 0.999]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from {{ cookiecutter.package }}.cli.ema import ModelEMA
from {{ cookiecutter.package }}.transforms import normalize_batch
from {{ cookiecutter.package }}.utils.hardware import default_precision
from {{ cookiecutter.package }}.models import PlantClassifier

CLASSES = ["complex", "frog_eye_leaf_spot", "healthy", "powdery_mildew", "rust", "scab"]
WARMUP = 3


class FixedBatches(Dataset):
    """``steps`` ready-made batches of random uint8 images and multi-hot targets."""

    def __init__(self, steps: int, batch_size: int, size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.batches = [
            {
                "image": torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8),
                "target": (torch.rand(batch_size, len(CLASSES), generator=generator) > 0.7).float(),
            }
            for _ in range(steps)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        return self.batches[index]


class Timed(pl.Callback):
    """Wall time from the end of the warm-up steps to the end of training."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == WARMUP - 1:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


class BenchModel(PlantClassifier):
    """The project's model, normalising the uint8 batches as the datamodule does."""

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        batch["image"] = normalize_batch(batch["image"])
        return batch


def make_model(args: argparse.Namespace) -> BenchModel:
    torch.manual_seed(0)
    return BenchModel(backbone=args.current, classes=CLASSES, scheduler="none")


def loader(data: FixedBatches) -> DataLoader:
    return DataLoader(data, batch_size=None, shuffle=False, num_workers=0)


def lightning_rate(
    args: argparse.Namespace, data: FixedBatches, precision: str, ema: bool = False
) -> float:
    timer = Timed()
    callbacks: list[pl.Callback] = [timer, ModelEMA(args.ema_decay)] if ema else [timer]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(make_model(args), train_dataloaders=loader(data))
    return (len(data) - WARMUP) * args.batch_size / timer.seconds


def plain_rate(args: argparse.Namespace, data: FixedBatches, precision: str) -> float:
    model = make_model(args)
    model.setup("fit")  # channels-last layout, as Lightning's setup hook does
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=model.hparams.lr, weight_decay=1e-4)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16-mixed"
        else contextlib.nullcontext()
    )
    start = 0.0
    for step, batch in enumerate(loader(data)):
        if step == WARMUP:
            start = time.perf_counter()
        images = normalize_batch(batch["image"])
        with autocast:
            loss = model.loss(model(images), batch["target"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (len(data) - WARMUP) * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    backbones = ["resnet18", "timm/convnext_tiny"]
    parser.add_argument("--backbone", nargs="+", default=backbones, help="each is measured")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=12, help="steps per run, warm-up included")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="auto = the project's default")
    parser.add_argument("--ema-decay", type=float, default=0.999, help="of the EMA run")
    args = parser.parse_args()
    precision = default_precision("cpu") if args.precision == "auto" else args.precision
    if precision not in ("32-true", "bf16-mixed"):
        parser.error("this benchmark compares CPU runs: use 32-true or bf16-mixed")
    data = FixedBatches(args.steps, args.batch_size, args.size)
    ratios = []
    for args.current in args.backbone:
        print(
            f"{args.current}, batch {args.batch_size}, {args.size}px, {precision}, channels-last,"
            f" {torch.get_num_threads()} threads, {args.steps - WARMUP} timed steps"
        )
        plain, lightning, ema = [], [], []
        for round_ in range(args.rounds):
            plain.append(plain_rate(args, data, precision))
            lightning.append(lightning_rate(args, data, precision))
            ema.append(lightning_rate(args, data, precision, ema=True))
            print(
                f"round {round_ + 1}: plain {plain[-1]:.1f} img/s, lightning"
                f" {lightning[-1]:.1f} img/s, lightning with EMA {ema[-1]:.1f} img/s"
            )
        print(
            f"{args.current}: plain PyTorch {max(plain):.1f} img/s, Lightning"
            f" {max(lightning):.1f} img/s, with EMA {max(ema):.1f} img/s"
        )
        ratios.append((max(lightning) / max(plain), max(ema) / max(lightning)))
    for name, (fit_ratio, ema_ratio) in zip(args.backbone, ratios):
        print(f"{name}: lightning/plain {fit_ratio:.2f}, EMA/no-EMA {ema_ratio:.2f}")
    print(f"lightning/plain throughput ratio: {min(r[0] for r in ratios):.2f} (lowest)")
    print(f"EMA/no-EMA throughput ratio: {min(r[1] for r in ratios):.2f} (lowest; target >= 0.95)")


if __name__ == "__main__":
    main()
