"""The image cache (``prepare``): freshness by content, ownership, damage, interruptions and
crashed workers; training and predicting from it; reduced-size decoding; the hardware defaults."""

import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from {{ cookiecutter.package }}.prep import cache as cache_module
from {{ cookiecutter.package }} import data as data_module
from {{ cookiecutter.package }}.prep import folder_checks
from {{ cookiecutter.package }}.utils import hardware
from {{ cookiecutter.package }}.cli import lightning as cli_module
from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.data import PlantDataModule, build_transforms
from {{ cookiecutter.package }}.utils.errors import DataError
from {{ cookiecutter.package }}.images import load_image
from {{ cookiecutter.package }}.cli.lightning import PlantCLI
from {{ cookiecutter.package }}.models import PlantClassifier
from {{ cookiecutter.package }}.prep.prepare import CacheReport, prepare_cache

import helpers
from helpers import cli_args, only_error_line
from forged_images import jpeg_claiming
from full_disk import fill_disk

N_IMAGES = 172  # 160 train + 12 test in tests/data


def _shorter_sides(folder: Path) -> set[int]:
    return {min(Image.open(p).size) for p in folder.iterdir()}


def test_prepare_writes_every_image_at_the_requested_size(data_copy, tmp_path):
    report = prepare_cache(data_copy, tmp_path / "cache", size=48, workers=2, progress=False)
    assert (report.written, report.skipped, report.failed) == (N_IMAGES, 0, [])
    assert _shorter_sides(tmp_path / "cache" / "train_images") == {48}
    assert len(list((tmp_path / "cache" / "test_images").iterdir())) == 12


def _prepare(data_dir: Path, cache: Path, **kwargs) -> CacheReport:
    return prepare_cache(data_dir, cache, **{"size": 48, "workers": 1, "progress": False, **kwargs})


def test_prepare_is_idempotent_and_resumable(data_copy, tmp_path):
    cache = tmp_path / "cache"
    _prepare(data_copy, cache)
    again = _prepare(data_copy, cache)
    assert (again.written, again.skipped) == (0, N_IMAGES)
    # an interrupted run: two files missing and a half-written temporary file
    (cache / "train_images" / "train_0003.jpg").unlink()
    (cache / "test_images" / "test_0001.jpg").unlink()
    (cache / "train_images" / "train_0004.jpg.4321.partial").write_bytes(b"partial")
    resumed = _prepare(data_copy, cache)
    assert (resumed.written, resumed.skipped) == (2, N_IMAGES - 2)
    assert not list(cache.rglob("*.partial"))
    with pytest.raises(DataError, match="built with --size 48, not 64"):
        _prepare(data_copy, cache, size=64)


def _same_size_other_picture(path: Path) -> None:
    """Replace ``path`` by another picture of exactly the same size and modification time."""
    stat = path.stat()
    Image.new("RGB", (16, 16), (0, 0, 255)).save(path, quality=90)
    path.write_bytes(path.read_bytes().ljust(stat.st_size, b"\0"))  # zeros after the end marker
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_sources_are_compared_by_content(data_copy, tmp_path):
    cache = tmp_path / "cache"
    _prepare(data_copy, cache)
    sources = data_copy / "train_images"
    # touched (or copied): another modification time, the same bytes -> kept
    touched = sources / "train_0005.jpg"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**10))
    # replaced by another picture with an OLDER modification time -> redone
    older = sources / "train_0006.jpg"
    mtime = older.stat().st_mtime_ns
    shutil.copyfile(sources / "train_0007.jpg", older)
    os.utime(older, ns=(mtime - 10**12, mtime - 10**12))
    # another picture of the same size and the same modification time to the nanosecond -> redone
    _same_size_other_picture(sources / "train_0008.jpg")
    report = _prepare(data_copy, cache)
    assert (report.written, report.skipped, report.failed) == (2, N_IMAGES - 2, [])
    cached = cache / "train_images"
    assert (cached / "train_0006.jpg").read_bytes() == (cached / "train_0007.jpg").read_bytes()
    assert load_image(cached / "train_0008.jpg").getpixel((5, 5))[2] > 200  # the blue one now
    assert _prepare(data_copy, cache).written == 0


def test_a_source_that_is_gone_or_unreadable_leaves_no_stale_copy(data_copy, tmp_path):
    cache = tmp_path / "cache"
    _prepare(data_copy, cache)
    (data_copy / "train_images" / "train_0010.jpg").unlink()
    (data_copy / "train_images" / "train_0011.jpg").write_bytes(b"broken now")
    report = _prepare(data_copy, cache)
    assert report.removed == 1 and len(report.failed) == 1 and "train_0011.jpg" in report.failed[0]
    assert not (cache / "train_images" / "train_0010.jpg").exists()
    assert not (cache / "train_images" / "train_0011.jpg").exists()
    # sources deleted to save space after caching: the cached folder is kept
    shutil.rmtree(data_copy / "train_images")
    assert _prepare(data_copy, cache).removed == 0
    assert len(list((cache / "train_images").iterdir())) == 158


