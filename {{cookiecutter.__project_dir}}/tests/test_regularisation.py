"""Multi-label regularisation on its contract: the losses (BCE, focal, ASL) and label smoothing,
mixup and cutmix of images and label vectors, the AdamW parameter groups and the per-step warmup
and cosine schedule; then all of it through ``fit`` as a user runs it."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from {{ cookiecutter.package }} import models
from {{ cookiecutter.package }}.cli.lightning import PlantCLI
from {{ cookiecutter.package }}.data import PlantDataModule
from {{ cookiecutter.package }}.losses import MultiLabelLoss, smooth_targets
from {{ cookiecutter.package }}.models import PlantClassifier
from {{ cookiecutter.package }}.transforms import mix_batch
from {{ cookiecutter.package }}.utils.errors import DataError

from helpers import CONFIG_DIR, SAMPLE_DIR, cli_args

CLASSES = ["complex", "healthy", "rust", "scab"]


def _soft_batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits over a wide range and soft targets in [0, 1] with exact 0s and 1s among them."""
    torch.manual_seed(0)
    logits = torch.randn(n, len(CLASSES)) * 4
    targets = torch.rand(n, len(CLASSES))
    targets[0], targets[1] = 0.0, 1.0
    return logits, targets


def _asl_by_the_paper(logits, targets, gamma_pos, gamma_neg, clip, pos_weight=None):
    """Ridnik et al. 2021, eq. 1-4, in float64 from probabilities (soft targets mix both terms)."""
    p = torch.sigmoid(logits.double())
    p_m = (p - clip).clamp(min=0)
    positive = (1 - p) ** gamma_pos * torch.log(p)
    negative = p_m**gamma_neg * torch.log(1 - p_m)
    weight = 1.0 if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float64)
    return -(targets.double() * weight * positive + (1 - targets.double()) * negative).mean()


POS_WEIGHT = [0.5, 1.0, 2.0, 4.0]


@pytest.mark.parametrize("pos_weight", [None, POS_WEIGHT])
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("asl", {"asl_gamma_pos": 0.0, "asl_gamma_neg": 0.0, "asl_clip": 0.0}),
        ("focal", {"focal_gamma": 0.0}),
        ("bce", {}),
    ],
)
def test_without_focusing_every_loss_is_bce(name, params, pos_weight):
    logits, targets = _soft_batch()
    loss = MultiLabelLoss(name, pos_weight, **params)(logits, targets)
    weight = None if pos_weight is None else torch.tensor(pos_weight)
    expected = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("name", "params", "paper"),
    [
        ("asl", {"asl_gamma_pos": 1.0, "asl_gamma_neg": 4.0, "asl_clip": 0.05}, (1.0, 4.0, 0.05)),
        ("asl", {"asl_gamma_pos": 0.0, "asl_gamma_neg": 2.5, "asl_clip": 0.2}, (0.0, 2.5, 0.2)),
        ("focal", {"focal_gamma": 2.0}, (2.0, 2.0, 0.0)),
        ("focal", {"focal_gamma": 0.5}, (0.5, 0.5, 0.0)),
    ],
)
def test_focal_and_asl_follow_the_paper(name, params, paper):
    logits, targets = _soft_batch()
    loss = MultiLabelLoss(name, POS_WEIGHT, **params)(logits, targets)
    expected = _asl_by_the_paper(logits, targets, *paper, pos_weight=POS_WEIGHT)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor(POS_WEIGHT))
    assert loss.item() != pytest.approx(bce.item(), rel=0.02)  # the parameters are used


LOSSES = [
    ("bce", {}),
    ("focal", {"focal_gamma": 0.5}),  # a fractional power: its slope at 0 is infinite
    ("asl", {"asl_gamma_pos": 0.5, "asl_gamma_neg": 4.0, "asl_clip": 0.05}),
    ("asl", {"asl_gamma_pos": 0.0, "asl_gamma_neg": 0.5, "asl_clip": 0.3}),
]


