"""Backbones by name and by instance, the head, the loss on logits and pretrained weights."""

from urllib.error import URLError

import pytest
import pytorch_lightning as pl
import torch
import torchvision
from torch import nn

from {{ cookiecutter.package }}.backbones import BackboneError, create_backbone
from {{ cookiecutter.package }}.data import PlantDataModule
from {{ cookiecutter.package }}.models import PlantClassifier

CLASSES = ["complex", "healthy", "rust"]


class TinyFeatures(nn.Module):
    """A backbone with no nn.Linear at all: it outputs features already."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


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


def test_default_backbone_is_in_the_registry():
    default = PlantClassifier.__init__.__defaults__[0]
    assert default in torchvision.models.list_models(module=torchvision.models)


def test_outputs_are_logits_and_the_loss_takes_them_raw():
    """Fails if a sigmoid (or a softmax) sits between the logits and BCEWithLogitsLoss."""
    model = PlantClassifier(backbone=TinyFeatures(), classes=CLASSES)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    confident = (targets * 2 - 1) * 12  # +12 where the label is on, -12 where off
    assert model.loss(confident, targets).item() < 1e-4
    random_logits = model(torch.randn(4, 3, 32, 32)) * 50
    assert random_logits.min() < 0 or random_logits.max() > 1  # not probabilities
    logits = torch.randn(5, 3)
    target = (torch.rand(5, 3) > 0.5).float()
    expected = nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert model.loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_training_drives_the_loss_towards_zero():
    """A sigmoid before the with-logits loss keeps it above ~0.31; raw logits go near 0."""
    torch.manual_seed(0)
    model = PlantClassifier(backbone=TinyFeatures(), classes=CLASSES, lr=0.05, scheduler="none")
    images = torch.randn(6, 3, 16, 16)
    targets = torch.tensor(
        [[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]]
    ).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = model.loss(model(images), targets)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_pos_weight_must_match_classes():
    with pytest.raises(ValueError, match="pos_weight has 2 values for 3 classes"):
        PlantClassifier(backbone=TinyFeatures(), classes=CLASSES, pos_weight=[1.0, 2.0])


def test_pretrained_offline_error_says_how_to_supply_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(BackboneError) as error:
        create_backbone("resnet18", pretrained=True)
    message = str(error.value)
    assert "cannot download pretrained weights for resnet18" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "--model.pretrained" in message


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


def test_checkpoint_alone_restores_classes(sample_dir, tmp_path, cheap_trainer_kwargs):
    dm = PlantDataModule(str(sample_dir), image_size=32, batch_size=8, num_workers=0)
    model = PlantClassifier(backbone="resnet18")
    assert model.head is None  # vocabulary comes from the datamodule at fit
    trainer = pl.Trainer(fast_dev_run=1, **cheap_trainer_kwargs)
    trainer.fit(model, datamodule=dm)
    assert model.classes == dm.classes
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    restored = PlantClassifier.load_from_checkpoint(tmp_path / "model.ckpt")
    assert restored.classes == dm.classes
    assert restored.hparams.backbone == "resnet18"
    for ours, theirs in zip(model.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(ours, theirs)