def test_files_named_like_temporary_files_are_cached_and_kept(data_copy, tmp_path):
    sources = data_copy / "train_images"
    for name in (".tmp-train_0004.jpg", ".tmp-x.jpg", "x.jpg.partial.jpg"):
        shutil.copyfile(sources / "train_0001.jpg", sources / name)
    cache = tmp_path / "cache"
    assert _prepare(data_copy, cache).written == N_IMAGES + 3
    again = _prepare(data_copy, cache)
    assert (again.written, again.skipped) == (0, N_IMAGES + 3)
    for name in (".tmp-train_0004.jpg", ".tmp-x.jpg", "x.jpg.partial.jpg", "train_0004.jpg"):
        assert (cache / "train_images" / name).is_file(), name
    assert (cache / "train_images" / "train_0004.jpg").read_bytes() != (
        cache / "train_images" / ".tmp-train_0004.jpg"
    ).read_bytes()


def test_unreadable_files_are_reported_at_the_end(data_copy, in_tmp, capsys):
    (data_copy / "train_images" / "train_0002.jpg").write_bytes(b"not a jpeg")
    (data_copy / "test_images" / "test_0000.jpg").write_bytes(b"")
    jpeg_claiming(data_copy / "train_images" / "train_0009.jpg", 20_000, 20_000)  # a bomb
    for run in range(2):  # a re-run finishes too, and says the same
        status = main(["prepare", str(data_copy), "cache", "--size", "40", "--workers", "2"])
        assert status == 1
        captured = capsys.readouterr()
        written = N_IMAGES - 3 if run == 0 else 0
        assert f"cached {written} images" in captured.out
        assert "train_0002.jpg" in captured.err and "test_0000.jpg" in captured.err
        assert "train_0009.jpg" in captured.err and "pixels" in captured.err
        assert "Traceback" not in captured.err
    assert len(list((in_tmp / "cache" / "train_images").iterdir())) == 158
    datamodule = PlantDataModule(str(data_copy), image_size=40, cache_dir="cache")
    with pytest.raises(DataError, match=r"row 4: image train_0002.jpg is not in the cache"):
        datamodule.check("fit")


def test_a_cached_copy_is_upright_and_carries_no_orientation(data_copy, tmp_path):
    source = data_copy / "train_images" / "train_0000.jpg"
    pixels = np.zeros((60, 90, 3), dtype=np.uint8)
    pixels[:20, :20] = 255  # a white block top left, once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(pixels, 1).copy()).save(source, exif=exif, quality=95)
    _prepare(data_copy, tmp_path / "cache", size=30)
    cached = tmp_path / "cache" / "train_images" / "train_0000.jpg"
    assert 0x0112 not in Image.open(cached).getexif()
    image = load_image(cached)
    assert image.size == (45, 30) and image.getpixel((3, 3))[0] > 200


DAMAGED_MANIFESTS = {
    "empty": "",
    "not json": "{size: 48",
    "not an object": "[48]",
    "no size": json.dumps({"format": 2, "source": "/data", "files": {}}),
    "size not a number": json.dumps({"format": 2, "size": "48", "source": "/data", "files": {}}),
}


@pytest.mark.parametrize("case", DAMAGED_MANIFESTS)
def test_a_damaged_manifest_is_one_data_error(data_copy, tmp_path, case):
    cache = tmp_path / "cache"
    _prepare(data_copy, cache)
    (cache / "cache.json").write_text(DAMAGED_MANIFESTS[case])
    expected = r"cache.json: not a valid cache manifest \(.*\); delete .* and run prepare again"
    with pytest.raises(DataError, match=expected) as prepare_error:
        _prepare(data_copy, cache)
    datamodule = PlantDataModule(str(data_copy), image_size=48, cache_dir=str(cache))
    with pytest.raises(DataError, match=expected) as check_error:
        datamodule.check("fit")
    for error in (prepare_error, check_error):
        assert "\n" not in str(error.value)


def test_a_cache_of_another_data_folder_is_refused(
    data_copy, tmp_path, in_tmp, capsys, monkeypatch
):
    cache = tmp_path / "cache"
    _prepare(data_copy, cache)
    other = Path(shutil.copytree(data_copy, tmp_path / "other"))
    with pytest.raises(DataError, match=f"cache was built from {data_copy.resolve()}, not "):
        PlantDataModule(str(other), image_size=48, cache_dir=str(cache)).check("fit")
    args = cli_args(other, "--data.image_size", "48", "--data.cache_dir", str(cache))
    assert main(["fit", *args, "--trainer.fast_dev_run", "true"]) == 2
    assert f"built from {data_copy.resolve()}" in capsys.readouterr().err.splitlines()[-1]
    # the same folder by another path is the same folder
    (tmp_path / "link").symlink_to(data_copy)
    monkeypatch.chdir(tmp_path)
    PlantDataModule("link", image_size=48, cache_dir="cache").check("fit")
    # prepare moves a cache to another folder, keeping what is unchanged there
    moved = _prepare(other, cache)
    assert (moved.written, moved.skipped) == (0, N_IMAGES)
    PlantDataModule(str(other), image_size=48, cache_dir=str(cache)).check("fit")


