"""Cross-validation: duplicate-aware folds, out-of-fold predictions, fold ensembles and TTA."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.folds import assign_folds, read_folds
from {{ cookiecutter.package }}.prep.image_checks import duplicate_groups
from {{ cookiecutter.package }}.workflows.cv_files import clear_cv_folder, read_plan
from {{ cookiecutter.package }}.predict.inference import EnsembleClassifier, load_classifier
from {{ cookiecutter.package }}.labels import encode_labels, label_vocabulary, read_train_csv
from {{ cookiecutter.package }}.metrics import decode, score
from {{ cookiecutter.package }}.models import PlantClassifier
from {{ cookiecutter.package }}.thresholds import ThresholdReport

from helpers import cli_args, only_error_line, read_csv_rows
from cv_checks import (
    CONFLICT,
    FLIPS,
    NEAR,
    add_copies,
    add_near_copies,
    assert_stratified,
    copy_cv_run,
    probability_tolerance,
    recomputed_probabilities,
)


def _targets(data_dir: Path) -> tuple[list[str], np.ndarray]:
    samples = read_train_csv(data_dir / "train.csv")
    return [s.image for s in samples], encode_labels(samples, label_vocabulary(samples))


@pytest.mark.parametrize("n_folds", [3, 5])
def test_folds_are_disjoint_cover_every_row_and_follow_the_seed(sample_dir, n_folds):
    images, targets = _targets(sample_dir)
    plan = assign_folds(images, targets, n_folds, seed=7)
    assert sorted(set(plan.folds.tolist())) == list(range(n_folds))
    assert len(plan.folds) == len(images)
    sizes = np.bincount(plan.folds)
    assert (abs(sizes - len(images) / n_folds) <= 0.15 * len(images) / n_folds).all()
    same = assign_folds(images, targets, n_folds, seed=7)
    other = assign_folds(images, targets, n_folds, seed=8)
    assert (same.folds == plan.folds).all() and (other.folds != plan.folds).any()


@pytest.mark.parametrize("n_folds", [3, 5])
def test_folds_hold_each_class_in_about_equal_counts(sample_dir, n_folds):
    images, targets = _targets(sample_dir)
    classes = label_vocabulary(read_train_csv(sample_dir / "train.csv"))
    for seed in range(5):
        assert_stratified(assign_folds(images, targets, n_folds, seed=seed).folds, targets, classes)


def test_identical_images_share_a_fold(data_copy):
    folder = data_copy / "train_images"
    rows = (data_copy / "train.csv").read_text().splitlines()
    labels = dict(row.split(",", 1) for row in rows[1:])
    # plant copies: train_0000 twice more (one with other labels), train_0001 once
    copies = {"dup_a.jpg": ("train_0000.jpg", "rust"), "dup_b.jpg": ("train_0000.jpg", None)}
    copies["dup_c.jpg"] = ("train_0001.jpg", None)
    add_copies(data_copy, copies)
    images, targets = _targets(data_copy)
    groups = duplicate_groups(folder, images)
    assert sorted(map(sorted, groups)) == [
        ["dup_a.jpg", "dup_b.jpg", "train_0000.jpg"],
        ["dup_c.jpg", "train_0001.jpg"],
    ]
    for seed in range(5):
        plan = assign_folds(images, targets, 5, seed=seed, groups=groups)
        fold = dict(zip(plan.images, plan.folds.tolist()))
        assert fold["dup_a.jpg"] == fold["dup_b.jpg"] == fold["train_0000.jpg"]
        assert fold["dup_c.jpg"] == fold["train_0001.jpg"]
    assert plan.conflicting_groups == (0 if labels["train_0000.jpg"] == "rust" else 1)


class SpatialMean(nn.Module):
    """Features that do not change when the image is flipped."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


def _member(seed: int, backbone: nn.Module | str = "resnet18") -> PlantClassifier:
    torch.manual_seed(seed)
    model = PlantClassifier(backbone, classes=["a", "b", "c"], channels_last=False)
    return model.eval()


def test_ensemble_probabilities_are_the_mean_of_its_members():
    members = [_member(1), _member(2)]
    images = torch.randn(3, 3, 32, 32)
    ensemble = EnsembleClassifier(members).eval()
    with torch.no_grad():
        expected = (torch.sigmoid(members[0](images)) + torch.sigmoid(members[1](images))) / 2
        np.testing.assert_allclose(ensemble(images), expected, atol=1e-6)


