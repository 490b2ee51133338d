"""Your own ``nn.Module`` backbone, named by class path in a config, through every command.

The module is written into the package's source folder, as a user adds
``src/<package>/my_backbones.py``, and removed afterwards; the checkpoint alone rebuilds it.
"""

import importlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import {{ cookiecutter.package }}
from {{ cookiecutter.package }}.cli import main

from fake_runs import package
from helpers import QUICK_EPOCH, cli_args, fit, only_error_line, read_csv_rows

PACKAGE = "{{ cookiecutter.package }}"
OWN_MODULE = "own_backbone_under_test"
SOURCE = '''"""A backbone of one's own: a convolution, pooled to a feature vector (no nn.Linear)."""
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, images):
        return self.features(images)
'''
# Runs in a fresh Python that finds the package in the unpacked wheel before the project's source.
OFFLINE = """
import sys
from {package}.kaggle.offline_predict import predict_with_manifest
predict_with_manifest(sys.argv[1], sys.argv[2], sys.argv[3], num_workers=0, accelerator="cpu")
print(sys.modules["{package}.{module}"].__file__)
"""


@pytest.fixture
def own_backbone() -> Iterator[str]:
    """The class path of ``TinyNet``, written as a module of the package for the test's length."""
    source = Path({{ cookiecutter.package }}.__file__).parent
    (source / f"{OWN_MODULE}.py").write_text(SOURCE, encoding="utf-8")
    importlib.invalidate_caches()
    try:
        yield f"{PACKAGE}.{OWN_MODULE}.TinyNet"
    finally:
        for path in [source / f"{OWN_MODULE}.py", *source.glob(f"__pycache__/{OWN_MODULE}.*")]:
            path.unlink()
        sys.modules.pop(f"{PACKAGE}.{OWN_MODULE}", None)


def offline_predict(bundle: Path, images: Path, out: Path, work: Path) -> str:
    """Predict with the bundle's manifest in a Python that imports the package from its wheel."""
    (wheel,) = (bundle / "code").glob("*.whl")
    zipfile.ZipFile(wheel).extractall(work / "wheel")
    script = OFFLINE.format(package=PACKAGE, module=OWN_MODULE)
    manifest = bundle / "weights" / "manifest.json"
    done = subprocess.run(
        [sys.executable, "-c", script, str(manifest), str(images), str(out)],
        env={**os.environ, "PYTHONPATH": str(work / "wheel")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_backbone_of_ones_own_module_works_in_every_command(own_backbone, sample_dir, in_tmp):
    # The configs name resnet18: every command after fit must take the backbone from the checkpoint.
    backbone = ["--model.backbone.class_path", own_backbone, "--model.backbone.init_args.width=6"]
    quiet = ["--trainer.enable_progress_bar", "false"]
    assert fit(sample_dir, *backbone, *quiet) == 0
    ckpt = in_tmp / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)["hyper_parameters"]["backbone"]
    assert saved == {"class_path": own_backbone, "init_args": {"width": 6}}
    from_ckpt = cli_args(sample_dir, "--ckpt_path", str(ckpt), *quiet)
    assert main(["validate", *from_ckpt]) == 0
    assert main(["predict", *from_ckpt]) == 0
    tests = len(list((sample_dir / "test_images").iterdir()))
    assert len(read_csv_rows(in_tmp / "submission.csv")) == tests
    assert main(["report", str(sample_dir), str(in_tmp), "--out", "figures"]) == 0
    assert (in_tmp / "figures" / "per_class_f1.png").is_file()
    cv_flags = cli_args(sample_dir, *QUICK_EPOCH, *backbone, *quiet)
    assert main(["cv", "--folds", "2", "--out", "cv", *cv_flags]) == 0
    oof = read_csv_rows(in_tmp / "cv" / "oof.csv")
    assert len(oof) == len(read_csv_rows(sample_dir / "train.csv"))
    code, _ = package("cv", "bundle", "--user", "tester")
    assert code == 0
    imported = offline_predict(
        in_tmp / "bundle", sample_dir / "test_images", in_tmp / "offline.csv", in_tmp.parent
    )
    assert Path(imported).is_relative_to(in_tmp.parent / "wheel")
    assert len(read_csv_rows(in_tmp / "offline.csv")) == tests


def _forged(trained: Path, target: Path, backbone: object) -> Path:
    """A copy of ``trained`` whose backbone hyper-parameter is ``backbone``."""
    state = torch.load(trained, weights_only=True)
    state["hyper_parameters"]["backbone"] = backbone
    torch.save(state, target)
    return target


@pytest.mark.parametrize(
    ("class_path", "expected"),
    [
        # a private module may run code when imported: this one runs the command line
        (f"{PACKAGE}.cli.__main__.Net", "names '{{ cookiecutter.package }}.cli.__main__.Net'"),
        (f"{PACKAGE}_other.Net", "names '{{ cookiecutter.package }}_other.Net'"),
        (f"{PACKAGE}.utils.errors.DataError", "errors.DataError is not an nn.Module"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "package"])
def test_a_checkpoint_s_backbone_class_must_be_a_public_module_class_of_the_package(
    trained, sample_dir, in_tmp, capsys, class_path, expected, command
):
    forged = _forged(trained, in_tmp.parent / "forged.ckpt", {"class_path": class_path})
    if command == "predict":
        assert main(["predict", *cli_args(sample_dir, "--ckpt_path", str(forged))]) == 2
    else:
        assert main(["package", str(forged), "bundle", "--user", "tester"]) == 2
    assert expected in only_error_line(capsys)
    assert f"{PACKAGE}.cli.__main__" not in sys.modules
    assert list(in_tmp.iterdir()) == []


def test_fit_refuses_a_backbone_class_its_checkpoint_could_not_name(sample_dir, in_tmp, capsys):
    # It would train, but predict, cv, package and report could not rebuild it from the checkpoint.
    assert fit(sample_dir, "--model.backbone.class_path", "torchvision.models.SqueezeNet") == 2
    line = only_error_line(capsys)
    assert "--model.backbone.class_path torchvision.models.SqueezeNet:" in line
    assert f"a checkpoint names only classes of {PACKAGE}" in line
    assert list(in_tmp.iterdir()) == []
