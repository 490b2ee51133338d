"""timm backbones (``timm/<architecture>[.<tag>]``): our head on their pooled features, pretrained
weights from a file, a ``save_for_hf`` folder or the Hugging Face cache with the network blocked,
one-line errors for bad names and weights, and checkpoints that rebuild the model offline.

Every model is one of timm's tiny ``test_*`` architectures with weights the test writes itself.
"""

import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import huggingface_hub.constants
import pytest
import safetensors.torch
import timm
import torch
from torch import nn

from {{ cookiecutter.package }}.backbones import create_backbone, fixed_input_size
from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.models import PlantClassifier
from {{ cookiecutter.package }}.predict.inference import load_classifier
from {{ cookiecutter.package }}.utils.errors import BackboneError

from helpers import assert_nothing_written, cli_args, fit, only_error_line, read_csv_rows
from fake_runs import CLASSES, package
from test_models import MakesDirectoryWhenUnpickled

ARCHITECTURES = ["test_resnet", "test_convnext", "test_efficientnet"]  # in timm 1.0.26 too


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No network (a connection attempt fails), Hugging Face offline, empty caches; the cache."""

    def no_network(*args, **kwargs):
        raise OSError("the network is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return cache


def reference(architecture: str, seed: int = 1, **kwargs) -> nn.Module:
    """A timm model with random weights of its own (a seed the backbone's init does not use)."""
    torch.manual_seed(seed)
    return timm.create_model(architecture, **kwargs)


def assert_same_weights(features: nn.Module, model: nn.Module) -> None:
    """Every tensor of ``features`` equals ``model``'s of the same name."""
    expected = model.state_dict()
    found = features.state_dict()
    assert found and set(found) <= set(expected)
    assert [name for name, value in found.items() if not torch.equal(value, expected[name])] == []


def write_weights(model: nn.Module, path: Path) -> Path:
    """``model``'s state dict as safetensors, or as a torch file (``.pth``, ``.bin``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(model.state_dict(), path)
    else:
        torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("architecture", [*ARCHITECTURES, "test_mambaout"])  # wider head
def test_a_timm_backbone_gets_our_head_on_its_pooled_features(architecture):
    model = PlantClassifier(backbone=f"timm/{architecture}", classes=CLASSES).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(images)
        pooled = timm.create_model(architecture, num_classes=0).eval()(images)
    assert logits.shape == (2, len(CLASSES))
    assert model.head.in_features == pooled.shape[1]
    assert isinstance(model.backbone.get_classifier(), nn.Identity)
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in model.modules())


@pytest.mark.parametrize(
    ("architecture", "suffix"),
    [("test_resnet", ".safetensors"), ("test_convnext", ".pth"), ("test_efficientnet", ".bin")],
)
def test_pretrained_weights_from_a_file_load_offline(architecture, suffix, offline, tmp_path):
    model = reference(architecture)
    path = write_weights(model, tmp_path / f"weights{suffix}")
    features, _ = create_backbone(f"timm/{architecture}", str(path))
    assert_same_weights(features, model)


def test_a_hostile_weights_file_does_not_run_and_is_refused_in_one_line(tmp_path, offline):
    marker = tmp_path / "code_ran"
    path = tmp_path / "weights.pth"
    torch.save({"stem.0.weight": MakesDirectoryWhenUnpickled(marker)}, path)
    with pytest.raises(BackboneError) as error:
        create_backbone("timm/test_convnext", str(path))
    assert not marker.exists(), "the planted pickle ran"
    message = str(error.value)
    assert message.startswith(f"{path}: not readable as weights of timm/test_convnext (")
    assert "\n" not in message


def test_pretrained_weights_from_a_save_for_hf_folder_load_offline(offline, tmp_path):
    model = reference("test_convnext", num_classes=10)  # the folder's config.json sets the head
    timm.models.save_for_hf(model, str(tmp_path / "folder"), safe_serialization=True)
    features, _ = create_backbone("timm/test_convnext", f"local-dir:{tmp_path / 'folder'}")
    assert_same_weights(features, model)


def test_pretrained_true_reads_the_hugging_face_cache_offline(offline):
    model = reference("test_resnet")
    repo = offline / "models--timm--test_resnet.r160_in1k"  # the tag timm names for test_resnet
    commit = "0" * 40
    write_weights(model, repo / "snapshots" / commit / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    features, _ = create_backbone("timm/test_resnet", True)
    assert_same_weights(features, model)


def test_without_weights_offline_one_line_says_how_to_supply_them(offline):
    with pytest.raises(BackboneError) as error:
        create_backbone("timm/test_convnext", True)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("cannot get pretrained weights for timm/test_convnext")
    assert str(offline) in message and "HF_HUB_OFFLINE=1" in message
    assert "--model.pretrained /path/model.safetensors" in message
    assert "--model.pretrained local-dir:" in message
    assert "https://huggingface.co/timm/test_convnext.r160_in1k" in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("timm/test_convnxt", "no architecture 'test_convnxt'; did you mean timm/test_convnext"),
        ("timm/test_resnet.in22k", "no pretrained tag 'in22k' for test_resnet; its tags: r160"),
        ("timm/mobilenet_v3_small", "(torchvision's mobilenet_v3_small has no prefix)"),
        ("test_resnet.r160_in1k", "test_resnet.r160_in1k is spelled timm/test_resnet.r160_in1k"),
    ],
    ids=["misspelt", "unknown-tag", "torchvision-with-prefix", "timm-without-prefix"],
)
def test_a_bad_backbone_name_gets_one_line_with_the_closest_names(name, expected, in_tmp, capsys):
    assert fit(Path(__file__).parent / "data", "--model.backbone", name) == 2
    line = only_error_line(capsys)
    assert f"backbone {name!r}" in line
    assert expected in line
    assert_nothing_written(in_tmp)


# A ViT published for 224 px (random weights): timm builds it for that size alone unless asked.
VIT = "vit_tiny_patch16_224"


def test_a_vit_takes_any_image_size_with_its_published_weights(tmp_path, offline):
    published = reference(VIT).eval()
    path = write_weights(published, tmp_path / "vit.safetensors")
    published.reset_classifier(0)
    features, _ = create_backbone(f"timm/{VIT}", str(path))
    features.eval()
    assert_same_weights(features, published)
    assert fixed_input_size(features) is None
    with torch.no_grad():
        at_224 = torch.randn(1, 3, 224, 224)
        torch.testing.assert_close(features(at_224), published(at_224))  # its own grid: as built
        for side in (64, 96, 384):  # other grids: the position embeddings resampled
            assert features(torch.randn(2, 3, side, side)).shape == (2, published.num_features)


def test_a_backbone_built_for_one_size_is_one_line_naming_that_size(in_tmp, capsys):
    assert fixed_input_size(reference("test_maxvit")) == 160
    args = ["--model.backbone", "timm/test_maxvit", "--data.image_size", "64"]
    assert fit(Path(__file__).parent / "data", *args) == 2
    line = only_error_line(capsys)
    assert "backbone 'timm/test_maxvit' takes 160x160 images only" in line
    assert "pass --data.image_size 160" in line
    assert_nothing_written(in_tmp)


def _other_architecture(tmp_path: Path) -> str:
    return str(write_weights(reference("test_convnext"), tmp_path / "convnext.safetensors"))


def _other_head(tmp_path: Path) -> str:
    return str(write_weights(reference("test_resnet", num_classes=10), tmp_path / "head10.pth"))


def _other_folder(tmp_path: Path) -> str:
    timm.models.save_for_hf(reference("test_convnext"), str(tmp_path / "folder"))
    return f"local-dir:{tmp_path / 'folder'}"


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (_other_architecture, "do not fit backbone timm/test_resnet (Error(s) in loading"),
        (_other_head, "size mismatch for fc.weight"),
        (_other_folder, "holds weights of test_convnext, not of backbone timm/test_resnet"),
    ],
    ids=["other-architecture", "other-head-size", "folder-of-another-architecture"],
)
def test_weights_that_do_not_fit_get_one_line_naming_file_and_backbone(
    weights, expected, tmp_path, in_tmp, offline, capsys
):
    path = weights(tmp_path)
    flags = ["--model.backbone", "timm/test_resnet", "--model.pretrained", path]
    assert fit(Path(__file__).parent / "data", *flags) == 2
    line = only_error_line(capsys)
    assert path.removeprefix("local-dir:") in line and "timm/test_resnet" in line
    assert expected in line
    assert_nothing_written(in_tmp)


# Runs in a fresh Python that finds the package in the unpacked wheel, with no network at all.
OFFLINE = """
import socket, sys
def no_network(*args, **kwargs):
    raise OSError("the network is blocked")
socket.socket.connect = no_network
from {package}.kaggle.offline_predict import predict_with_manifest
predict_with_manifest(sys.argv[1], sys.argv[2], sys.argv[3], num_workers=0, accelerator="cpu")
"""


@pytest.mark.slow
def test_a_timm_model_fits_predicts_reloads_and_packages_offline(sample_dir, in_tmp, offline):
    """fit with pretrained weights from a file; then, the file gone and the network blocked, the
    checkpoint rebuilds the same model for load_classifier, predict (even told pretrained: true)
    and the Kaggle bundle's offline predict."""
    weights = write_weights(reference("test_convnext"), in_tmp.parent / "w" / "model.safetensors")
    quiet = ["--trainer.enable_progress_bar", "false"]
    backbone = ["--model.backbone", "timm/test_convnext", "--model.pretrained", str(weights)]
    assert fit(sample_dir, *backbone, *quiet) == 0
    weights.unlink()
    ckpt = in_tmp / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["hyper_parameters"]["backbone"] == "timm/test_convnext"
    model, _ = load_classifier(ckpt)
    assert model.state_dict().keys() == saved["state_dict"].keys()
    assert all(torch.equal(v, saved["state_dict"][k]) for k, v in model.state_dict().items())
    reload = ["--ckpt_path", str(ckpt), "--model.pretrained", "true", *quiet]  # never fetched
    assert main(["predict", *cli_args(sample_dir, *reload)]) == 0
    code, _ = package(str(ckpt), "bundle", "--user", "tester")
    assert code == 0
    (wheel,) = (in_tmp / "bundle" / "code").glob("*.whl")
    zipfile.ZipFile(wheel).extractall(in_tmp.parent / "wheel")
    script = OFFLINE.format(package=PlantClassifier.__module__.split(".")[0])
    manifest = in_tmp / "bundle" / "weights" / "manifest.json"
    env = {**os.environ, "PYTHONPATH": str(in_tmp.parent / "wheel"), "HF_HUB_OFFLINE": "1"}
    env |= {"HF_HOME": str(offline), "TORCH_HOME": str(offline)}
    args = [str(manifest), str(sample_dir / "test_images"), "offline.csv"]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_csv_rows(in_tmp / "offline.csv") == read_csv_rows(in_tmp / "submission.csv")
