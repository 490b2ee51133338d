"""Kaggle's hardware: the precision each GPU can run natively, a GPU the installed torch cannot run
(a P100 under a build without sm_60: the CPU, after one loud line), and both GPUs of a T4 x2.

GPUs are mocked (``torch.cuda`` functions); the several-devices path runs two real processes on
the CPU and must write the submission one process writes.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from {{ cookiecutter.package }}.kaggle import offline_predict
from {{ cookiecutter.package }}.kaggle.notebook import write_notebook
from {{ cookiecutter.package }}.kaggle.push import Ids
from {{ cookiecutter.package }}.kaggle.offline_predict import predict_folder, predict_with_manifest
from {{ cookiecutter.package }}.utils import hardware

from fake_runs import CLASSES, fake_checkpoint
from helpers import read_csv_rows

KAGGLE_2026 = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # no sm_60


def mock_gpus(monkeypatch, capability, arches=KAGGLE_2026, count=1, name="Tesla T4", bf16=True):
    """``count`` visible GPUs ``name`` of compute ``capability`` under a build for ``arches``;
    ``is_bf16_supported`` answers ``bf16`` (true on a T4: it counts emulation)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arches))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)


@pytest.mark.parametrize(
    "capability, expected",
    [
        ((6, 0), "32-true"),  # P100: no tensor cores
        ((7, 0), "16-mixed"),  # V100
        ((7, 5), "16-mixed"),  # T4: bf16 only emulated, though is_bf16_supported() says yes
        ((8, 0), "bf16-mixed"),  # A100
        ((9, 0), "bf16-mixed"),  # H100
    ],
)
@pytest.mark.parametrize("accelerator", ["auto", "gpu"])
def test_gpu_precision_follows_the_compute_capability(
    monkeypatch, capability, expected, accelerator
):
    mock_gpus(monkeypatch, capability)
    assert hardware.default_precision(accelerator) == expected