def test_tta_on_a_flip_invariant_model_changes_nothing_and_on_others_averages_views():
    images = torch.randn(2, 3, 16, 16)
    invariant = _member(3, SpatialMean())
    with torch.no_grad():
        plain = EnsembleClassifier([invariant], tta="none")(images)
        flipped = EnsembleClassifier([invariant], tta="flips")(images)
        np.testing.assert_allclose(flipped, plain, atol=1e-6)
        model = _member(4)
        views = [images, images.flip(3), images.flip(2), images.flip((2, 3))]
        expected = torch.stack([torch.sigmoid(model(v)) for v in views]).mean(0)
        np.testing.assert_allclose(
            EnsembleClassifier([model], tta="flips")(images), expected, atol=1e-5
        )


@pytest.mark.slow
def test_an_ensemble_of_other_vocabularies_or_sizes_is_refused(trained, tmp_path):
    state = torch.load(trained, weights_only=True)
    other = dict(state, hyper_parameters={**state["hyper_parameters"], "classes": ["x", "y"]})
    other["state_dict"] = {
        k: (v[:2] if k.startswith("head.") else v) for k, v in state["state_dict"].items()
    }
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="one label vocabulary"):
        EnsembleClassifier.from_checkpoints([trained, tmp_path / "other.ckpt"])
    resized = dict(state, datamodule_hyper_parameters={"image_size": 512})
    torch.save(resized, tmp_path / "resized.ckpt")
    with pytest.raises(ValueError, match="different image sizes"):
        EnsembleClassifier.from_checkpoints([trained, tmp_path / "resized.ckpt"])
    model, data = load_classifier(trained)
    assert model.classes == state["hyper_parameters"]["classes"] and data["image_size"] == 64


CV_SIZE = 32
CV = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--data.image_size",
    str(CV_SIZE),
]
# The cv fixture's identical images: copies of three training images (one of them twice).
CV_COPIES = {
    "copy_3a.jpg": ("train_0003.jpg", None),
    "copy_3b.jpg": ("train_0003.jpg", None),
    "copy_17.jpg": ("train_0017.jpg", None),
    "copy_42.jpg": ("train_0042.jpg", None),
}


@pytest.fixture(scope="module")
def cv_data(tmp_path_factory, sample_dir) -> Path:
    """The sample set with ``CV_COPIES`` and ``add_near_copies``'s copies added (read-only: copy
    it before changing anything)."""
    data = Path(shutil.copytree(sample_dir, tmp_path_factory.mktemp("cv_data") / "data"))
    add_copies(data, CV_COPIES)
    add_near_copies(data)
    return data


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, cv_data) -> Path:
    """A 3-fold cv run on ``cv_data``, 1 short epoch each."""
    work = tmp_path_factory.mktemp("cv")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        assert main(["cv", "--folds", "3", "--out", "runs/cv", *cli_args(cv_data, *CV)]) == 0
    return work / "runs" / "cv"


@pytest.mark.slow
def test_cv_writes_every_promised_file(cv_run, cv_data):
    for k in range(3):
        assert (cv_run / f"fold{k}" / "best.ckpt").is_file()
        assert list((cv_run / f"fold{k}" / "logs").rglob("metrics.csv"))
    images, targets = _targets(cv_data)
    oof = read_csv_rows(cv_run / "oof.csv")
    assert [row["image"] for row in oof] == images  # every train.csv row, once, in order
    folds = read_folds(cv_run / "folds.csv")
    assert all(int(row["fold"]) == folds[row["image"]] for row in oof)
    summary = json.loads((cv_run / "cv.json").read_text())
    assert summary["folds"] == 3 and summary["images"] == len(images)


@pytest.mark.slow
def test_the_pooled_oof_f1_can_be_recomputed_from_the_files(cv_run, cv_data):
    images, targets = _targets(cv_data)
    with (cv_run / "oof.csv").open(newline="") as handle:
        reader = csv.reader(handle)
        classes = next(reader)[2:]
        probs = np.array([[float(v) for v in row[2:]] for row in reader])
    summary = json.loads((cv_run / "cv.json").read_text())
    report = ThresholdReport.load(cv_run / "thresholds.json")
    default = score(targets, decode(probs, summary["default_threshold"]))
    tuned = score(targets, decode(probs, report.thresholds_for_predict()))
    assert summary["oof_f1_default_threshold"] == pytest.approx(default)
    assert summary["oof_f1_tuned"] == pytest.approx(tuned)
    assert tuned >= default - 1e-9
    assert classes == summary["classes"]


