"""Search overhead: N short trials through ``tune`` vs the same N runs of plain ``fit``.

``tune`` runs N trials on the sample set (journal storage, no pruning, so every trial trains all
its epochs); then ``fit`` trains N times with exactly the values those trials drew, the same
flags and the same epochs. What differs is the search machinery: the search-file checks, the
study in its journal file, the per-epoch reports, ``trials.csv`` and ``best.yaml``. The two run
alternately, ``--rounds`` times; the best round of each counts (least disturbed by other
processes). Throughput is trials (or runs) per minute.

Usage: python benchmarks/bench_tune.py [--trials 4] [--epochs 2] [--size 64] [--rounds 2]
       [--data tests/data]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import yaml

from {{ cookiecutter.package }}.workflows.fit_jobs import parse_fit_config, run_folder_flags
from {{ cookiecutter.package }}.cli.lightning import run_cli
from {{ cookiecutter.package }}.workflows.search_space import trial_flags
from {{ cookiecutter.package }}.workflows.tune import run_tune

PROJECT = Path(__file__).resolve().parents[1]
SPACE = {
    "model.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
}


def fit_args(args: argparse.Namespace) -> list[str]:
    """The flags both sides share: the CPU overlay on the sample set, short and quiet."""
    configs = PROJECT / "configs"
    return [
        "--config",
        str(configs / "baseline.yaml"),
        "--config",
        str(configs / "cpu_debug.yaml"),
        "--data.data_dir",
        str(args.data),
        "--data.image_size",
        str(args.size),
        "--trainer.max_epochs",
        str(args.epochs),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
    ]


def tune_seconds(args: argparse.Namespace, work: Path, name: str) -> tuple[float, list[dict]]:
    """Wall time of ``run_tune`` for ``args.trials`` trials; the values the trials drew."""
    search = work / "search.yaml"
    search.write_text(yaml.safe_dump(SPACE))
    start = time.perf_counter()
    study = run_tune(
        fit_args(args),
        search,
        name,
        n_trials=args.trials,
        pruner="none",
        out=work / "tune",
        log=lambda line: None,
    )
    seconds = time.perf_counter() - start
    return seconds, [trial.params for trial in study.trials]


def fit_seconds(args: argparse.Namespace, work: Path, drawn: list[dict]) -> float:
    """Wall time of one plain ``fit`` per set of values in ``drawn``."""
    config = parse_fit_config(fit_args(args))
    start = time.perf_counter()
    for number, params in enumerate(drawn):
        run = work / "fit" / f"run_{number}"
        run_cli(["fit", *fit_args(args), *trial_flags(params), *run_folder_flags(config, run)])
    return time.perf_counter() - start


def quiet() -> None:
    """Keep the console to the benchmark's own lines."""
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", type=Path, default=PROJECT / "tests" / "data")
    args = parser.parse_args()
    quiet()
    print(
        f"{args.trials} trials of {args.epochs} epochs at {args.size}px on {args.data},"
        f" {os.cpu_count()} cores"
    )
    tuned, fitted = [], []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            work = Path(folder) / f"round_{round_}"
            work.mkdir()
            seconds, drawn = tune_seconds(args, work, f"bench{round_}")
            tuned.append(60 * args.trials / seconds)
            fitted.append(60 * len(drawn) / fit_seconds(args, work, drawn))
            print(
                f"round {round_ + 1}: tune {tuned[-1]:.2f} trials/min,"
                f" fit {fitted[-1]:.2f} runs/min"
            )
    print(f"tune: {max(tuned):.2f} trials/min, fit: {max(fitted):.2f} runs/min")
    print(f"tune/fit throughput ratio: {max(tuned) / max(fitted):.2f}")


if __name__ == "__main__":
    main()
