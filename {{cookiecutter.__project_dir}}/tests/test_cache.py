"""The image cache (``prepare``), reduced-size decoding and the hardware defaults."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.package }} import cli as cli_module
from {{ cookiecutter.package }} import hardware
from {{ cookiecutter.package }}.cache import prepare_cache
from {{ cookiecutter.package }}.cli import PlantCLI, main
from {{ cookiecutter.package }}.data import PlantDataModule, build_transforms
from {{ cookiecutter.package }}.errors import DataError
from {{ cookiecutter.package }}.images import load_image
from {{ cookiecutter.package }}.models import PlantClassifier

from conftest import cli_args

N_IMAGES = 172  # 160 train + 12 test in tests/data


def _shorter_sides(folder: Path) -> set[int]:
    return {min(Image.open(p).size) for p in folder.iterdir()}


def test_prepare_writes_every_image_at_the_requested_size(data_copy, tmp_path):
    report = prepare_cache(data_copy, tmp_path / "cache", size=48, workers=2, progress=False)
    assert (report.written, report.skipped, report.failed) == (N_IMAGES, 0, [])
    assert _shorter_sides(tmp_path / "cache" / "train_images") == {48}
    assert len(list((tmp_path / "cache" / "test_images").iterdir())) == 12


def test_prepare_is_idempotent_and_resumable(data_copy, tmp_path):
    cache = tmp_path / "cache"
    prepare_cache(data_copy, cache, size=48, workers=1, progress=False)
    again = prepare_cache(data_copy, cache, size=48, workers=1, progress=False)
    assert (again.written, again.skipped) == (0, N_IMAGES)
    # an interrupted run: two files missing and a half-written temporary file
    (cache / "train_images" / "train_0003.jpg").unlink()
    (cache / "test_images" / "test_0001.jpg").unlink()
    (cache / "train_images" / ".tmp-train_0004.jpg").write_bytes(b"partial")
    source = data_copy / "train_images" / "train_0005.jpg"
    cached_at = (cache / "train_images" / "train_0005.jpg").stat().st_mtime
    os.utime(source, (cached_at + 60, cached_at + 60))  # the source changed after caching
    resumed = prepare_cache(data_copy, cache, size=48, workers=1, progress=False)
    assert (resumed.written, resumed.skipped) == (3, N_IMAGES - 3)
    assert not list(cache.rglob(".tmp-*"))
    with pytest.raises(DataError, match="built with --size 48, not 64"):
        prepare_cache(data_copy, cache, size=64, workers=1, progress=False)


def test_unreadable_files_are_reported_at_the_end(data_copy, in_tmp, capsys):
    (data_copy / "train_images" / "train_0002.jpg").write_bytes(b"not a jpeg")
    (data_copy / "test_images" / "test_0000.jpg").write_bytes(b"")
    status = main(["prepare", str(data_copy), "cache", "--size", "40", "--workers", "2"])
    assert status == 1
    captured = capsys.readouterr()
    assert f"cached {N_IMAGES - 2} images" in captured.out
    assert "train_0002.jpg" in captured.err and "test_0000.jpg" in captured.err
    assert len(list((in_tmp / "cache" / "train_images").iterdir())) == 159


def test_datamodule_on_cache_has_the_same_labels_and_order(sample_dir, tmp_path):
    prepare_cache(sample_dir, tmp_path / "cache", size=64, workers=1, progress=False)
    raw = PlantDataModule(str(sample_dir), image_size=64, num_workers=0)
    cached = PlantDataModule(
        str(sample_dir), image_size=64, num_workers=0, cache_dir=str(tmp_path / "cache")
    )
    for dm in (raw, cached):
        dm.setup("fit")
        dm.setup("predict")
    assert cached.train_set.names == raw.train_set.names
    assert cached.val_set.names == raw.val_set.names
    assert torch.equal(cached.train_set.targets, raw.train_set.targets)
    assert cached.predict_set.names == raw.predict_set.names
    assert cached.val_set.folder == tmp_path / "cache" / "train_images"
    a, b = raw.val_set[0]["image"].float(), cached.val_set[0]["image"].float()
    assert a.shape == b.shape and (a - b).abs().mean() < 8
    too_small = PlantDataModule(str(sample_dir), image_size=96, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="built at 64px, smaller than image_size 96"):
        too_small.check("fit")


def test_fit_from_cache(sample_dir, tmp_path, in_tmp):
    assert main(["prepare", str(sample_dir), str(tmp_path / "cache"), "--size", "64"]) == 0
    extra = ["--data.cache_dir", str(tmp_path / "cache"), "--trainer.fast_dev_run", "true"]
    assert main(["fit", *cli_args(sample_dir, *extra)]) == 0


def test_reduced_decoding_matches_the_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(12, 16, 3), dtype=np.uint8)
    big = Image.fromarray(pixels).resize((1600, 1200), Image.Resampling.BICUBIC)
    big.save(tmp_path / "big.jpg", quality=90)
    transform = build_transforms(128, train=False)
    fast = transform(load_image(tmp_path / "big.jpg", min_size=128))
    slow = transform(load_image(tmp_path / "big.jpg"))
    assert fast.shape == slow.shape and fast.dtype == slow.dtype
    assert (fast.float() - slow.float()).abs().mean() < 4
    assert min(load_image(tmp_path / "big.jpg", min_size=128).size) < 1200


@pytest.mark.parametrize(
    ("flags", "accelerator", "expected"),
    [
        ({"avx2", "amx_bf16"}, "cpu", "bf16-mixed"),
        ({"avx512_bf16"}, "cpu", "bf16-mixed"),
        ({"avx2", "avx512f"}, "cpu", "32-true"),
        (set(), "cpu", "32-true"),
    ],
)
def test_cpu_precision_is_detected(monkeypatch, flags, accelerator, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    assert hardware.default_precision(accelerator) == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_gpu_precision_is_detected(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    assert hardware.default_precision("gpu") == expected


def test_precision_default_applies_unless_set(sample_dir, monkeypatch):
    monkeypatch.setattr(cli_module, "default_precision", lambda accelerator: "bf16-mixed")
    args = cli_args(sample_dir)
    cli = PlantCLI(PlantClassifier, PlantDataModule, args=args, run=False)
    assert cli.trainer.precision == "bf16-mixed"
    cli = PlantCLI(
        PlantClassifier, PlantDataModule, args=[*args, "--trainer.precision", "32-true"], run=False
    )
    assert cli.trainer.precision == "32-true"


def test_loader_defaults_fit_the_machine(sample_dir):
    dm = PlantDataModule(str(sample_dir))
    assert dm.num_workers == max(0, min(8, hardware.available_cores() - 1))
    dm.num_workers = 1
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.persistent_workers is True
    assert loader.pin_memory is torch.cuda.is_available()