def test_a_stale_or_damaged_cache_is_refused_before_training(data_copy, tmp_path):
    cache = tmp_path / "cache"
    _prepare(data_copy, cache)
    datamodule = PlantDataModule(str(data_copy), image_size=48, cache_dir=str(cache))
    _same_size_other_picture(data_copy / "test_images" / "test_0003.jpg")
    os.utime(data_copy / "test_images" / "test_0003.jpg")
    with pytest.raises(DataError, match="test_0003.jpg: changed since it was cached"):
        datamodule.check("fit")
    _prepare(data_copy, cache)
    cached = cache / "train_images" / "train_0004.jpg"
    cached.write_bytes(cached.read_bytes()[:100])  # an interrupted copy of the cache folder
    datamodule = PlantDataModule(str(data_copy), image_size=48, cache_dir=str(cache))
    with pytest.raises(DataError, match="train_0004.jpg: missing or changed since prepare wrote"):
        datamodule.check("fit")


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


def _spy_on_loads(monkeypatch) -> list[Path]:
    """Record every image the data module decodes (loader workers off) and pre-flight decodes."""
    loaded: list[Path] = []
    real_load = data_module.load_image

    def load(path, *args):
        loaded.append(Path(path))
        return real_load(path, *args)

    monkeypatch.setattr(data_module, "load_image", load)
    monkeypatch.setattr(folder_checks, "find_unreadable", lambda *a: pytest.fail("decoded a cache"))
    return loaded


def _checkpoint(datamodule: PlantDataModule, path: Path, trainer_kwargs: dict) -> str:
    """An untrained model's checkpoint, cheaply (the CLI's fast_dev_run saves none)."""
    trainer = pl.Trainer(**trainer_kwargs, max_steps=0)
    trainer.fit(PlantClassifier(classes=datamodule.classes), datamodule=datamodule)
    trainer.save_checkpoint(path)
    return str(path)


@pytest.mark.slow
def test_fit_and_predict_from_cache_read_the_cache(
    data_copy, tmp_path, in_tmp, monkeypatch, cheap_trainer_kwargs
):
    cache = tmp_path / "cache"
    assert main(["prepare", str(data_copy), str(cache), "--size", "64"]) == 0
    shutil.rmtree(data_copy / "train_images")  # fit must not need the sources any more
    loaded = _spy_on_loads(monkeypatch)
    args = cli_args(data_copy, "--data.cache_dir", str(cache), "--data.batch_size", "4")
    assert main(["fit", *args, "--trainer.fast_dev_run", "true"]) == 0
    assert loaded and {p.parent for p in loaded} == {cache / "train_images"}
    datamodule = PlantDataModule(str(data_copy), 64, 4, num_workers=0, cache_dir=str(cache))
    ckpt = _checkpoint(datamodule, tmp_path / "model.ckpt", cheap_trainer_kwargs)
    loaded.clear()
    assert main(["predict", *args, "--ckpt_path", ckpt]) == 0
    assert sorted(p.name for p in loaded) == sorted(os.listdir(data_copy / "test_images"))
    assert {p.parent for p in loaded} == {cache / "test_images"}


def _zero_second_half(path: Path) -> None:
    """Damage a file in place, keeping its size (what a crash can leave on some filesystems)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2].ljust(len(data), b"\0"))


def test_an_error_inside_a_loader_worker_is_one_line(sample_dir, tmp_path, in_tmp, capsys):
    cache = tmp_path / "cache"
    _prepare(sample_dir, cache, size=64)
    for path in (cache / "train_images").iterdir():
        _zero_second_half(path)  # passes the pre-flight checks of a cache, fails to decode
    args = cli_args(sample_dir, "--data.cache_dir", str(cache), "--data.num_workers", "1")
    assert main(["fit", *args, "--trainer.fast_dev_run", "true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert re.fullmatch(r"error: .*/train_\d+\.jpg: cannot decode image \(.*truncated.*\)", err[-1])


# -- interrupted runs and dying workers -----------------------------------------------------------


def _many_slow_sources(data_dir: Path, count: int) -> Path:
    """``count`` names (hard links) of one noisy 2000x1500 JPEG: each takes a while to decode."""
    folder = data_dir / "train_images"
    folder.mkdir(parents=True)
    noise = np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "img_0000.jpg", quality=90)
    for i in range(1, count):
        os.link(folder / "img_0000.jpg", folder / f"img_{i:04d}.jpg")
    return data_dir


def _descendants(pid: int) -> set[int]:
    """Live (not zombie) descendants of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# Ctrl-C as in a terminal: a process started in the background by a non-interactive shell (as CI
