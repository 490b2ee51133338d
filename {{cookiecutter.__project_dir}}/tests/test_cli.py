"""The command line, end to end: fit -> checkpoint -> predict -> submission.csv, and bad input."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pytorch_lightning import Trainer

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.data import PlantDataModule
from {{ cookiecutter.package }}.utils.errors import DataError
from {{ cookiecutter.package }}.metrics import most_frequent_set_score
from {{ cookiecutter.package }}.cli.trainer_checks import refuse_partial_prediction

from helpers import (
    assert_nothing_written,
    cli_args,
    fit,
    logged,
    only_error_line,
    read_csv_rows,
)

TRAIN_IMAGES_IN_FOLD_0 = 128  # 160 sample images, 5 folds


def test_fast_dev_run_runs_one_batch_and_writes_nothing(sample_dir, in_tmp):
    assert main(["fit", *cli_args(sample_dir, "--trainer.fast_dev_run", "true")]) == 0
    assert_nothing_written(in_tmp)  # fast_dev_run: no logger, no checkpoints


def test_fit_checkpoint_predict_submission(sample_dir, in_tmp, trained):
    assert list(trained.parent.glob("best-epoch*.ckpt"))
    assert list(trained.parents[1].joinpath("logs").rglob("config.yaml"))
    assert main(["predict", *cli_args(sample_dir, "--ckpt_path", str(trained))]) == 0
    rows = read_csv_rows(in_tmp / "submission.csv")
    test_images = sorted(p.name for p in (sample_dir / "test_images").iterdir())
    assert [row["image"] for row in rows] == test_images
    vocabulary = set(torch.load(trained, weights_only=True)["hyper_parameters"]["classes"])
    for row in rows:
        labels = row["labels"].split()
        assert labels and set(labels) <= vocabulary
    assert list(rows[0]) == ["image", "labels"]


@pytest.mark.parametrize("threshold", ["0.0", "1.0"])
def test_predict_threshold_flag_decides_the_labels(sample_dir, in_tmp, trained, threshold):
    args = ["--ckpt_path", str(trained), "--submission.path", "out/sub.csv"]
    args += ["--model.threshold", threshold, "--submission.probabilities_path", "out/probs.csv"]
    assert main(["predict", *cli_args(sample_dir, *args)]) == 0
    rows = read_csv_rows(in_tmp / "out" / "sub.csv")
    probs = read_csv_rows(in_tmp / "out" / "probs.csv")
    assert [r["image"] for r in probs] == [r["image"] for r in rows] and len(probs[0]) == 7
    if threshold == "0.0":  # every probability is > 0: every label
        assert all(len(row["labels"].split()) == 6 for row in rows)
    else:  # nothing is > 1: each image gets its arg-max label only
        for row, prob in zip(rows, probs):
            values = {name: float(value) for name, value in prob.items() if name != "image"}
            assert row["labels"] == max(values, key=values.get)


@pytest.mark.slow
def test_the_threshold_saved_in_the_checkpoint_applies_by_default(sample_dir, in_tmp, trained):
    state = torch.load(trained, weights_only=True)
    state["hyper_parameters"]["threshold"] = 0.0
    torch.save(state, in_tmp.parent / "zero.ckpt")
    bare = ["--data.data_dir", str(sample_dir), "--data.num_workers", "0"]
    bare += ["--trainer.accelerator", "cpu", "--ckpt_path", str(in_tmp.parent / "zero.ckpt")]
    assert main(["predict", *bare]) == 0
    rows = read_csv_rows(in_tmp / "submission.csv")
    assert all(len(row["labels"].split()) == 6 for row in rows)


@pytest.mark.slow
def test_resume_from_last_continues_the_step_count(sample_dir, in_tmp):
    assert fit(sample_dir) == 0
    first = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    assert first["global_step"] == 2
    assert fit(sample_dir, "--trainer.max_epochs", "2", "--ckpt_path", "last") == 0
    second = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    assert second["global_step"] == 4 and second["epoch"] == 1
    # the resumed run logged epoch 1 only: the finished epoch 0 was not trained again
    assert logged(in_tmp / "logs", "epoch")[-1] == 1.0
    assert sorted({int(e) for e in logged(in_tmp / "logs", "epoch")}) == [0, 1]


@pytest.mark.slow
def test_validate_and_test_rescore_the_validation_fold_with_the_checkpoint(
    sample_dir, in_tmp, trained
):
    ckpt = ["--ckpt_path", str(trained), "--trainer.limit_val_batches", "1.0"]
    ckpt += ["--trainer.limit_test_batches", "1.0"]
    assert main(["validate", *cli_args(sample_dir, *ckpt)]) == 0
    assert main(["test", *cli_args(sample_dir, *ckpt)]) == 0
    (val_f1,) = logged(in_tmp / "logs", "val/f1")
    (test_f1,) = logged(in_tmp / "logs", "test/f1")
    assert 0.0 <= val_f1 <= 1.0
    assert test_f1 == pytest.approx(val_f1)  # test re-scores the validation fold (documented)
    per_class = [logged(in_tmp / "logs", f"val/f1_{name}") for name in ("healthy", "scab")]
    assert all(len(values) == 1 for values in per_class)


@pytest.mark.slow
def test_auto_batch_size_changes_the_batch_size(sample_dir, in_tmp):
    extra = ["--data.batch_size", "2", "--auto_batch_size", "true"]
    extra += ["--auto_batch_size_max_trials", "2", "--trainer.limit_train_batches", "1.0"]
    extra += ["--data.image_size", "32"]
    assert fit(sample_dir, *extra) == 0
    state = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    # batch size 2 would take 64 steps for the epoch; the finder doubled it at least once
    assert 0 < state["global_step"] <= TRAIN_IMAGES_IN_FOLD_0 // 4


def test_sample_data_command(in_tmp, sample_dir):
    assert main(["sample-data", "fresh", "--n-train", "6", "--n-test", "2"]) == 0
    assert len(list((in_tmp / "fresh" / "train_images").iterdir())) == 6
    assert (in_tmp / "fresh" / "train.csv").read_text().startswith("image,labels\n")
    before = sorted(p.name for p in in_tmp.iterdir())
    assert main(["sample-data", "fresh"]) == 2
    assert sorted(p.name for p in in_tmp.iterdir()) == before


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_dir", r"nowhere: data folder not found"),
        ("missing_csv", r"train.csv: file not found"),
        ("no_labels", r"row 3 \(train_0001.jpg\): empty 'labels'"),
        ("image_missing", r"row 2: image train_0000.jpg not found"),
        ("corrupt_image", r"train_0002.jpg: not a readable image"),
        (
            "decomposed_accent",
            r"row 3 \(train_0001.jpg\): label 'sc\\xe0b' differs from 'sca\\u0300b' \(row 2\)"
            " only by Unicode normalisation, invisible characters or case",
        ),
        (
            "zero_width_space",
            r"row 3 \(train_0001.jpg\): label 'scab\\u200b' differs from 'scab' \(row 2\)"
            " only by Unicode normalisation, invisible characters or case",
        ),
        ("invisible_label", r"row 2 \(train_0000.jpg\): label '\\u2060' has no visible"),
        ("one_class", r"train.csv: every row has the one label 'scab'; a multi-label model needs"),
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
    else:
        _relabel(data_copy / "train.csv", case)
    assert fit(data_dir) == 2
    assert re.search(expected, only_error_line(capsys))
    assert_nothing_written(in_tmp)


def _relabel(train_csv: Path, case: str) -> None:
    """Rewrite ``train.csv``'s labels for one of the label-spelling cases."""
    rows = train_csv.read_text(encoding="utf-8").splitlines()
    images = [row.split(",")[0] for row in rows[1:]]
    if case == "one_class":
        labels = ["scab"] * len(images)
    else:
        first, second = {
            "decomposed_accent": ("sca\u0300b", "sc\u00e0b"),  # NFD, then NFC
            "zero_width_space": ("scab", "scab\u200b"),
            "invisible_label": ("\u2060", "scab"),
        }[case]
        labels = [first, second] + [row.split(",")[1] for row in rows[3:]]
    text = "\n".join(["image,labels", *(f"{i},{l}" for i, l in zip(images, labels))]) + "\n"
    train_csv.write_text(text, encoding="utf-8")


