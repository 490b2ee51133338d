"""The committed sample set is what the generator makes, and it looks like the competition."""

import csv
import os
import stat

import numpy as np
import pytest
from PIL import Image

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.prep.sample_data import CLASSES, LABEL_SETS, generate

from helpers import assert_nothing_written, only_error_line
from full_disk import fill_disk


def _rows(path):
    with path.open(newline="") as handle:
        return [(row["image"], row["labels"]) for row in csv.DictReader(handle)]


def test_committed_sample_set_is_reproducible(sample_dir, tmp_path):
    fresh = generate(tmp_path / "fresh")
    assert _rows(fresh / "train.csv") == _rows(sample_dir / "train.csv")
    assert _rows(fresh / "sample_submission.csv") == _rows(sample_dir / "sample_submission.csv")
    for name in (
        "train_images/train_0000.jpg",
        "train_images/train_0101.jpg",
        "test_images/test_0003.jpg",
    ):
        ours = np.asarray(Image.open(fresh / name), dtype=np.int16)
        committed = np.asarray(Image.open(sample_dir / name), dtype=np.int16)
        # JPEG decoders may differ by a level or two across libjpeg builds, never more.
        assert ours.shape == committed.shape
        assert np.abs(ours - committed).mean() < 2.0, name


def test_label_sets_follow_the_competition(sample_dir):
    rows = _rows(sample_dir / "train.csv")
    allowed = {" ".join(labels) for labels, _ in LABEL_SETS}
    assert {labels for _, labels in rows} <= allowed
    assert {label for _, labels in rows for label in labels.split()} == set(CLASSES)
    assert all(labels == "healthy" for _, labels in rows if "healthy" in labels.split())
    assert len(CLASSES) == 6 and len(LABEL_SETS) == 12


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = generate(tmp_path / "a", n_train=4, n_test=1, seed=1)
    b = generate(tmp_path / "b", n_train=4, n_test=1, seed=1)
    c = generate(tmp_path / "c", n_train=4, n_test=1, seed=2)
    image = "train_images/train_0000.jpg"
    assert (a / image).read_bytes() == (b / image).read_bytes()
    assert (a / image).read_bytes() != (c / image).read_bytes()
    assert sorted(p.name for p in (a / "test_images").iterdir()) == ["test_0000.jpg"]


def test_sample_set_is_small(sample_dir):
    total = sum(p.stat().st_size for p in sample_dir.rglob("*") if p.is_file())
    assert total < 600_000


@pytest.mark.parametrize(
    "width, height, expected",
    [
        ("100000", "100000", "--width 100000: a JPEG side holds at most 65,500 pixels"),
        ("64", "70000", "--height 70000: a JPEG side holds at most 65,500 pixels"),
        ("9000", "9000", "--width 9000 --height 9000: 81,000,000 pixels an image is more than"),
    ],
)
def test_sample_data_refuses_images_too_large_to_use_in_one_line(
    in_tmp, capsys, width, height, expected
):
    args = ["sample-data", "big", "--n-train", "1", "--n-test", "0"]
    assert main([*args, "--width", width, "--height", height]) == 2
    assert expected in only_error_line(capsys)
    assert_nothing_written(in_tmp)


def test_sample_data_on_a_full_disk_is_one_line_and_leaves_nothing(in_tmp, capsys, monkeypatch):
    fill_disk(monkeypatch, in_tmp)
    assert main(["sample-data", "fresh", "--n-train", "2", "--n-test", "1"]) == 2
    assert "fresh: cannot write it, the disk is full" in only_error_line(capsys)
    assert_nothing_written(in_tmp)


def test_sample_data_writes_a_folder_of_ordinary_permissions_and_clears_killed_runs(in_tmp):
    (in_tmp / ".fresh.partial-99999999-x").mkdir()  # left by a killed run (no such process)
    old = os.umask(0o022)
    try:
        assert main(["sample-data", "fresh", "--n-train", "2", "--n-test", "1"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((in_tmp / "fresh").stat().st_mode) == 0o755
    assert sorted(p.name for p in in_tmp.iterdir()) == ["fresh"]