@pytest.mark.slow
def test_each_oof_row_is_the_prediction_of_its_own_folds_model(cv_run, cv_data):
    oof = read_csv_rows(cv_run / "oof.csv")
    classes = json.loads((cv_run / "cv.json").read_text())["classes"]
    written = np.array([[float(row[c]) for c in classes] for row in oof])
    fold_of_row = np.array([int(row["fold"]) for row in oof])
    names = [row["image"] for row in oof]
    by_model = [
        recomputed_probabilities(
            cv_run / f"fold{m}" / "best.ckpt", cv_data / "train_images", names, CV_SIZE
        )
        for m in range(3)
    ]
    tolerance = probability_tolerance()
    for k in range(3):
        rows = fold_of_row == k
        distances = [float(abs(probs[rows] - written[rows]).max()) for probs in by_model]
        assert distances[k] <= tolerance, f"fold {k}: {distances}"
        assert max(distances) > tolerance, f"fold {k}: the models agree, nothing is shown"


@pytest.mark.slow
def test_cv_keeps_identical_and_near_duplicate_images_in_one_fold(cv_run):
    folds = read_folds(cv_run / "folds.csv")
    groups: dict[str, set[str]] = {}
    near = {NEAR: ("train_0002.jpg", None), CONFLICT: ("train_0003.jpg", None)}
    for name, (source, _) in {**CV_COPIES, **near}.items():
        groups.setdefault(source, {source}).add(name)
    for group in groups.values():
        assert len({folds[name] for name in group}) == 1, {name: folds[name] for name in group}
    assert json.loads((cv_run / "cv.json").read_text())["duplicate_groups"] == len(groups)


@pytest.mark.slow
def test_cv_folds_hold_each_class_in_about_equal_counts(cv_run, cv_data):
    folds = read_folds(cv_run / "folds.csv")
    images, targets = _targets(cv_data)
    classes = label_vocabulary(read_train_csv(cv_data / "train.csv"))
    assert_stratified(np.array([folds[name] for name in images]), targets, classes)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
    }


def run_cv_again(out: Path, data: Path, *extra: str, folds: int = 3) -> int:
    """``cv`` of ``data`` into ``out`` with the fixture's flags, then ``extra``."""
    return main(["cv", "--folds", str(folds), "--out", str(out), *cli_args(data, *CV, *extra)])


@pytest.mark.slow
def test_a_second_cv_run_skips_finished_folds_and_redoes_a_missing_one(
    cv_run, cv_data, tmp_path, in_tmp, capsys
):
    copy = copy_cv_run(cv_run, tmp_path / "cv")
    stamps = {k: (copy / f"fold{k}" / "best.ckpt").stat().st_mtime_ns for k in range(3)}
    (copy / "fold2" / "oof.csv").unlink()  # as if the run was killed before fold 2's OOF
    assert run_cv_again(copy, cv_data) == 0
    out = capsys.readouterr().out
    assert out.count("is done, skipped") == 2
    assert (copy / "fold2" / "oof.csv").is_file()
    assert all((copy / f"fold{k}" / "best.ckpt").stat().st_mtime_ns == stamps[k] for k in (0, 1))


@pytest.mark.slow
def test_a_moved_cv_folder_resumes_with_the_best_checkpoint_of_its_new_place(
    cv_run, cv_data, tmp_path, in_tmp, capsys
):
    copy = copy_cv_run(cv_run, tmp_path / "cv")
    fold = copy / "fold2"
    (fold / "oof.csv").unlink()
    (fold / "best.ckpt").unlink()
    last = torch.load(fold / "checkpoints" / "last.ckpt", weights_only=True)
    for name, state in last["callbacks"].items():  # the paths it had in its old place
        if name.startswith("EpochCheckpoint"):
            best = Path(state["best_model_path"])
            state["dirpath"] = "/moved/from/here"
            state["best_model_path"] = f"/moved/from/here/{best.name}"
    (fold / "checkpoints" / "last.ckpt").unlink()
    torch.save(last, fold / "checkpoints" / "last.ckpt")
    assert run_cv_again(copy, cv_data) == 0
    assert (fold / "best.ckpt").read_bytes() == (fold / "checkpoints" / best.name).read_bytes()
    assert (fold / "oof.csv").is_file()