def test_cv_on_a_single_class_prints_one_line_and_writes_nothing(data_copy, in_tmp, capsys):
    _relabel(data_copy / "train.csv", "one_class")
    assert main(["cv", "--folds", "2", "--out", "cv", *cli_args(data_copy)]) == 2
    line = only_error_line(capsys)
    assert f"{data_copy / 'train.csv'}: every row has the one label 'scab'" in line
    assert_nothing_written(in_tmp)


MISSING = object()


def _forged(trained: Path, target: Path, **hparams: object) -> Path:
    """A copy of ``trained`` whose model hyper-parameters are updated with ``hparams``."""
    state = torch.load(trained, weights_only=True)
    state["hyper_parameters"].update(hparams)
    for key in [key for key, value in hparams.items() if value is MISSING]:
        del state["hyper_parameters"][key]
    torch.save(state, target)
    return target


@pytest.mark.parametrize(
    ("hparams", "expected"),
    [
        ({"backbone": 5}, "hyper-parameter 'backbone' is int 5, not a timm or torchvision"),
        pytest.param(
            {"backbone": None},
            "hyper-parameter 'backbone' is NoneType None, not a timm or torchvision",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            {"backbone": ["resnet18"]},
            "hyper-parameter 'backbone' is list ['resnet18'], not a",
            marks=pytest.mark.slow,
        ),
        ({"extra": 1}, "hyper-parameter 'extra' is not an argument of PlantClassifier"),
        ({"backbone": MISSING}, "no hyper-parameter 'backbone': the model was built on an nn."),
        ({"threshold": 1.5}, "hyper-parameter model.threshold 1.5: must be >= 0 and <= 1"),
    ],
)
def test_a_checkpoint_with_unusable_hyper_parameters_is_one_line(
    trained, sample_dir, in_tmp, capsys, hparams, expected
):
    forged = _forged(trained, in_tmp.parent / "forged.ckpt", **hparams)
    assert main(["predict", *cli_args(sample_dir, "--ckpt_path", str(forged))]) == 2
    assert only_error_line(capsys).startswith(f"error: {forged}: {expected}")
    assert_nothing_written(in_tmp)


