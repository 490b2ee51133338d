"""The command line, end to end: fit -> checkpoint -> predict -> submission.csv, and bad input."""

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.data import PlantDataModule
from {{ cookiecutter.package }}.metrics import most_frequent_set_f1

from conftest import cli_args


def _fit(data_dir: Path, *extra: str) -> int:
    return main(
        [
            "fit",
            *cli_args(
                data_dir,
                "--trainer.max_epochs",
                "1",
                "--trainer.limit_train_batches",
                "2",
                "--trainer.limit_val_batches",
                "1",
                *extra,
            ),
        ]
    )


def _read_submission(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_fast_dev_run(sample_dir, in_tmp):
    assert main(["fit", *cli_args(sample_dir, "--trainer.fast_dev_run", "true")]) == 0


def test_fit_checkpoint_predict_submission(sample_dir, in_tmp):
    assert _fit(sample_dir) == 0
    assert (in_tmp / "checkpoints" / "last.ckpt").is_file()
    assert list((in_tmp / "checkpoints").glob("best-epoch*.ckpt"))
    assert list((in_tmp / "logs").rglob("config.yaml"))
    ckpt = str(in_tmp / "checkpoints" / "last.ckpt")
    assert main(["predict", *cli_args(sample_dir, "--ckpt_path", ckpt)]) == 0
    rows = _read_submission(in_tmp / "submission.csv")
    test_images = sorted(p.name for p in (sample_dir / "test_images").iterdir())
    assert [row["image"] for row in rows] == test_images
    vocabulary = set(torch.load(ckpt, weights_only=True)["hyper_parameters"]["classes"])
    for row in rows:
        labels = row["labels"].split()
        assert labels and set(labels) <= vocabulary
    assert list(rows[0]) == ["image", "labels"]


def test_predict_path_threshold_and_probabilities(sample_dir, in_tmp):
    assert _fit(sample_dir) == 0
    ckpt = str(in_tmp / "checkpoints" / "last.ckpt")
    args = ["--ckpt_path", ckpt, "--submission.path", "out/sub.csv"]
    args += ["--submission.threshold", "0.0", "--submission.probabilities_path", "out/probs.csv"]
    assert main(["predict", *cli_args(sample_dir, *args)]) == 0
    rows = _read_submission(in_tmp / "out" / "sub.csv")
    assert all(len(row["labels"].split()) == 6 for row in rows)  # threshold 0: every label
    probs = _read_submission(in_tmp / "out" / "probs.csv")
    assert len(probs) == len(rows) and len(probs[0]) == 7


def test_resume_from_last(sample_dir, in_tmp):
    assert _fit(sample_dir) == 0
    assert _fit(sample_dir, "--trainer.max_epochs", "2", "--ckpt_path", "last") == 0
    state = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 1


def test_validate_and_test_report_the_competition_metric(sample_dir, in_tmp, capsys):
    assert _fit(sample_dir) == 0
    ckpt = str(in_tmp / "checkpoints" / "last.ckpt")
    assert main(["validate", *cli_args(sample_dir, "--ckpt_path", ckpt)]) == 0
    assert main(["test", *cli_args(sample_dir, "--ckpt_path", ckpt)]) == 0
    out = capsys.readouterr().out
    assert "val/f1" in out and "test/f1" in out


def test_auto_batch_size(sample_dir, in_tmp):
    extra = ["--auto_batch_size", "true", "--auto_batch_size_max_trials", "2"]
    assert _fit(sample_dir, "--data.batch_size", "2", *extra) == 0


def test_sample_data_command(in_tmp, sample_dir):
    assert main(["sample-data", "fresh", "--n-train", "6", "--n-test", "2"]) == 0
    assert len(list((in_tmp / "fresh" / "train_images").iterdir())) == 6
    assert (in_tmp / "fresh" / "train.csv").read_text().startswith("image,labels\n")
    before = sorted(p.name for p in in_tmp.iterdir())
    assert main(["sample-data", "fresh"]) == 2
    assert sorted(p.name for p in in_tmp.iterdir()) == before


def _only_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    assert err[-1].startswith("error: ")
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def _assert_nothing_written(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_dir", r"nowhere: data folder not found"),
        ("missing_csv", r"train.csv: file not found"),
        ("no_labels", r"row 3 \(train_0001.jpg\): empty 'labels'"),
        ("image_missing", r"row 2: image train_0000.jpg not found"),
        ("corrupt_image", r"train_0002.jpg: not a readable image"),
    ],
)
def test_fit_on_bad_data_prints_one_line_and_writes_nothing(
    data_copy, in_tmp, capsys, case, expected
):
    data_dir = data_copy
    if case == "missing_dir":
        data_dir = data_copy / "nowhere"
    elif case == "missing_csv":
        (data_copy / "train.csv").unlink()
    elif case == "no_labels":
        text = (data_copy / "train.csv").read_text()
        (data_copy / "train.csv").write_text(text.replace("train_0001.jpg,scab", "train_0001.jpg,"))
    elif case == "image_missing":
        (data_copy / "train_images" / "train_0000.jpg").unlink()
    elif case == "corrupt_image":
        (data_copy / "train_images" / "train_0002.jpg").write_bytes(b"\x00" * 100)
    assert _fit(data_dir) == 2
    assert re.search(expected, _only_error_line(capsys))
    _assert_nothing_written(in_tmp)