@pytest.mark.slow
def test_a_cv_rerun_with_other_settings_is_refused_naming_them(
    cv_run, cv_data, tmp_path, in_tmp, capsys
):
    copy = copy_cv_run(cv_run, tmp_path / "cv")
    before = snapshot(copy)
    assert (
        run_cv_again(copy, cv_data, "--model.backbone", "resnet34", "--data.image_size", "48") == 2
    )
    assert only_error_line(capsys) == (
        f"error: {copy}: holds a cv run with other settings: data.image_size (32 -> 48),"
        " model.backbone (resnet18 -> resnet34); use another --out, or --restart to train it again"
    )
    assert snapshot(copy) == before


@pytest.mark.slow
def test_a_cv_rerun_may_read_the_data_elsewhere_with_other_loader_workers(
    cv_run, cv_data, tmp_path, in_tmp, capsys
):
    copy = copy_cv_run(cv_run, tmp_path / "cv")
    elsewhere = Path(shutil.copytree(cv_data, tmp_path / "data"))
    stamps = {k: (copy / f"fold{k}" / "best.ckpt").stat().st_mtime_ns for k in range(3)}
    assert run_cv_again(copy, elsewhere, "--data.num_workers", "1") == 0
    assert capsys.readouterr().out.count("is done, skipped") == 3
    assert all((copy / f"fold{k}" / "best.ckpt").stat().st_mtime_ns == stamps[k] for k in range(3))


@pytest.mark.slow
def test_a_cv_folder_of_an_older_version_records_the_settings_of_its_next_run(
    cv_run, cv_data, tmp_path, in_tmp, capsys
):
    copy = copy_cv_run(cv_run, tmp_path / "cv")
    (copy / "fit_config.yaml").unlink()
    assert run_cv_again(copy, cv_data) == 0
    out = capsys.readouterr().out
    assert "does not record the settings it was trained with" in out
    assert out.count("is done, skipped") == 3
    assert "image_size: 32" in (copy / "fit_config.yaml").read_text()
    assert run_cv_again(copy, cv_data, "--data.image_size", "48") == 2
    assert "data.image_size (32 -> 48)" in only_error_line(capsys)


@pytest.mark.slow
def test_cv_restart_trains_again_and_keeps_the_users_files(
    cv_run, cv_data, tmp_path, in_tmp, capsys
):
    copy = copy_cv_run(cv_run, tmp_path / "cv")
    (copy / "notes.txt").write_text("mine")
    (copy / "fold0" / "notes.txt").write_text("mine too")
    assert run_cv_again(copy, cv_data, "--data.image_size", "48", "--restart", folds=2) == 0
    out = capsys.readouterr().out
    assert "is done, skipped" not in out and "kept what cv did not write: fold0, notes.txt" in out
    assert (copy / "notes.txt").read_text() == "mine"
    assert (copy / "fold0" / "notes.txt").read_text() == "mine too"
    assert not (copy / "fold2").exists()  # the earlier run's third fold
    assert read_plan(copy)["folds"] == 2
    assert "image_size: 48" in (copy / "fit_config.yaml").read_text()
    for k in range(2):
        checkpoint = torch.load(copy / f"fold{k}" / "best.ckpt", weights_only=True)
        assert checkpoint["datamodule_hyper_parameters"]["image_size"] == 48
        assert len(list((copy / f"fold{k}" / "logs").rglob("metrics.csv"))) == 1