# may be) inherits an ignored SIGINT, so the subprocess restores Python's own handler first.
PREPARE_IN_A_SUBPROCESS = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " from {{ cookiecutter.package }}.prep.prepare import prepare_cache;"
    " prepare_cache(sys.argv[1], sys.argv[2], size=32, workers=2, progress=False)"
)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_prepare_leaves_no_workers_behind(tmp_path, signal_number):
    count = 1000
    data = _many_slow_sources(tmp_path / "data", count)
    cache = tmp_path / "cache"
    command = [sys.executable, "-c", PREPARE_IN_A_SUBPROCESS, str(data), str(cache)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    cached = cache / "train_images"
    try:
        started = _wait_until(
            lambda: process.poll() is not None or cached.is_dir() and any(cached.glob("*.jpg")), 60
        )
        assert started and process.poll() is None, process.stderr.read()
        workers = _descendants(process.pid)
        assert len(workers) >= 2
        process.send_signal(signal_number)
        process.wait(timeout=30)
        assert _wait_until(lambda: not _alive(workers), 5), "worker processes outlived prepare"
    finally:
        process.kill()
        process.wait()
    assert len(list(cached.glob("*.jpg"))) < count  # it stopped, it did not finish first
    if signal_number == signal.SIGINT:  # finished images are remembered for the next run
        recorded = json.loads((cache / "cache.json").read_text())["files"]
        assert len(recorded) == len(list(cached.glob("*.jpg"))) > 0
        assert "KeyboardInterrupt" in process.stderr.read()


@pytest.mark.slow
def test_a_worker_killed_from_outside_is_replaced(tmp_path):
    count = 100
    data = _many_slow_sources(tmp_path / "data", count)
    cache = tmp_path / "cache"
    killed: list[int] = []

    def kill_one_worker() -> None:
        cached = cache / "train_images"
        _wait_until(lambda: cached.is_dir() and any(cached.glob("*.jpg")), 60)
        children = multiprocessing.active_children()
        if children and len(list(cached.glob("*.jpg"))) < count // 2:
            os.kill(children[0].pid, signal.SIGKILL)  # what the out-of-memory killer does
            killed.append(children[0].pid)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    report = prepare_cache(data, cache, size=32, workers=2, progress=False)
    killer.join()
    assert killed, "the run ended before a worker could be killed"
    assert (report.written, report.failed) == (count, [])


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="patches a worker")
def test_an_image_that_kills_its_worker_is_reported_and_the_rest_finishes(
    data_copy, tmp_path, monkeypatch
):
    real_load = cache_module.load_image

    def load(path, *args, **kwargs):
        if Path(path).name == "train_0042.jpg":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(cache_module, "load_image", load)  # forked workers inherit it
    report = prepare_cache(data_copy, tmp_path / "cache", size=32, workers=2, progress=False)
    assert report.written == N_IMAGES - 1
    assert len(report.failed) == 1 and "train_0042.jpg: the worker process" in report.failed[0]


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


def test_precision_default_applies_unless_set(sample_dir, monkeypatch):
    monkeypatch.setattr(cli_module, "default_precision", lambda accelerator: "bf16-mixed")
    monkeypatch.setattr(helpers, "PRECISION", [])  # detection itself is tested: force nothing
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


@pytest.mark.parametrize(
    "full, named, workers",
    [
        ("cache", r"cache/cache\.json", "1"),
        ("cache/train_images", r"cache/train_images/train_0000\.jpg", "1"),
        ("cache/train_images", r"cache/train_images/train_\d+\.jpg", "2"),  # whichever is first
    ],
    ids=["whole-cache", "images-only", "images-only-in-workers"],
)
def test_prepare_on_a_full_disk_stops_in_one_line_with_no_partial_file(
    sample_dir, in_tmp, capsys, monkeypatch, full, named, workers
):
    if workers != "1" and multiprocessing.get_start_method() != "fork":
        pytest.skip("the simulated full disk reaches worker processes only when they are forked")
    fill_disk(monkeypatch, in_tmp / full)
    assert main(["prepare", str(sample_dir), "cache", "--size", "32", "--workers", workers]) == 2
    assert re.search(f"{named}: cannot write it, the disk is full", only_error_line(capsys))
    written = [p.relative_to(in_tmp) for p in (in_tmp / "cache").rglob("*") if p.is_file()]
    assert all(p.name == cache_module.MANIFEST for p in written), written
