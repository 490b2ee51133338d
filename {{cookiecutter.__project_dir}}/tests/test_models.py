"""Backbones by name or instance, the head, logits and their loss, the logged metric, weights."""

import inspect
import os
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torchvision
import yaml
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader

from {{ cookiecutter.package }}.backbones import BackboneError, check_backbone_name, create_backbone
from {{ cookiecutter.package }}.data import PlantDataModule
from {{ cookiecutter.package }}.models import PlantClassifier

CLASSES = ["complex", "healthy", "rust"]
CONFIG_DIR = Path(__file__).parents[1] / "configs"
LOG_WITHOUT_TRAINER = "ignore:You are trying to `self.log\\(\\)`"


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in this file may reach the network: torch hub's downloader fails the test."""

    def refuse(url: str, *args, **kwargs) -> None:
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


class TinyFeatures(nn.Module):
    """A backbone with no nn.Linear at all: it outputs features already."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ChannelMeans(nn.Module):
    """Features = the mean of each colour channel, so an image can encode chosen logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def _custom_with_classifier() -> nn.Module:
    """A user model whose classifier is called ``classifier`` (no ``.fc``)."""
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 1000))
    model.forward = lambda x: model.classifier(model.features(x))
    return model


@pytest.mark.parametrize(
    "backbone",
    [
        "resnet18",
        "mobilenet_v3_small",  # classifier[-1], no .fc
        "efficientnet_b0",  # classifier[1], no .fc
        TinyFeatures(),
        _custom_with_classifier(),
    ],
    ids=["resnet18", "mobilenet_v3_small", "efficientnet_b0", "no_linear", "classifier_attr"],
)
def test_backbone_by_name_or_instance(backbone):
    model = PlantClassifier(backbone=backbone, classes=CLASSES).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, len(CLASSES))
    assert model.head.out_features == len(CLASSES)


def test_head_replacement_is_generic():
    features, width = create_backbone("convnext_tiny")
    assert width == 768
    assert isinstance(features.classifier[-1], nn.Identity)
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in features.modules())


@pytest.mark.parametrize(
    ("name", "hint"), [("ResNet50", "resnet50"), ("efficientnet-b0", "efficientnet_b0")]
)
def test_unknown_backbone_suggests_the_registry_name(name, hint):
    with pytest.raises(BackboneError, match=f"{name}.*did you mean.*{hint}"):
        create_backbone(name)


def _config_backbones() -> list[str]:
    """Backbone names set in the shipped configs."""
    names = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        model = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model") or {}
        if "backbone" in model:
            names.append(model["backbone"])
    return names


def test_default_and_configured_backbones_are_in_the_registry():
    """An older template defaulted to "ResNet50", which torchvision's registry does not know."""
    default = inspect.signature(PlantClassifier).parameters["backbone"].default
    configured = _config_backbones()
    assert configured, f"no model.backbone in {CONFIG_DIR}/*.yaml"
    for name in [default, *configured]:
        check_backbone_name(name)  # a timm/ name or a torchvision one


def _logit_model() -> PlantClassifier:
    """A classifier whose logits are exactly the channel means of its input (identity head)."""
    model = PlantClassifier(backbone=ChannelMeans(), classes=CLASSES, channels_last=False).eval()
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(len(CLASSES)))
        model.head.bias.zero_()
    return model


def _images_with_logits(logits: torch.Tensor) -> torch.Tensor:
    """4x4 images, each channel a constant: ``_logit_model`` maps them to exactly ``logits``."""
    return logits[:, :, None, None].expand(-1, -1, 4, 4).contiguous()


def check_logit_contract(model: PlantClassifier) -> None:
    """forward gives raw logits, training uses a with-logits loss on them, predict sigmoids them.

    A sigmoid before ``BCEWithLogitsLoss`` cannot bring the loss of confidently right logits
    below ~0.31 (0.69 for negatives); a softmax makes two present labels share one probability.
    """
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    confident = (targets * 2 - 1) * 12  # +12 where the label is on, -12 where off
    images = _images_with_logits(confident)
    assert torch.equal(model(images), confident), "forward must return the head's raw logits"
    loss = model.training_step({"image": images, "target": targets, "id": ["a", "b"]}, 0)
    assert loss.item() < 0.1, f"loss {loss.item():.3f} of confidently right logits"
    probs = model.predict_step({"image": images, "id": ["a", "b"]}, 0)["probs"]
    assert torch.allclose(probs, targets, atol=1e-4), probs
    logits = torch.randn(5, 3)
    target = (torch.rand(5, 3) > 0.5).float()
    expected = nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert model.loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.filterwarnings(LOG_WITHOUT_TRAINER)
