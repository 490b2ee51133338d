"""Options given to ``fit`` reach the code they name: the loss, the optimizer and its schedule.

Each test trains through the command line, as a user does, and records what the model really
used (the loss on a real batch, the optimizer's parameter groups at each epoch) to compare with
what the option asks for.
"""

import math

import pytest
import torch
from torch import nn

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.labels import label_vocabulary, read_train_csv
from {{ cookiecutter.package }}.models import PlantClassifier

from helpers import QUICK_EPOCH, cli_args


@pytest.mark.parametrize("scheduler", ["cosine", pytest.param("none", marks=pytest.mark.slow)])
def test_pos_weight_lr_schedule_and_weight_decay_reach_the_training_step(
    sample_dir, in_tmp, monkeypatch, scheduler
):
    classes = label_vocabulary(read_train_csv(sample_dir / "train.csv"))
    pos_weight = [3.0 if k % 2 else 0.25 for k in range(len(classes))]
    losses, groups = [], []
    loss, epoch_start = PlantClassifier.loss, PlantClassifier.on_train_epoch_start

    def recorded_loss(self, logits, targets):
        value = loss(self, logits, targets)
        if self.training:
            losses.append((logits.detach().float(), targets.detach().float(), value.detach()))
        return value

    def recorded_groups(self):
        groups.append([dict(g) for g in self.trainer.optimizers[0].param_groups])
        return epoch_start(self)

    monkeypatch.setattr(PlantClassifier, "loss", recorded_loss)
    monkeypatch.setattr(PlantClassifier, "on_train_epoch_start", recorded_groups)
    options = ["--model.pos_weight", str(pos_weight), "--model.scheduler", scheduler]
    options += ["--model.lr", "0.02", "--model.weight_decay", "0.05"]
    options += [*QUICK_EPOCH, "--trainer.max_epochs", "2"]
    assert main(["fit", *cli_args(sample_dir, *options)]) == 0

    logits, targets, value = losses[0]
    weighted = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))(logits, targets)
    assert value.item() == pytest.approx(weighted.item(), rel=1e-3)  # any precision
    assert value.item() != pytest.approx(nn.BCEWithLogitsLoss()(logits, targets).item(), rel=0.05)

    assert [len(epoch) for epoch in groups] == [1, 1]
    assert [epoch[0]["weight_decay"] for epoch in groups] == [0.05, 0.05]
    second = 0.02 * (1 + math.cos(math.pi / 2)) / 2 if scheduler == "cosine" else 0.02
    assert [epoch[0]["lr"] for epoch in groups] == pytest.approx([0.02, second])
