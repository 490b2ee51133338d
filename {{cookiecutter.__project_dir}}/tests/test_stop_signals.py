"""Ctrl-C and SIGTERM while training: the clean-up runs, then one line and exit code 130 / 143."""

import os
import signal
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.models import PlantClassifier
from {{ cookiecutter.package }}.reports import ledger
from {{ cookiecutter.package }}.utils.stop_signals import Stopped, StopSignals
from {{ cookiecutter.package }}.utils.torchfiles import save_torch_file

from helpers import cli_args, only_error_line


@pytest.mark.parametrize(
    "signum, code",
    [pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow), (signal.SIGTERM, 143)],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_during_fit_ends_in_one_line_and_keeps_finished_epochs_whole(
    sample_dir, in_tmp, capsys, monkeypatch, signum, code
):
    train = PlantClassifier.training_step
    steps = []

    def step_then_signal(self, *args, **kwargs):
        steps.append(self.current_epoch)
        if self.current_epoch == 1:
            os.kill(os.getpid(), signum)
        return train(self, *args, **kwargs)

    monkeypatch.setattr(PlantClassifier, "training_step", step_then_signal)
    monkeypatch.setattr(ledger, "LEDGER", in_tmp / "runs" / "ledger.csv")
    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    args = ["--trainer.max_epochs", "3", "--trainer.limit_train_batches", "2"]
    assert main(["fit", *cli_args(sample_dir, *args, "--trainer.limit_val_batches", "1")]) == code
    how = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
    assert only_error_line(capsys).startswith(f"error: stopped by {how}")
    assert steps.count(1) == 1  # stopped at the first step of epoch 1
    names = sorted(p.name for p in (in_tmp / "checkpoints").iterdir())
    assert "last.ckpt" in names and not [n for n in names if n.startswith(".")]
    assert not ledger.LEDGER.exists()  # a stopped run has no row, though epoch 0 was scored
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before


def test_a_signal_during_a_checkpoint_write_takes_effect_once_the_file_is_whole(
    tmp_path, monkeypatch
):
    """torch's writer calls back into Python: raised in there, the stop would become torch's
    "unexpected pos" error and leave the run's checkpoint behind."""
    weights = {"w": torch.arange(300_000, dtype=torch.float32)}
    open_file = Path.open

    def open_then_signal(self, *args, **kwargs):
        handle = open_file(self, *args, **kwargs)
        write = handle.write

        def write_and_signal(data):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of torch.save
            return write(data)

        handle.write = write_and_signal
        return handle

    monkeypatch.setattr(Path, "open", open_then_signal)
    target = tmp_path / "last.ckpt"
    with StopSignals() as stop, pytest.raises(Stopped):
        save_torch_file(weights, target)
    monkeypatch.undo()
    assert stop.received == signal.SIGTERM
    assert torch.equal(torch.load(target, weights_only=True)["w"], weights["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