def test_outputs_are_logits_and_the_loss_takes_them_raw():
    check_logit_contract(_logit_model())


def _sigmoid_in_forward(original):
    return lambda self, images: torch.sigmoid(original(self, images))


def _softmax_in_forward(original):
    return lambda self, images: torch.softmax(original(self, images), dim=1)


def _sigmoid_before_loss(original):
    return lambda self, logits, targets: original(self, torch.sigmoid(logits), targets)


def _softmax_in_predict(original):
    def predict_step(self, batch, batch_idx):
        return {**original(self, batch, batch_idx), "probs": torch.softmax(self(batch["image"]), 1)}

    return predict_step


@pytest.mark.filterwarnings(LOG_WITHOUT_TRAINER)
@pytest.mark.parametrize(
    ("method", "sabotage"),
    [
        ("forward", _sigmoid_in_forward),
        ("forward", _softmax_in_forward),
        ("loss", _sigmoid_before_loss),
        ("predict_step", _softmax_in_predict),
    ],
    ids=["sigmoid_in_forward", "softmax_in_forward", "sigmoid_before_loss", "softmax_in_predict"],
)
def test_the_logit_check_catches_the_old_bugs(monkeypatch, method, sabotage):
    """The check above fails on a model with each known bug planted in it."""
    monkeypatch.setattr(PlantClassifier, method, sabotage(getattr(PlantClassifier, method)))
    with pytest.raises(AssertionError):
        check_logit_contract(_logit_model())


def test_validation_logs_the_samples_f1_with_argmax_fallback(cheap_trainer_kwargs):
    """val/f1 is per-image F1 averaged over images, not weighted F1 nor element-wise accuracy."""
    targets = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
    on, off = 4.0, -4.0
    logits = torch.tensor(
        [
            [on, on, off],  # F1 2/3
            [off, on, off],  # F1 2/3
            [on, on, off],  # F1 1
            [on, off, off],  # F1 0
            [-3.0, -1.0, -4.0],  # nothing above 0.5: the arg-max (healthy) is right, F1 1
        ]
    )
    images = _images_with_logits(logits)
    batches = [
        {"image": images[i], "target": torch.tensor(targets[i]).float(), "index": i}
        for i in range(len(targets))
    ]
    trainer = pl.Trainer(**cheap_trainer_kwargs)
    (logged,) = trainer.validate(_logit_model(), DataLoader(batches, batch_size=5))
    assert logged["val/f1"] == pytest.approx(2 / 3, abs=1e-6)
    # complex: TP 2 FP 1 -> 0.8; healthy: TP 3 FP 1 -> 6/7; rust: never predicted -> 0
    assert logged["val/f1_complex"] == pytest.approx(0.8, abs=1e-6)
    assert logged["val/f1_healthy"] == pytest.approx(6 / 7, abs=1e-6)
    assert logged["val/f1_rust"] == 0.0
    # the example tells the competition metric apart from the look-alikes older code reported
    predicted = np.array([[1, 1, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]])
    for other in (
        f1_score(targets, predicted, average="weighted"),
        f1_score(targets, predicted, average="micro"),
        (targets == predicted).mean(),
        f1_score(targets, (logits > 0).int().numpy(), average="samples", zero_division=0),
    ):
        assert other != pytest.approx(2 / 3, abs=0.01)


def test_pos_weight_must_match_classes():
    with pytest.raises(ValueError, match="pos_weight has 2 values for 3 classes"):
        PlantClassifier(backbone=TinyFeatures(), classes=CLASSES, pos_weight=[1.0, 2.0])


@pytest.mark.slow
def test_checkpoint_alone_restores_classes(sample_dir, tmp_path, cheap_trainer_kwargs):
    dm = PlantDataModule(str(sample_dir), image_size=32, batch_size=4, num_workers=0)
    model = PlantClassifier(backbone="resnet18")
    assert model.head is None  # vocabulary comes from the datamodule at fit
    trainer = pl.Trainer(fast_dev_run=1, **cheap_trainer_kwargs)
    trainer.fit(model, datamodule=dm)
    assert model.classes == dm.classes
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    restored = PlantClassifier.load_from_checkpoint(tmp_path / "model.ckpt")
    assert restored.classes == dm.classes
    assert restored.hparams.backbone == "resnet18"
    ours, theirs = model.state_dict(), restored.state_dict()
    assert sorted(theirs) == sorted(ours)
    assert [key for key in ours if not torch.equal(ours[key], theirs[key])] == []


