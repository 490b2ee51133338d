"""``last.ckpt`` holds every finished epoch, also the epochs in which validation does not run."""

import pytest
import torch

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.models import PlantClassifier

from helpers import QUICK_EPOCH, cli_args

STEPS = 2  # training batches per epoch (QUICK_EPOCH)


class Killed(Exception):
    """Stands for SIGKILL: no hook, no clean-up, nothing written after it."""


def fit_until_killed(sample_dir, monkeypatch, every: int, killed_in_epoch: int, epochs: int):
    """Fit with validation every ``every`` epochs; die at the first step of ``killed_in_epoch``."""
    train = PlantClassifier.training_step

    def step(self, *args, **kwargs):
        if self.current_epoch == killed_in_epoch:
            raise Killed
        return train(self, *args, **kwargs)

    monkeypatch.setattr(PlantClassifier, "training_step", step)
    args = [*QUICK_EPOCH, "--trainer.check_val_every_n_epoch", str(every)]
    with pytest.raises(Killed):
        main(["fit", *cli_args(sample_dir, *args, "--trainer.max_epochs", str(epochs))])
    monkeypatch.setattr(PlantClassifier, "training_step", train)


@pytest.mark.parametrize("every", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_an_epoch_without_validation_is_saved_and_resumed(sample_dir, in_tmp, monkeypatch, every):
    fit_until_killed(sample_dir, monkeypatch, every, killed_in_epoch=every - 1, epochs=every + 1)
    last = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (every - 2, (every - 1) * STEPS)

    epochs = []
    monkeypatch.setattr(
        PlantClassifier,
        "on_train_epoch_start",
        lambda self: epochs.append(self.current_epoch),
    )
    args = [*QUICK_EPOCH, "--trainer.check_val_every_n_epoch", str(every), "--ckpt_path", "last"]
    assert main(["fit", *cli_args(sample_dir, *args, "--trainer.max_epochs", str(every + 1))]) == 0
    assert epochs == [every - 1, every]  # resumed after the last finished epoch, none repeated
    last = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (every, (every + 1) * STEPS)