def test_cv_restart_deletes_nothing_in_a_folder_cv_did_not_write(data_copy, in_tmp, capsys):
    folder = in_tmp / "mine"
    (folder / "fold0" / "checkpoints").mkdir(parents=True)
    for name in ("oof.csv", "cv.json", "fold0/oof.csv", "fold0/checkpoints/last.ckpt"):
        (folder / name).write_text("mine")
    before = snapshot(folder)
    rows = "image,labels\nmissing.jpg,scab\nalso_missing.jpg,rust\n"
    (data_copy / "train.csv").write_text(rows)  # stops the run
    args = ["cv", "--folds", "2", "--out", str(folder), "--restart", *cli_args(data_copy)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "no folds.csv), nothing removed" in captured.out
    assert captured.err.strip().splitlines() == [
        f"error: {data_copy}/train_images/missing.jpg: cannot be read to look for identical"
        " images (No such file or directory)"
    ]
    assert snapshot(folder) == before


def test_clear_cv_folder_removes_only_what_cv_wrote(tmp_path):
    folder = tmp_path / "cv"
    (folder / "fold0" / "checkpoints").mkdir(parents=True)
    for name in ("folds.csv", "oof.csv", ".oof.csv.abc.partial", "notes.txt", "fold0/oof.csv"):
        (folder / name).write_text("cv's, or mine")
    (folder / "fold0" / "checkpoints" / "last.ckpt").write_text("")
    (folder / "fold0" / "x.txt").write_text("mine")
    assert clear_cv_folder(folder) == ["fold0", "notes.txt"]
    assert sorted(p.name for p in (folder / "fold0").iterdir()) == ["x.txt"]


@pytest.mark.slow
def test_a_fold_killed_between_its_best_checkpoint_and_last_ckpt_trains_again(
    cv_run, cv_data, tmp_path, in_tmp, capsys
):
    copy = copy_cv_run(cv_run, tmp_path / "cv")
    fold = copy / "fold2"
    for name in ("checkpoints/last.ckpt", "best.ckpt", "oof.csv"):
        (fold / name).unlink()
    (copy / "cv.json").unlink()
    assert [p.name for p in (fold / "checkpoints").iterdir()] == ["best-epoch00.ckpt"]
    assert run_cv_again(copy, cv_data) == 0
    out = capsys.readouterr().out
    assert out.count("is done, skipped") == 2
    assert "fold 3/3: " in out and "training it from scratch" in out
    assert sorted(p.name for p in (fold / "checkpoints").iterdir()) == [
        "best-epoch00.ckpt",
        "last.ckpt",
    ]
    assert len(list((fold / "logs").rglob("metrics.csv"))) == 1
    assert (fold / "best.ckpt").is_file() and (fold / "oof.csv").is_file()
    assert json.loads((copy / "cv.json").read_text())["folds"] == 3


def predict_cv(
    cv_run: Path, data: Path, tta: str, probabilities: str
) -> tuple[list[str], np.ndarray]:
    """``predict --ckpt_path CV_RUN --tta TTA`` of ``data``'s test images: names, probabilities."""
    args = ["--ckpt_path", str(cv_run), "--tta", tta]
    args += ["--data.image_size", str(CV_SIZE), "--submission.probabilities_path", probabilities]
    assert main(["predict", *cli_args(data, *args)]) == 0
    classes = json.loads((cv_run / "cv.json").read_text())["classes"]
    rows = read_csv_rows(Path(probabilities))
    probs = np.array([[float(row[c]) for c in classes] for row in rows])
    return [row["image"] for row in rows], probs


@pytest.mark.slow
def test_predict_with_a_cv_folder_and_flips(cv_run, sample_dir, in_tmp, capsys):
    names, plain = predict_cv(cv_run, sample_dir, "none", "plain.csv")
    assert "3 forward passes each" in capsys.readouterr().out
    flipped_names, probs = predict_cv(cv_run, sample_dir, "flips", "p.csv")
    assert flipped_names == names
    rows = read_csv_rows(in_tmp / "submission.csv")
    assert len(rows) == 12 and all(row["labels"] for row in rows)
    out = capsys.readouterr().out
    assert "12 forward passes each" in out and "5,000 hidden test images: about" in out
    # the mean of the three folds' models over the four flipped views, not over the plain images
    assert not np.array_equal(probs, plain)
    folder, tolerance = sample_dir / "test_images", probability_tolerance()
    folds = [cv_run / f"fold{k}" / "best.ckpt" for k in range(3)]
    views = [recomputed_probabilities(f, folder, names, CV_SIZE, FLIPS) for f in folds]
    assert abs(probs - np.mean(views, 0)).max() <= tolerance
    views = [recomputed_probabilities(f, folder, names, CV_SIZE) for f in folds]
    assert abs(plain - np.mean(views, 0)).max() <= tolerance
    # the cv folder's tuned thresholds decided the labels
    report = ThresholdReport.load(cv_run / "thresholds.json")
    classes = json.loads((cv_run / "cv.json").read_text())["classes"]
    expected = decode(probs, report.thresholds_for_predict())
    assert [r["labels"] for r in rows] == [
        " ".join(c for c, on in zip(classes, row) if on) for row in expected
    ]


@pytest.mark.slow
def test_cv_refuses_a_folder_of_another_run(cv_run, cv_data, in_tmp, capsys):
    args = ["cv", "--folds", "4", "--out", str(cv_run), *cli_args(cv_data, *CV)]
    assert main(args) == 2
    assert "holds a cv run with other folds (folds=3)" in only_error_line(capsys)


def test_cv_needs_two_folds(sample_dir, in_tmp, capsys):
    assert main(["cv", "--folds", "1", "--out", "cv", *cli_args(sample_dir)]) == 2
    assert "--folds" in only_error_line(capsys)
    assert sorted(p.name for p in in_tmp.iterdir()) == []