@pytest.mark.slow
def test_a_checkpoint_without_weights_is_one_line(trained, sample_dir, in_tmp, capsys):
    forged = in_tmp.parent / "no_weights.ckpt"
    state = torch.load(trained, weights_only=True)
    del state["state_dict"]
    torch.save(state, forged)
    assert main(["predict", *cli_args(sample_dir, "--ckpt_path", str(forged))]) == 2
    assert only_error_line(capsys) == (
        f"error: {forged}: not a checkpoint of this package (no weights: state_dict)"
    )
    assert_nothing_written(in_tmp)


PLANTED = """
from pathlib import Path
Path(__file__).with_name("imported").write_text("the planted module ran")
"""


@pytest.mark.parametrize(
    ("field", "hparams"),
    [
        ("'backbone.class_path'", {"backbone": {"class_path": "planted_module.Backbone"}}),
        ("'_class_path'", {"_class_path": "planted_module.Model"}),
        ("'_instantiator'", {"_instantiator": "planted_module.build"}),
    ],
)
def test_a_checkpoint_s_class_paths_are_checked_before_anything_is_imported(
    trained, sample_dir, in_tmp, capsys, monkeypatch, field, hparams
):
    planted = in_tmp.parent / "site"
    planted.mkdir()
    (planted / "planted_module.py").write_text(PLANTED)
    monkeypatch.syspath_prepend(str(planted))
    forged = _forged(trained, in_tmp.parent / "forged.ckpt", **hparams)
    assert main(["predict", *cli_args(sample_dir, "--ckpt_path", str(forged))]) == 2
    line = only_error_line(capsys)
    assert f"{forged}: hyper-parameter {field} names 'planted_module." in line
    assert not (planted / "imported").exists()
    assert_nothing_written(in_tmp)