@pytest.fixture
def trained(sample_dir, tmp_path, monkeypatch) -> Path:
    """A checkpoint trained for a few steps, outside the test's working folder."""
    out = tmp_path / "trained"
    out.mkdir()
    with monkeypatch.context() as patch:
        patch.chdir(out)
        assert _fit(sample_dir) == 0
    return out / "checkpoints" / "last.ckpt"


def test_predict_on_bad_input(trained, data_copy, in_tmp, capsys):
    args = cli_args(data_copy, "--ckpt_path", str(trained))
    # a data folder whose train.csv has another label set than the checkpoint
    text = (data_copy / "train.csv").read_text()
    (data_copy / "train.csv").write_text(text.replace(",scab", ",blight"))
    assert main(["predict", *args]) == 2
    assert "label vocabulary mismatch" in _only_error_line(capsys)
    # train.csv is optional at predict time; an empty test folder is not
    (data_copy / "train.csv").unlink()
    for image in (data_copy / "test_images").iterdir():
        image.unlink()
    assert main(["predict", *args]) == 2
    assert "test_images: no images found" in _only_error_line(capsys)
    # no checkpoint, or a broken one
    assert main(["predict", *cli_args(data_copy)]) == 2
    assert "--ckpt_path" in _only_error_line(capsys)
    (in_tmp.parent / "broken.ckpt").write_bytes(b"nope")
    assert (
        main(["predict", *cli_args(data_copy, "--ckpt_path", str(in_tmp.parent / "broken.ckpt"))])
        == 2
    )
    assert "not a readable checkpoint" in _only_error_line(capsys)
    _assert_nothing_written(in_tmp)


def test_predict_needs_no_train_csv(trained, data_copy, in_tmp):
    (data_copy / "train.csv").unlink()
    assert main(["predict", *cli_args(data_copy, "--ckpt_path", str(trained))]) == 0
    assert len(_read_submission(in_tmp / "submission.csv")) == 12


@pytest.mark.slow
def test_a_few_cpu_epochs_beat_the_trivial_baseline(sample_dir, in_tmp):
    """Learnability: the CPU debug config must clearly beat 'always the most frequent set'."""
    assert main(["fit", *cli_args(sample_dir, "--data.image_size", "96")]) == 0
    metrics = next((in_tmp / "logs").rglob("metrics.csv"))
    with metrics.open() as handle:
        scores = [float(r["val/f1"]) for r in csv.DictReader(handle) if r.get("val/f1")]
    dm = PlantDataModule(str(sample_dir), num_workers=0)
    dm.setup("fit")
    trivial = most_frequent_set_f1(
        dm.val_set.targets.numpy(), reference=dm.train_set.targets.numpy()
    )
    print(f"val samples-F1 {scores[-1]:.3f} vs trivial {trivial:.3f}")
    assert scores[-1] > trivial + 0.25


def test_real_layout_with_full_size_jpegs_and_another_label_set(tmp_path, in_tmp):
    """Plant Pathology 2020's labels, big camera-sized JPEGs: the same commands just work."""
    data = tmp_path / "pp2020"
    (data / "train_images").mkdir(parents=True)
    (data / "test_images").mkdir()
    label_sets = ["healthy", "multiple_diseases rust scab", "rust", "scab"]
    rows = ["image,labels"]
    rng = np.random.default_rng(0)
    for index in range(16):
        colour = rng.integers(0, 255, size=(6, 9, 3), dtype=np.uint8)
        photo = Image.fromarray(colour).resize((2048, 1365), Image.Resampling.BICUBIC)
        folder = "test_images" if index >= 12 else "train_images"
        photo.save(data / folder / f"Train_{index}.jpg", quality=90)
        if index < 12:
            rows.append(f"Train_{index}.jpg,{label_sets[index % 4]}")
    (data / "train.csv").write_text("\n".join(rows) + "\n")
    args = ["--data.val_fraction", "0.25", "--trainer.max_epochs", "1"]
    assert main(["fit", *cli_args(data, *args)]) == 0
    ckpt = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["classes"] == ["healthy", "multiple_diseases", "rust", "scab"]
    predict = ["--ckpt_path", str(in_tmp / "checkpoints" / "last.ckpt")]
    assert main(["predict", *cli_args(data, *predict)]) == 0
    rows = _read_submission(in_tmp / "submission.csv")
    assert [row["image"] for row in rows] == [f"Train_{i}.jpg" for i in (12, 13, 14, 15)]
    assert all(
        set(row["labels"].split()) <= set(ckpt["hyper_parameters"]["classes"]) for row in rows
    )
