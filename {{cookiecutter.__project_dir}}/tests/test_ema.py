"""EMA of the weights (``--ema_decay``): what validation, checkpoints, predict, cv and package use
is the average a test computes itself from the raw weights of each optimizer step; resuming
continues that average."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning import Callback

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.cli.lightning import run_cli
from {{ cookiecutter.package }}.workflows.fit_jobs import parse_fit_config

from cv_checks import recomputed_probabilities
from fake_runs import package
from helpers import CONFIG_DIR, QUICK_EPOCH, assert_nothing_written, cli_args, only_error_line
from helpers import read_csv_rows

DECAY = 0.9  # an average of the last ten steps or so: far from the raw weights after a few
EMA_RUN = [
    *("--ema_decay", str(DECAY), "--trainer.max_epochs", "2"),
    *("--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"),
]
FLOAT32 = ["--trainer.precision", "32-true"]  # predictions compared with float32 recomputations


class ReferenceEMA(Callback):
    """The EMA of a fit's raw weights, computed here in float64 after each optimizer step (the
    first step copies, unless ``start`` holds an earlier average); ``at_epoch_end``: its value
    after each epoch; ``raw_at_start``: the weights the fit started from."""

    def __init__(self, decay: float, start: dict | None = None) -> None:
        self.decay, self.average, self.step = decay, start, 0
        self.raw_at_start: dict = {}
        self.at_epoch_end: dict[int, dict] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        self.raw_at_start = floats(pl_module.state_dict())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            return
        self.step, raw = trainer.global_step, floats(pl_module.state_dict())
        old, decay = self.average, self.decay
        self.average = (
            raw if old is None else {k: decay * old[k] + (1 - decay) * raw[k] for k in raw}
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.at_epoch_end[trainer.current_epoch] = self.average


def floats(weights: dict) -> dict:
    """The floating-point tensors of a state dict, as float64 copies."""
    return {k: v.detach().double().clone() for k, v in weights.items() if v.is_floating_point()}


def distance(a: dict, b: dict) -> float:
    """The largest difference between the tensors of ``a`` and the same tensors in ``b``."""
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def raw_copy(checkpoint: Path, dest: Path) -> Path:
    """``checkpoint`` with its raw weights (``current_model_state``) as its ``state_dict``."""
    content = torch.load(checkpoint, weights_only=True)
    content["state_dict"] = content.pop("current_model_state")
    torch.save(content, dest)
    return dest


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, sample_dir) -> tuple[Path, ReferenceEMA]:
    """A two-epoch fit with EMA on (read-only): its folder and the reference average."""
    work = tmp_path_factory.mktemp("ema")
    reference = ReferenceEMA(DECAY)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        run_cli(["fit", *cli_args(sample_dir, *EMA_RUN)], callbacks=[reference])
    return work, reference


def test_last_and_best_checkpoints_hold_the_average_and_the_raw_weights_apart(ema_run):
    work, reference = ema_run
    last = torch.load(work / "checkpoints" / "last.ckpt", weights_only=True)
    assert distance(reference.at_epoch_end[1], last["state_dict"]) < 1e-5
    assert distance(reference.average, last["state_dict"]) < 1e-5
    assert distance(reference.average, last["current_model_state"]) > 1e-3  # raw, kept to resume
    assert int(last["averaging_state"]["n_averaged"]) == reference.step == 6
    best = torch.load(next((work / "checkpoints").glob("best-*.ckpt")), weights_only=True)
    assert distance(reference.at_epoch_end[best["epoch"]], best["state_dict"]) < 1e-5


def test_predict_uses_the_averaged_weights(ema_run, sample_dir, tmp_path, in_tmp):
    work, _ = ema_run
    last = work / "checkpoints" / "last.ckpt"
    args = ["--ckpt_path", str(last), "--submission.path", str(tmp_path / "submission.csv")]
    args += ["--submission.probabilities_path", str(tmp_path / "p.csv"), *FLOAT32]
    assert main(["predict", *cli_args(sample_dir, *args)]) == 0
    rows = read_csv_rows(tmp_path / "p.csv")
    names, classes = [row["image"] for row in rows], list(rows[0])[1:]
    predicted = np.array([[float(row[c]) for c in classes] for row in rows])
    folder = sample_dir / "test_images"
    averaged = recomputed_probabilities(last, folder, names, 64)
    raw = recomputed_probabilities(raw_copy(last, tmp_path / "raw.ckpt"), folder, names, 64)
    assert abs(predicted - averaged).max() <= 1e-4
    assert abs(predicted - raw).max() > 1e-3


def test_validation_scores_the_averaged_weights(ema_run, sample_dir, tmp_path, in_tmp):
    work, _ = ema_run
    logged = [row for row in read_csv_rows(next(work.rglob("metrics.csv"))) if row["val/loss"]]
    last = work / "checkpoints" / "last.ckpt"
    flags = ["--trainer.limit_val_batches", "1", "--ema_decay", str(DECAY)]  # ignored: no fit

    def validation_loss(checkpoint: Path) -> float:
        args = cli_args(sample_dir, *flags, "--ckpt_path", str(checkpoint))
        return float(run_cli(["validate", *args]).trainer.callback_metrics["val/loss"])

    assert float(logged[-1]["val/loss"]) == pytest.approx(validation_loss(last), abs=1e-5)
    raw = validation_loss(raw_copy(last, tmp_path / "raw.ckpt"))
    assert abs(float(logged[-1]["val/loss"]) - raw) > 1e-4


def test_resuming_restores_the_average_and_continues_it(ema_run, sample_dir, tmp_path, monkeypatch):
    work = Path(shutil.copytree(ema_run[0], tmp_path / "run"))
    monkeypatch.chdir(work)
    saved = torch.load(work / "checkpoints" / "last.ckpt", weights_only=True)
    reference = ReferenceEMA(DECAY, start=floats(saved["state_dict"]))
    args = cli_args(sample_dir, *EMA_RUN, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    run_cli(["fit", *args], callbacks=[reference])
    assert distance(reference.raw_at_start, saved["current_model_state"]) == 0
    resumed = torch.load(work / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 2 and reference.step == 9
    assert distance(reference.average, resumed["state_dict"]) < 1e-5


def test_resuming_an_ema_run_without_ema_is_refused_naming_its_decay(
    ema_run, sample_dir, in_tmp, capsys
):
    last = ema_run[0] / "checkpoints" / "last.ckpt"
    before = last.stat().st_mtime_ns
    args = cli_args(sample_dir, *EMA_RUN, "--ema_decay", "null", "--ckpt_path", str(last))
    assert main(["fit", *args]) == 2
    assert only_error_line(capsys).endswith(f"resume it with --ema_decay {DECAY}")
    assert last.stat().st_mtime_ns == before
    assert_nothing_written(in_tmp)


@pytest.mark.slow
def test_cv_out_of_fold_rows_come_from_the_averaged_weights(sample_dir, in_tmp):
    flags = [*EMA_RUN, "--trainer.max_epochs", "1", *FLOAT32]
    assert main(["cv", "--folds", "2", "--out", "cv", *cli_args(sample_dir, *flags)]) == 0
    oof = read_csv_rows(in_tmp / "cv" / "oof.csv")
    classes = list(oof[0])[2:]
    for k in range(2):
        rows = [row for row in oof if row["fold"] == str(k)]
        written = np.array([[float(row[c]) for c in classes] for row in rows])
        names, best = [row["image"] for row in rows], in_tmp / "cv" / f"fold{k}" / "best.ckpt"
        folder = sample_dir / "train_images"
        averaged = recomputed_probabilities(best, folder, names, 64)
        raw = recomputed_probabilities(raw_copy(best, in_tmp / "raw.ckpt"), folder, names, 64)
        assert abs(written - averaged).max() <= 1e-4, f"fold {k}"
        assert abs(written - raw).max() > 1e-3, f"fold {k}"


def test_package_ships_the_average_without_the_raw_weights(ema_run, tmp_path):
    work, _ = ema_run
    source = work / "checkpoints" / "last.ckpt"
    assert package(str(source), str(tmp_path / "out"), "--user", "u")[0] == 0
    shipped = torch.load(tmp_path / "out" / "weights" / "model.ckpt", weights_only=True)
    assert "current_model_state" not in shipped and "averaging_state" not in shipped
    assert distance(torch.load(source, weights_only=True)["state_dict"], shipped["state_dict"]) == 0
    assert (tmp_path / "out" / "weights" / "model.ckpt").stat().st_size < source.stat().st_size / 3


def test_ema_is_on_in_the_baseline_off_in_cpu_debug_and_a_decay_outside_0_1_is_refused(
    sample_dir, in_tmp, capsys
):
    baseline = ["--config", str(CONFIG_DIR / "baseline.yaml")]
    assert parse_fit_config(baseline).ema_decay == 0.999
    assert parse_fit_config(cli_args(sample_dir)).ema_decay is None
    assert main(["fit", *cli_args(sample_dir, *QUICK_EPOCH, "--ema_decay", "1")]) == 2
    assert "--ema_decay" in only_error_line(capsys)
    assert_nothing_written(in_tmp)