@pytest.mark.slow
def test_predict_on_bad_input(trained, data_copy, in_tmp, capsys):
    args = cli_args(data_copy, "--ckpt_path", str(trained))
    # a data folder whose train.csv has another label set than the checkpoint
    text = (data_copy / "train.csv").read_text()
    (data_copy / "train.csv").write_text(text.replace(",scab", ",blight"))
    assert main(["predict", *args]) == 2
    assert "label vocabulary mismatch" in only_error_line(capsys)
    # train.csv is optional at predict time; an empty test folder is not
    (data_copy / "train.csv").unlink()
    for image in (data_copy / "test_images").iterdir():
        image.unlink()
    assert main(["predict", *args]) == 2
    assert "test_images: no images found" in only_error_line(capsys)
    # no checkpoint, or a broken one
    assert main(["predict", *cli_args(data_copy)]) == 2
    assert "--ckpt_path" in only_error_line(capsys)
    (in_tmp.parent / "broken.ckpt").write_bytes(b"nope")
    assert (
        main(["predict", *cli_args(data_copy, "--ckpt_path", str(in_tmp.parent / "broken.ckpt"))])
        == 2
    )
    assert "not a readable checkpoint" in only_error_line(capsys)
    assert_nothing_written(in_tmp)


def test_predict_needs_no_train_csv(trained, data_copy, in_tmp):
    (data_copy / "train.csv").unlink()
    assert main(["predict", *cli_args(data_copy, "--ckpt_path", str(trained))]) == 0
    assert len(read_csv_rows(in_tmp / "submission.csv")) == 12


@pytest.mark.parametrize(
    ("junk", "why"),
    [
        ("._test_0000.jpg", "macOS resource-fork file"),
        ("notes.txt", "suffix .txt is not one of"),
        (".DS_Store", "hidden file"),
        ("scan.JPG.gz", "suffix .gz"),
    ],
)
def test_a_submission_never_leaves_out_a_file_of_the_test_folder(
    trained, data_copy, in_tmp, capsys, junk, why
):
    (data_copy / "test_images" / junk).write_bytes(b"\x00\x05\x16\x07")
    assert main(["predict", *cli_args(data_copy, "--ckpt_path", str(trained))]) == 2
    line = only_error_line(capsys)
    assert f"{junk} (" in line and why in line and "left out" in line
    assert_nothing_written(in_tmp)


@pytest.mark.parametrize(
    "limit",
    [
        ["--trainer.limit_predict_batches", "0.5"],
        ["--trainer.limit_predict_batches", "0.0"],
        ["--trainer.fast_dev_run", "true"],
    ],
)
def test_a_partial_prediction_writes_no_submission(trained, sample_dir, in_tmp, capsys, limit):
    args = cli_args(sample_dir, "--ckpt_path", str(trained), "--data.batch_size", "4", *limit)
    assert main(["predict", *args]) == 2
    assert "must cover every test image" in only_error_line(capsys)
    assert_nothing_written(in_tmp)


def test_zero_predict_batches_are_refused():
    trainer = Trainer(limit_predict_batches=0, logger=False, enable_checkpointing=False)
    with pytest.raises(DataError, match="limit_predict_batches 0: a submission must cover"):
        refuse_partial_prediction(trainer)


@pytest.mark.slow  # a fresh process; the fast tier has the test above
def test_predicting_zero_batches_is_refused_by_the_console_script(trained, sample_dir, in_tmp):
    """The user's ``0`` is the whole number 0 (under pytest the parser reads it as 0.0, which
    was refused already): only the console script shows what a user meets."""
    script = Path(sys.executable).with_name("{{ cookiecutter.package }}")
    args = cli_args(sample_dir, "--ckpt_path", str(trained), "--trainer.limit_predict_batches", "0")
    done = subprocess.run([script, "predict", *args], capture_output=True, text=True)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --trainer.limit_predict_batches 0: a submission must cover")
    assert_nothing_written(in_tmp)