# Pretrained weights: torch hub's loader unpickles its cache file with weights_only=False, so a
# file planted in the cache would run code. These tests plant files where torch hub looks.


class MakesDirectoryWhenUnpickled:
    """A pickle payload: unpickling it with ``weights_only=False`` creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def hub_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where torch hub keeps resnet18's default weights, in a fresh empty ``TORCH_HOME``."""
    torch_home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    assert Path(torch.hub.get_dir()) == torch_home / "hub", "torch.hub.set_dir was called"
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    return torch_home / "hub" / "checkpoints" / Path(urlparse(url).path).name


def _plant(path: Path, state: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_a_pickle_planted_in_the_hub_cache_does_not_run(hub_file, tmp_path):
    marker = tmp_path / "code_ran"
    _plant(hub_file, {"conv1.weight": MakesDirectoryWhenUnpickled(marker)})
    with pytest.raises(BackboneError) as error:
        create_backbone("resnet18", pretrained=True)
    assert not marker.exists(), "the planted pickle ran"
    message = str(error.value)
    assert str(hub_file) in message and "--model.pretrained" in message
    assert "\n" not in message and "weights_only` set to `False" not in message


def test_weights_in_the_hub_cache_load_offline(hub_file, monkeypatch):
    reference = torchvision.models.resnet18()
    _plant(hub_file, reference.state_dict())

    def unsafe(*args, **kwargs):
        raise AssertionError("load_state_dict_from_url unpickles with weights_only=False")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unsafe)
    features, width = create_backbone("resnet18", pretrained=True)
    assert width == 512
    assert torch.equal(features.conv1.weight, reference.conv1.weight)
    assert torch.equal(features.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_downloaded_weights_are_loaded_safely_too(hub_file, tmp_path, monkeypatch):
    """The download lands in the hub cache (hash checked) and is loaded with weights_only."""
    marker = tmp_path / "code_ran"
    reference = torchvision.models.resnet18()
    payloads = [{"fc.weight": MakesDirectoryWhenUnpickled(marker)}, reference.state_dict()]
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, Path(dst), hash_prefix))
        torch.save(payloads[len(calls) - 1], dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.raises(BackboneError):
        create_backbone("resnet18", pretrained=True)
    assert not marker.exists(), "the downloaded pickle ran"
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    assert calls == [(url, hub_file, hub_file.stem.split("-")[-1])]
    hub_file.unlink()
    features, _ = create_backbone("resnet18", pretrained=True)
    assert torch.equal(features.conv1.weight, reference.conv1.weight)
    assert len(calls) == 2


def test_pretrained_offline_error_says_how_to_supply_weights(hub_file, monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(BackboneError) as error:
        create_backbone("resnet18", pretrained=True)
    message = str(error.value)
    assert "cannot download pretrained weights for resnet18" in message
    assert f"--model.pretrained /path/to/{hub_file.name}" in message
    assert f"{hub_file.name} in {hub_file.parent}" in message and "TORCH_HOME" in message
    assert "\n" not in message
    assert not hub_file.parent.is_dir() or list(hub_file.parent.iterdir()) == []


def test_pretrained_from_a_local_file(tmp_path):
    reference = torchvision.models.resnet18()
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "weights.pth")
    features, _ = create_backbone("resnet18", pretrained=str(tmp_path / "weights.pth"))
    assert torch.equal(features.conv1.weight, reference.conv1.weight)
    with pytest.raises(BackboneError, match="not found"):
        create_backbone("resnet18", pretrained=str(tmp_path / "missing.pth"))
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "other.pth")
    with pytest.raises(BackboneError, match="do not fit resnet18"):
        create_backbone("resnet18", pretrained=str(tmp_path / "other.pth"))


def test_a_hostile_local_weights_file_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "code_ran"
    path = _plant(tmp_path / "weights.pth", {"x": MakesDirectoryWhenUnpickled(marker)})
    with pytest.raises(BackboneError) as error:
        create_backbone("resnet18", pretrained=str(path))
    assert not marker.exists()
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message and "weights_only` set to `False" not in message
