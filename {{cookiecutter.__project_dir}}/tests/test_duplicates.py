"""Near-duplicate images: grouped with their originals by perceptual hash, kept in one fold by
``fit`` and ``cv``, listed by ``report`` with their labels; hashes computed once."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.workflows.fit_jobs import parse_fit_config
from {{ cookiecutter.package }}.data import PlantDataModule
from {{ cookiecutter.package }}.folds import read_folds
from {{ cookiecutter.package }}.labels import read_train_csv
from {{ cookiecutter.package }}.prep import duplicates, image_checks
from {{ cookiecutter.package }}.prep.duplicates import near_duplicate_groups
from {{ cookiecutter.package }}.workflows import cv
from {{ cookiecutter.package }}.utils.errors import DataError

from figure_checks import assert_drawn
from helpers import assert_nothing_written, cli_args, only_error_line, read_csv_rows
from cv_checks import CONFLICT, NEAR, add_near_copies, near_copy


@pytest.fixture
def near_data(data_copy: Path) -> Path:
    """The sample set with ``NEAR`` and ``CONFLICT`` added."""
    add_near_copies(data_copy)
    return data_copy


def _names(data_dir: Path) -> list[str]:
    return [sample.image for sample in read_train_csv(data_dir / "train.csv")]


def test_near_copies_are_grouped_with_their_originals_and_distinct_images_are_not(near_data):
    groups = near_duplicate_groups(near_data / "train_images", _names(near_data))
    assert groups == [
        ["near_0002.jpg", "train_0002.jpg"],
        ["relabelled_0003.jpg", "train_0003.jpg"],
    ]
    assert near_duplicate_groups(near_data / "train_images", _names(near_data), distance=0) == []


def test_groups_are_transitive():
    # a-b and b-c are 8 bits apart, a-c 16: one group of three; d is far from all
    hashes = ["0000000000000000", "00000000000000ff", "000000000000ffff", "ffffffffffffffff"]
    assert sorted(duplicates.close_pairs(hashes, 8)) == [(0, 1), (1, 2)]


def test_fit_keeps_a_near_copy_on_the_side_of_its_original(near_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    monkeypatch.setattr(image_checks, "STAMP_MIN_FILES", 4)  # checked and hashed once, as 18,632
    settings = parse_fit_config(cli_args(near_data, "--data.num_workers", "0")).data.as_dict()
    for seed in range(3):
        for fold in range(5):
            datamodule = PlantDataModule(**{**settings, "seed": seed, "fold": fold})  # as fit does
            datamodule.setup("fit")
            val = set(datamodule.val_set.names)
            assert ("train_0002.jpg" in val) == (NEAR in val), (seed, fold)
            assert ("train_0003.jpg" in val) == (CONFLICT in val), (seed, fold)
    cache = tmp_path / "cache"
    assert main(["prepare", str(near_data), str(cache), "--size", "64"]) == 0
    shutil.rmtree(near_data / "train_images")  # the hashes now come from the cache's manifest
    cached = PlantDataModule(**{**settings, "cache_dir": str(cache)})
    cached.setup("fit")
    val = set(cached.val_set.names)
    assert ("train_0002.jpg" in val) == (NEAR in val)


def test_cv_keeps_a_near_copy_in_the_fold_of_its_original(near_data, in_tmp, monkeypatch):
    def stop(*args, **kwargs):  # the folds are written before any training
        raise DataError("stopped after the split")

    monkeypatch.setattr(cv, "train_fold", stop)
    for seed in range(4):
        out = f"cv{seed}"
        args = ["cv", "--folds", "5", "--out", out, *cli_args(near_data, "--data.seed", str(seed))]
        assert main(args) == 2
        folds = read_folds(in_tmp / out / "folds.csv")
        assert folds["train_0002.jpg"] == folds[NEAR] and folds["train_0003.jpg"] == folds[CONFLICT]


def test_report_lists_duplicates_and_draws_conflicting_ones(near_data, in_tmp):
    assert main(["report", str(near_data), "--out", "figures"]) == 0
    rows = read_csv_rows(in_tmp / "figures" / "duplicates.csv")
    labels = {s.image: " ".join(s.labels) for s in read_train_csv(near_data / "train.csv")}
    assert rows == [
        {"group": "1", "image": NEAR, "labels": labels[NEAR], "conflict": "False"},
        {"group": "1", "image": "train_0002.jpg", "labels": labels[NEAR], "conflict": "False"},
        {"group": "2", "image": CONFLICT, "labels": "healthy", "conflict": "True"},
        {
            "group": "2",
            "image": "train_0003.jpg",
            "labels": labels["train_0003.jpg"],
            "conflict": "True",
        },
    ]
    with Image.open(in_tmp / "figures" / "duplicate_conflicts.png") as figure:
        figure.load()
        assert_drawn(figure, "duplicate_conflicts")
        columns = np.asarray(figure.convert("L")).min(axis=0) < 200
        assert columns[: len(columns) // 2].any() and columns[len(columns) // 2 :].any()


def test_hashes_are_computed_once(near_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    monkeypatch.setattr(image_checks, "STAMP_MIN_FILES", 4)
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(
        Image,
        "open",
        lambda path, *a, **k: opened.append(Path(path).name) or real_open(path, *a, **k),
    )
    folder, names = near_data / "train_images", _names(near_data)
    first = near_duplicate_groups(folder, names)
    assert len(opened) == len(names)
    opened.clear()
    assert near_duplicate_groups(folder, names) == first
    assert opened == []
    near_copy(folder / "train_0002.jpg", folder / NEAR, quality=90)  # changed: hashed again
    opened.clear()
    assert near_duplicate_groups(folder, names) == first
    assert opened == [NEAR]


@pytest.mark.parametrize("distance", ["-1", "17"])
def test_a_distance_out_of_range_is_refused_and_nothing_written(
    near_data, in_tmp, capsys, distance
):
    assert (
        main(["report", str(near_data), "--out", "figures", "--duplicate-distance", distance]) == 2
    )
    assert only_error_line(capsys) == (
        f"error: --duplicate-distance={distance}: {distance} does not conform to restriction"
        " v>=0 and v<=16"
    )
    assert_nothing_written(in_tmp)
    assert main(["fit", *cli_args(near_data, "--data.duplicate_distance", distance)]) == 2
    assert (
        f"--data.duplicate_distance {distance}: must be >= 0 and <= 16" in capsys.readouterr().err
    )
    assert_nothing_written(in_tmp)


def test_an_undecodable_image_is_named_and_nothing_written(near_data, in_tmp, capsys):
    (near_data / "train_images" / NEAR).write_bytes(b"\xff\xd8\xff\xe0 not a JPEG after all")
    assert main(["cv", "--folds", "5", "--out", "cv", *cli_args(near_data)]) == 2
    assert only_error_line(capsys).startswith(
        f"error: {near_data}/train_images/{NEAR}: not a readable image ("
    )
    assert_nothing_written(in_tmp)