def test_the_console_script_predicts_without_upstream_deprecation_noise(
    trained, sample_dir, in_tmp
):
    """torch 2.14 warns inside Lightning 2.6's own code on every run (``UPSTREAM_WARNINGS``)."""
    script = Path(sys.executable).with_name("{{ cookiecutter.package }}")
    args = cli_args(sample_dir, "--ckpt_path", str(trained))
    done = subprocess.run([script, "predict", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (in_tmp / "submission.csv").is_file()
    assert [line for line in done.stderr.splitlines() if "LeafSpec" in line] == []


def test_limiting_predict_batches_by_count_writes_no_submission(
    trained, sample_dir, in_tmp, capsys
):
    args = ["--ckpt_path", str(trained), "--data.batch_size", "4"]
    args += ["--trainer.limit_predict_batches", "2"]
    assert main(["predict", *cli_args(sample_dir, *args)]) == 2
    assert "predicted 8 of 12 test images" in only_error_line(capsys)
    assert_nothing_written(in_tmp)


def test_the_baseline_config_loads_and_the_cpu_overlay_composes(capsys):
    configs = Path(__file__).parents[1] / "configs"
    assert main(["fit", "--config", str(configs / "baseline.yaml"), "--print_config"]) == 0
    baseline = yaml.safe_load(capsys.readouterr().out)
    assert baseline["model"]["backbone"].startswith("timm/")
    assert baseline["model"]["pretrained"] is True
    assert baseline["data"]["image_size"] == 384
    assert baseline["checkpoint"]["save_last"] is True
    overlay = ["--config", str(configs / "cpu_debug.yaml"), "--print_config"]
    assert main(["fit", "--config", str(configs / "baseline.yaml"), *overlay]) == 0
    composed = yaml.safe_load(capsys.readouterr().out)
    assert composed["model"]["backbone"] == "resnet18" and composed["model"]["pretrained"] is False
    assert composed["trainer"]["accelerator"] == "cpu" and composed["data"]["image_size"] == 96
    # what the overlay does not set comes from the baseline
    assert composed["model"]["threshold"] == baseline["model"]["threshold"]
    assert composed["trainer"]["callbacks"] == baseline["trainer"]["callbacks"]
    assert composed["trainer"]["logger"] == baseline["trainer"]["logger"]


def test_predict_with_a_pretrained_config_never_downloads(trained, sample_dir, in_tmp, monkeypatch):
    def refuse(url, *args, **kwargs):
        raise AssertionError(f"predict tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setenv("TORCH_HOME", str(in_tmp.parent / "empty-hub"))
    args = ["--ckpt_path", str(trained), "--model.pretrained", "true"]
    assert main(["predict", *cli_args(sample_dir, *args)]) == 0
    assert len(read_csv_rows(in_tmp / "submission.csv")) == 12


@pytest.mark.slow
def test_a_few_cpu_epochs_beat_the_trivial_baseline(sample_dir, in_tmp):
    """Learnability: the CPU debug config must clearly beat 'always the most frequent set'."""
    assert main(["fit", *cli_args(sample_dir, "--data.image_size", "96")]) == 0
    scores = logged(in_tmp / "logs", "val/f1")
    dm = PlantDataModule(str(sample_dir), num_workers=0)
    dm.setup("fit")
    trivial = most_frequent_set_score(
        dm.val_set.targets.numpy(), reference=dm.train_set.targets.numpy()
    )
    print(f"val samples-F1 {scores[-1]:.3f} vs trivial {trivial:.3f}")
    assert scores[-1] > trivial + 0.25


@pytest.mark.slow
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
    rows = read_csv_rows(in_tmp / "submission.csv")
    assert [row["image"] for row in rows] == [f"Train_{i}.jpg" for i in (12, 13, 14, 15)]
    assert all(
        set(row["labels"].split()) <= set(ckpt["hyper_parameters"]["classes"]) for row in rows
    )