def test_the_oldest_gpu_decides_the_precision(monkeypatch):
    mock_gpus(monkeypatch, (8, 0), count=2)
    capabilities = {0: (8, 0), 1: (7, 5)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=0: capabilities[device])
    assert hardware.default_precision("gpu") == "16-mixed"


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "amx_bf16"}, "bf16-mixed"), ({"avx512_bf16"}, "bf16-mixed"), ({"avx2"}, "32-true")],
)
def test_cpu_precision_without_a_gpu_is_unchanged(monkeypatch, flags, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    assert hardware.default_precision("auto") == hardware.default_precision("cpu") == expected


@pytest.mark.parametrize(
    "capability, arches, usable",
    [
        ((6, 0), KAGGLE_2026, False),  # P100 under Kaggle's CUDA 12.8 builds
        ((7, 5), KAGGLE_2026, True),  # T4
        ((7, 5), ["sm_70"], True),  # a 7.0 binary runs on later 7.x
        ((8, 0), ["sm_86", "sm_90"], False),  # an 8.6 binary does not run on 8.0
        ((12, 0), ["sm_80", "compute_90"], True),  # PTX compiles for later GPUs
        ((6, 1), ["sm_50", "compute_50"], True),
        ((6, 0), [], True),  # an empty list (ROCm, custom builds): trusted
    ],
)
def test_the_gpu_is_checked_against_the_torch_build(
    monkeypatch, capsys, capability, arches, usable
):
    mock_gpus(monkeypatch, capability, arches, count=2, name="Tesla P100-PCIE-16GB")
    assert hardware.inference_devices() == (("gpu", 2) if usable else ("cpu", 1))
    printed = capsys.readouterr().out
    if usable:
        assert printed == ""
    else:
        (line,) = printed.splitlines()
        assert "GPU IS NOT USED" in line and "CPU" in line and "Tesla P100-PCIE-16GB" in line
        assert f"sm_{capability[0]}{capability[1]}" in line and " ".join(arches) in line


def test_a_gpu_that_fails_to_start_is_one_line_too(monkeypatch, capsys):
    mock_gpus(monkeypatch, (7, 5))

    def broken(device=None):
        raise RuntimeError("CUDA error: no CUDA-capable device is detected\nmore detail")

    monkeypatch.setattr(torch.cuda, "get_device_capability", broken)
    assert hardware.inference_devices() == ("cpu", 1)
    (line,) = capsys.readouterr().out.splitlines()
    assert "GPU IS NOT USED" in line and "no CUDA-capable device is detected" in line


def test_an_explicit_accelerator_is_not_second_guessed(monkeypatch):
    mock_gpus(monkeypatch, (6, 0))
    assert hardware.inference_devices("gpu") == ("gpu", 1)


def write_manifest(folder: Path) -> Path:
    """A bundle's weights folder: one untrained checkpoint and its ``manifest.json``."""
    fake_checkpoint(folder / "model.ckpt")
    settings = {"format": 1, "checkpoints": ["model.ckpt"], "classes": CLASSES, "tta": "none"}
    settings.update(image_size=32, batch_size=4, threshold=0.5)
    (folder / "manifest.json").write_text(json.dumps(settings), encoding="utf-8")
    return folder / "manifest.json"


def test_the_notebook_predicts_on_the_cpu_when_the_gpu_cannot_run(
    monkeypatch, capsys, tmp_path, sample_dir
):
    mock_gpus(monkeypatch, (6, 0), name="Tesla P100-PCIE-16GB")
    chosen = []
    real = offline_predict.predict_images

    def recording(*args, **kwargs):
        chosen.append(args[6])  # the accelerator the Trainer gets
        return real(*args, **kwargs)

    monkeypatch.setattr(offline_predict, "predict_images", recording)
    manifest = write_manifest(tmp_path / "weights")
    out = predict_with_manifest(manifest, sample_dir / "test_images", tmp_path / "sub.csv")
    assert chosen == ["cpu"]
    rows = read_csv_rows(out)
    assert [row["image"] for row in rows] == sorted(
        p.name for p in (sample_dir / "test_images").iterdir()
    )
    warning = [line for line in capsys.readouterr().out.splitlines() if "GPU IS NOT USED" in line]
    assert len(warning) == 1 and "Tesla P100-PCIE-16GB" in warning[0]


def test_the_notebook_checks_the_gpu_right_after_installing_the_wheel(
    monkeypatch, capsys, tmp_path
):
    ids = Ids(competition="plant-pathology-2021-fgvc8", code="u/c", weights="u/w", kernel="u/k")
    write_notebook(tmp_path, ids, "challenge.whl", "{{ cookiecutter.package }}")
    cells = json.loads((tmp_path / "inference.ipynb").read_text(encoding="utf-8"))["cells"]
    sources = ["".join(cell["source"]) for cell in cells]
    install = next(i for i, text in enumerate(sources) if "pip" in text)
    check = next(i for i, text in enumerate(sources) if "inference_devices()" in text)
    predict = next(i for i, text in enumerate(sources) if "predict_with_manifest(" in text)
    assert check == install + 1 and predict > check
    assert "from {{ cookiecutter.package }}" not in "".join(sources[:install])  # not installed yet
    assert "accelerator=ACCELERATOR" in sources[predict] and "devices=DEVICES" in sources[predict]
    mock_gpus(monkeypatch, (6, 0), name="Tesla P100-PCIE-16GB")
    namespace: dict = {}
    exec(sources[check], namespace)
    assert (namespace["ACCELERATOR"], namespace["DEVICES"]) == ("cpu", 1)
    assert "GPU IS NOT USED" in capsys.readouterr().out


class RecordingPool(offline_predict.ProcessPoolExecutor):
    """The process pool, recording how many processes ran which images."""

    shares: list[list[str]] = []

    def submit(self, fn, *args, **kwargs):
        RecordingPool.shares.append(list(args[4]))
        return super().submit(fn, *args, **kwargs)


@pytest.mark.slow
def test_two_devices_write_the_one_device_submission(monkeypatch, tmp_path, sample_dir, capsys):
    images = Path(shutil.copytree(sample_dir / "test_images", tmp_path / "test_images"))
    first = sorted(images.iterdir())[0]
    shutil.copy(first, images / "zz_extra.jpg")  # an odd number: unequal shares
    names = sorted(path.name for path in images.iterdir())
    ckpt = fake_checkpoint(tmp_path / "model.ckpt")
    monkeypatch.setattr(offline_predict, "ProcessPoolExecutor", RecordingPool)
    RecordingPool.shares = []
    outputs = {}
    for devices in (1, 2):
        out = tmp_path / str(devices)
        predict_folder(
            [ckpt], images, out / "submission.csv", 32, batch_size=4, num_workers=0,
            accelerator="cpu", precision="32-true", probabilities=out / "probs.csv",
            devices=devices,
        )  # fmt: skip
        outputs[devices] = out
    assert sorted(sum(RecordingPool.shares, [])) == names and len(RecordingPool.shares) == 2
    assert f"predicted {len(names)} images" in capsys.readouterr().out.splitlines()[-1]
    one, two = (read_csv_rows(outputs[n] / "submission.csv") for n in (1, 2))
    assert [row["image"] for row in one] == names and two == one
    probs = {
        n: np.array(
            [[float(row[c]) for c in CLASSES] for row in read_csv_rows(outputs[n] / "probs.csv")]
        )
        for n in (1, 2)
    }
    np.testing.assert_allclose(probs[2], probs[1], atol=1e-4)
