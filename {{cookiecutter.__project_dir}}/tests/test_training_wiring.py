"""Options given to ``fit`` reach the code they name: the loss, the optimizer and its schedule.

Each test trains through the command line, as a user does, and records what the model really
used (the loss and targets of real batches, the optimizer's parameter groups at each step) to
compare with what the option asks for.
"""

import math

import pytest
import torch
from torch import nn

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.labels import label_vocabulary, read_train_csv
from {{ cookiecutter.package }}.models import PlantClassifier

from helpers import QUICK_EPOCH, cli_args, logged


def expected_factor(step: int, warmup: int, total: int, cosine: bool) -> float:
    """The schedule ``PlantClassifier`` documents, written out: linear warmup, half a cosine."""
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


# scheduler, other options, warmup steps (2 optimizer steps an epoch, 2 epochs)
REGULARISED = ["--model.cutmix_p", "1", "--model.label_smoothing", "0.1"]
SCHEDULES = [
    pytest.param("cosine", ["--model.warmup_epochs", "0.5", *REGULARISED], 1, id="cosine"),
    pytest.param("none", [], 0, id="none", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("scheduler", "options", "warmup"), SCHEDULES)
def test_pos_weight_lr_schedule_and_weight_decay_reach_the_training_step(
    sample_dir, in_tmp, monkeypatch, scheduler, options, warmup
):
    """Every optimizer step runs at the documented rate (head at ``lr``, backbone at ``lr *
    backbone_lr_scale``) and the logged rate says the same; biases and norms are not decayed;
    training targets are mixed and smoothed, never validation's; the checkpoint of it all loads
    with ``weights_only=True``."""
    classes = label_vocabulary(read_train_csv(sample_dir / "train.csv"))
    pos_weight = [3.0 if k % 2 else 0.25 for k in range(len(classes))]
    losses, groups, val_targets = [], [], []
    loss, batch_start = PlantClassifier.loss, PlantClassifier.on_train_batch_start

    def recorded_loss(self, logits, targets):
        value = loss(self, logits, targets)
        if self.training:
            losses.append((logits.detach().float(), targets.detach().float(), value.detach()))
        else:
            val_targets.append(targets.detach())
        return value

    def recorded_groups(self, batch, batch_idx):
        groups.append({g["name"]: dict(g, params=None) for g in self.optimizers().param_groups})
        return batch_start(self, batch, batch_idx)

    monkeypatch.setattr(PlantClassifier, "loss", recorded_loss)
    monkeypatch.setattr(PlantClassifier, "on_train_batch_start", recorded_groups)
    options = ["--model.pos_weight", str(pos_weight), "--model.scheduler", scheduler, *options]
    options += ["--model.lr", "0.02", "--model.weight_decay", "0.05"]
    options += ["--model.backbone_lr_scale", "0.1"]
    options += [*QUICK_EPOCH, "--trainer.max_epochs", "2"]
    assert main(["fit", *cli_args(sample_dir, *options)]) == 0

    logits, targets, value = losses[0]
    weighted = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))(logits, targets)
    assert value.item() == pytest.approx(weighted.item(), rel=1e-3)  # any precision
    assert value.item() != pytest.approx(nn.BCEWithLogitsLoss()(logits, targets).item(), rel=0.05)

    factors = [expected_factor(step, warmup, 4, scheduler == "cosine") for step in range(4)]
    assert [step["head"]["lr"] for step in groups] == pytest.approx([0.02 * f for f in factors])
    assert [step["backbone"]["lr"] for step in groups] == pytest.approx(
        [0.002 * f for f in factors]
    )
    assert logged(in_tmp / "logs", "lr-AdamW/head") == pytest.approx([0.02 * f for f in factors])
    decays = {name: {step[name]["weight_decay"] for step in groups} for name in groups[0]}
    assert decays == {
        "backbone": {0.05},
        "head": {0.05},
        "backbone-no-decay": {0.0},
        "head-no-decay": {0.0},
    }
    trained = torch.cat([targets for _, targets, _ in losses])
    assert ((val_targets[0] == 0) | (val_targets[0] == 1)).all()
    if REGULARISED[0] in options:
        assert trained.min() >= 0.05 - 1e-6 and trained.max() <= 0.95 + 1e-6  # smoothed
        assert (torch.minimum((trained - 0.05).abs(), (trained - 0.95).abs()) > 1e-3).any()
    else:
        assert ((trained == 0) | (trained == 1)).all()
    checkpoint = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["backbone_lr_scale"] == 0.1