@pytest.mark.parametrize(("name", "params"), LOSSES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_computed_in_float32(name, params, dtype):
    logits, targets = _soft_batch()
    criterion = MultiLabelLoss(name, POS_WEIGHT, **params)
    loss = criterion(logits.to(dtype), targets.to(dtype))
    assert loss.dtype == torch.float32
    same_values = criterion(logits.to(dtype).float(), targets.to(dtype).float())
    assert loss.item() == same_values.item()


@pytest.mark.parametrize(("name", "params"), LOSSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_values_and_gradients_stay_finite_at_extreme_logits(name, params, dtype):
    logits = torch.tensor([[-1e4, -100.0, -1e-3, 0.0, 1e-3, 100.0, 1e4]] * 3).to(dtype)
    targets = torch.tensor([[0.0] * 7, [1.0] * 7, [0.5] * 7])
    logits.requires_grad_(True)
    loss = MultiLabelLoss(name, None, **params)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad.float()).all(), logits.grad


def test_label_smoothing_moves_each_label_toward_one_half():
    targets = torch.tensor([[0.0, 1.0, 0.5, 0.25]])
    assert torch.equal(smooth_targets(targets, 0.0), targets)
    assert torch.allclose(smooth_targets(targets, 0.2), torch.tensor([[0.1, 0.9, 0.5, 0.3]]))


def test_an_unknown_loss_name_is_refused_for_python_callers_too():
    with pytest.raises(DataError, match="loss='bce2' is not one of bce, focal, asl"):
        PlantClassifier(classes=CLASSES, loss="bce2")


def _images(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised-looking images, all different, and distinct multi-label targets."""
    torch.manual_seed(1)
    images = torch.randn(n, 3, 12, 16)
    targets = (torch.rand(n, len(CLASSES)) > 0.5).float()
    return images, targets


@pytest.mark.parametrize("seed", range(5))
def test_mixup_mixes_the_labels_as_it_mixes_the_pixels(seed):
    images, targets = _images()
    torch.manual_seed(seed)
    mix = mix_batch(images, targets, mixup_p=1.0, mixup_alpha=0.4)
    assert mix.box is None and sorted(mix.perm.tolist()) == list(range(len(images)))
    other = images[mix.perm]
    # the share of each image in the pixels, read off the pixels themselves
    lam = ((mix.images - other) * (images - other)).sum() / ((images - other) ** 2).sum()
    assert torch.allclose(mix.images, lam * images + (1 - lam) * other, atol=1e-5)
    assert lam.item() == pytest.approx(mix.lam, abs=1e-5)
    assert torch.allclose(mix.targets, lam * targets + (1 - lam) * targets[mix.perm], atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_mixes_the_labels_by_the_pasted_area(seed):
    images, targets = _images()
    torch.manual_seed(seed)
    mix = mix_batch(images, targets, cutmix_p=1.0, cutmix_alpha=1.0)
    other = images[mix.perm]
    pasted = (mix.images == other).all(dim=1) & (mix.images != images).any(dim=1)
    kept = (mix.images == images).all(dim=1)
    moved = mix.perm != torch.arange(len(images))
    assert (pasted | kept).all()  # every pixel is one image's or the other's
    pasted_share = pasted[moved].float().mean(dim=(1, 2))  # the same box in every image
    assert torch.allclose(pasted_share, pasted_share[0].expand_as(pasted_share))
    lam = 1 - pasted_share[0].item()
    assert lam == pytest.approx(mix.lam, abs=1e-6)
    top, bottom, left, right = mix.box
    assert pasted[moved][:, top:bottom, left:right].all()
    assert torch.allclose(mix.targets, lam * targets + (1 - lam) * targets[mix.perm], atol=1e-6)


def test_probability_zero_is_the_identity_and_the_probabilities_are_honoured():
    images, targets = _images()
    torch.manual_seed(2)
    for _ in range(50):
        mix = mix_batch(images, targets, mixup_p=0.0, cutmix_p=0.0)
        assert mix.images is images and mix.targets is targets and mix.perm is None
    kinds = {"mixup": 0, "cutmix": 0, "none": 0}
    for _ in range(2000):
        mix = mix_batch(images, targets, mixup_p=0.2, cutmix_p=0.3)
        kinds["none" if mix.perm is None else "mixup" if mix.box is None else "cutmix"] += 1
    assert kinds["mixup"] / 2000 == pytest.approx(0.2, abs=0.04)
    assert kinds["cutmix"] / 2000 == pytest.approx(0.3, abs=0.04)


def _model(**hparams) -> PlantClassifier:
    """A small real backbone: convolutions, batch norms, a head with a bias."""
    return PlantClassifier(backbone="resnet18", classes=CLASSES, **hparams)


def test_param_groups_hold_the_learning_rates_and_weight_decays_given():
    model = _model(lr=0.02, backbone_lr_scale=0.1, weight_decay=0.05)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = {group["name"]: group for group in optimizer.param_groups}
    lrs = {"backbone": 0.002, "backbone-no-decay": 0.002, "head": 0.02, "head-no-decay": 0.02}
    assert {name: group["lr"] for name, group in groups.items()} == pytest.approx(lrs)
    decays = {"backbone": 0.05, "backbone-no-decay": 0.0, "head": 0.05, "head-no-decay": 0.0}
    assert {name: group["weight_decay"] for name, group in groups.items()} == decays
    ids = {name: {id(p) for p in group["params"]} for name, group in groups.items()}
    backbone = {id(p) for p in model.backbone.parameters()}
    assert ids["backbone"] | ids["backbone-no-decay"] == backbone
    assert ids["head"] | ids["head-no-decay"] == {id(p) for p in model.head.parameters()}
    assert sum(map(len, ids.values())) == len(list(model.parameters()))  # each exactly once
    norms = [m.weight for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {id(w) for w in norms} <= ids["backbone-no-decay"]
    assert id(model.head.bias) in ids["head-no-decay"] and id(model.head.weight) in ids["head"]


def _expected_factor(step: int, warmup: int, total: int, cosine: bool) -> float:
    """The schedule the docstring promises, written out: linear warmup, then half a cosine."""
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


@pytest.mark.parametrize(
    ("scheduler", "warmup_epochs", "batches", "accumulate", "warmup"),
    [
        ("cosine", 0.5, 10, 1, 5),  # half an epoch of 10 steps
        ("cosine", 2.0, 10, 4, 6),  # 3 optimizer steps an epoch (10 batches, 4 accumulated)
        ("cosine", 0.0, 10, 1, 0),
        ("none", 1.0, 10, 1, 10),  # warmup, then constant
    ],
)
def test_the_learning_rate_follows_warmup_then_cosine_step_by_step(
    scheduler, warmup_epochs, batches, accumulate, warmup
):
    total = 105
    model = _model(lr=0.02, backbone_lr_scale=0.1, scheduler=scheduler, warmup_epochs=warmup_epochs)
    model._trainer = SimpleNamespace(
        estimated_stepping_batches=total,
        num_training_batches=batches,
        accumulate_grad_batches=accumulate,
    )
    config = model.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "step"
    optimizer, scheduler_ = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(total + 1):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler_.step()
    for step in [0, warmup - 1, warmup, (warmup + total) // 2, total - 1, total]:
        if step < 0:
            continue
        factor = _expected_factor(step, warmup, total, scheduler == "cosine")
        assert lrs[step] == pytest.approx([0.002 * factor] * 2 + [0.02 * factor] * 2), step
    if scheduler == "cosine":
        assert lrs[total] == pytest.approx([0.0] * 4, abs=1e-12)
        middle = warmup + (total - warmup) / 2
        if middle == int(middle):
            assert lrs[int(middle)][2] == pytest.approx(0.01)


def test_a_fit_without_an_end_warms_up_then_keeps_the_rate():
    """No max_epochs or max_steps (Lightning estimates infinite steps), or max_steps=0: the
    cosine has no end to reach; the warmup still runs, then the rate stays."""
    model = _model(lr=0.02, backbone_lr_scale=0.1, warmup_epochs=1.0)
    model._trainer = SimpleNamespace(
        estimated_stepping_batches=math.inf, num_training_batches=4, accumulate_grad_batches=1
    )
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[2]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.005, 0.01, 0.015] + [0.02] * 7)
    model._trainer.num_training_batches = math.inf  # max_steps=0: no batch was counted
    optimizer = model.configure_optimizers()["optimizer"]
    assert optimizer.param_groups[2]["lr"] == pytest.approx(0.02)


def test_scheduler_none_without_warmup_keeps_the_optimizer_alone():
    model = _model(scheduler="none")
    model._trainer = SimpleNamespace(
        estimated_stepping_batches=10, num_training_batches=10, accumulate_grad_batches=1
    )
    assert isinstance(model.configure_optimizers(), torch.optim.AdamW)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_smoothing_and_mixing_apply_to_training_steps_only(monkeypatch):
    """The targets the loss sees: smoothed and mixed in ``training_step``, the dataset's own in
    validation (whose images go to the model unchanged)."""
    model = PlantClassifier(
        backbone="resnet18", classes=CLASSES, label_smoothing=0.2, mixup_p=1.0, channels_last=False
    )
    seen = []
    forward = PlantClassifier.forward

    def recorded_forward(self, images):
        seen.append(images)
        return forward(self, images)

    monkeypatch.setattr(PlantClassifier, "forward", recorded_forward)
    monkeypatch.setattr(model, "loss", lambda logits, targets: seen.append(targets) or logits.sum())
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    mixes = []
    monkeypatch.setattr(models, "mix_batch", lambda *a: mixes.append(mix_batch(*a)) or mixes[-1])
    images, targets = _images(4)
    batch = {"image": images, "target": targets, "index": torch.arange(4), "id": list("abcd")}
    torch.manual_seed(3)
    model.training_step(batch, 0)
    (mix,) = mixes
    assert seen[0] is mix.images and not torch.equal(mix.images, images)
    assert torch.allclose(seen[1], mix.targets * 0.8 + 0.1)
    seen.clear()
    model.eval()
    model.validation_step(batch, 0)
    assert seen[0] is images and torch.equal(seen[1], targets)
    assert len(mixes) == 1


@pytest.mark.parametrize(
    ("flags", "name", "focusing"),
    [
        ([], "bce", None),
        (["--model.loss", "focal", "--model.focal_gamma", "1.5"], "focal", (1.5, 1.5, 0.0)),
        (["--model.loss", "asl", "--model.asl_clip", "0.1"], "asl", (0.0, 4.0, 0.1)),
        (
            ["--model.loss", "asl", "--model.asl_gamma_pos", "1", "--model.asl_gamma_neg", "3"],
            "asl",
            (1.0, 3.0, 0.05),
        ),
    ],
)
def test_the_loss_options_reach_the_loss(flags, name, focusing):
    cli = PlantCLI(
        PlantClassifier,
        PlantDataModule,
        args=cli_args(SAMPLE_DIR, "--trainer.logger", "false", "--model.classes", "[a, b]", *flags),
        run=False,
    )
    assert (cli.model.criterion.name, cli.model.criterion.focusing) == (name, focusing)


REGULARISATION = ["backbone_lr_scale", "warmup_epochs", "loss", "label_smoothing"]
REGULARISATION += ["mixup_p", "cutmix_p"]


OFFLINE_MODEL = ["--model.pretrained", "false", "--model.backbone", "resnet18"]
OFFLINE_MODEL += ["--trainer.logger", "false"]


def _configured_model(*configs: str) -> dict:
    """The model options the shipped configs give, as ``fit`` parses them."""
    flags = [arg for name in configs for arg in ("--config", str(CONFIG_DIR / name))]
    cli = PlantCLI(
        PlantClassifier,
        PlantDataModule,
        args=[*flags, "--data.data_dir", str(SAMPLE_DIR), *OFFLINE_MODEL],
        run=False,
    )
    return {key: cli.model.hparams[key] for key in REGULARISATION}


def test_the_baseline_regularises_and_the_cpu_overlay_turns_it_all_off():
    baseline = _configured_model("baseline.yaml")
    off = _configured_model("baseline.yaml", "cpu_debug.yaml")
    assert off == {key: PlantClassifier(classes=["a"]).hparams[key] for key in REGULARISATION}
    assert all(baseline[key] != off[key] for key in REGULARISATION if key != "loss")
