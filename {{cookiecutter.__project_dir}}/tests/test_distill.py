"""``distill`` (out-of-fold self-distillation) and blends of cv folders in ``predict`` and
``package``: one tiny teacher cv run (2 folds, 1 short epoch, 64 px) and its student, shared by
the module; each check recomputes from the files, not through the code paths under test."""

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.data import PlantDataModule
from {{ cookiecutter.package }}.kaggle.manifest import read_manifest
from {{ cookiecutter.package }}.kaggle.offline_predict import predict_folder, predict_with_manifest
from {{ cookiecutter.package }}.labels import encode_labels, label_vocabulary, read_train_csv
from {{ cookiecutter.package }}.metrics import decode
from {{ cookiecutter.package }}.reports import ledger
from {{ cookiecutter.package }}.thresholds import choose_thresholds

from cv_checks import copy_cv_run
from fake_runs import package
from helpers import assert_nothing_written, cli_args, only_error_line, read_csv_rows

TEACHER = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
ALPHA, BLEND_WEIGHT, STUDENT_SEED = 0.3, 0.25, 7
# Probabilities files hold 6 decimals.
ROUNDING = 2e-6


def truth(data: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Images, classes and multi-hot labels of ``data``'s ``train.csv``."""
    samples = read_train_csv(data / "train.csv")
    classes = label_vocabulary(samples)
    return [s.image for s in samples], classes, encode_labels(samples, classes).astype(np.int64)


def probabilities(path: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """Image names and class columns of a probabilities file (``oof.csv`` too)."""
    rows = read_csv_rows(path)
    return [r["image"] for r in rows], np.array([[float(r[c]) for c in classes] for r in rows])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, sample_dir) -> Path:
    """A 2-fold cv run of the sample set, one short epoch per fold (read-only)."""
    work = tmp_path_factory.mktemp("teacher")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        assert main(["cv", "--folds", "2", "--out", "cv", *cli_args(sample_dir, *TEACHER)]) == 0
    return work / "cv"


@pytest.fixture(scope="module")
def student(teacher) -> tuple[Path, str]:
    """The teacher's student (another fold seed among its fit flags) and what distill printed."""
    out = teacher.parent / "student"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        args = [str(teacher), "--out", str(out), "--alpha", str(ALPHA)]
        args += ["--blend_weight", str(BLEND_WEIGHT), "--data.seed", str(STUDENT_SEED)]
        assert main(["distill", *args]) == 0
    return out, printed.getvalue()


@pytest.mark.slow
def test_soft_targets_are_the_formula_row_by_row(teacher, student, sample_dir):
    out, _ = student
    images, classes, labels = truth(sample_dir)
    names, oof = probabilities(teacher / "oof.csv", classes)
    assert names == images
    soft_names, soft = probabilities(out / "soft_targets.csv", classes)
    assert soft_names == images
    assert abs(soft - (ALPHA * oof + (1 - ALPHA) * labels)).max() <= ROUNDING
    # each fold's model trained on them: the data settings its checkpoint saved
    for k in range(2):
        saved = torch_load(out / f"fold{k}" / "best.ckpt")["datamodule_hyper_parameters"]
        assert Path(saved["soft_targets"]) == out / "soft_targets.csv"


def torch_load(path: Path) -> dict:
    """A checkpoint's contents (plain data and tensors)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def test_the_training_set_reads_soft_targets_and_validation_the_labels(sample_dir, tmp_path):
    images, classes, labels = truth(sample_dir)
    soft = np.random.default_rng(0).uniform(size=labels.shape).round(6)
    lines = ["image," + ",".join(classes)]
    lines += [f"{name}," + ",".join(map(str, row)) for name, row in zip(images, soft)]
    shuffled = [lines[0], *reversed(lines[1:])]  # rows are matched by image, not by order
    (tmp_path / "soft.csv").write_text("\n".join(shuffled) + "\n")
    folds = [f"{name},{i % 2}" for i, name in enumerate(images)]
    (tmp_path / "folds.csv").write_text("image,fold\n" + "\n".join(folds) + "\n")
    data = PlantDataModule(
        str(sample_dir),
        image_size=32,
        num_workers=0,
        split_file=str(tmp_path / "folds.csv"),
        soft_targets=str(tmp_path / "soft.csv"),
    )
    data.setup("fit")
    train, val = np.arange(len(images)) % 2 == 1, np.arange(len(images)) % 2 == 0
    assert np.allclose(data.train_set.targets.numpy(), soft[train], atol=1e-6)
    assert np.array_equal(data.val_set.targets.numpy(), labels[val])


@pytest.mark.slow
def test_distill_records_the_students_pooled_oof_score_in_the_ledger(student):
    out, printed = student
    (row,) = [row for row in ledger.read_ledger() if row["out"] == str(out)]
    summary = json.loads((out / "cv.json").read_text())
    assert row["command"] == "distill" and row["config"] == str(out / "fit_config.yaml")
    assert float(row["cv"]) == pytest.approx(summary[f"oof_{summary['metric']}_tuned"], abs=1e-4)
    assert f"distill run {row['run_id']} recorded" in printed


@pytest.mark.slow
def test_the_students_folds_are_the_teachers_whatever_its_fit_flags(teacher, student):
    out, _ = student
    assert (out / "folds.csv").read_bytes() == (teacher / "folds.csv").read_bytes()
    assert read_csv_rows(out / "oof.csv") != read_csv_rows(teacher / "oof.csv")
    teacher_folds = [row["fold"] for row in read_csv_rows(teacher / "oof.csv")]
    assert [row["fold"] for row in read_csv_rows(out / "oof.csv")] == teacher_folds
    settings = (out / "fit_config.yaml").read_text()
    assert f"seed: {STUDENT_SEED}" in settings  # the fit flag changed the config, not the split
    for name in ("thresholds.json", "cv.json", "plan.json", "fold0/best.ckpt", "fold1/best.ckpt"):
        assert (out / name).is_file()


@pytest.mark.slow
def test_distill_prints_the_pooled_oof_scores_of_teacher_student_and_blend(
    teacher, student, sample_dir
):
    out, printed = student
    _, classes, labels = truth(sample_dir)
    default = json.loads((teacher / "cv.json").read_text())["default_threshold"]
    teacher_oof = probabilities(teacher / "oof.csv", classes)[1]
    student_oof = probabilities(out / "oof.csv", classes)[1]
    blend_oof = (1 - BLEND_WEIGHT) * teacher_oof + BLEND_WEIGHT * student_oof
    expected = {}
    for name, oof in (("teacher", teacher_oof), ("student", student_oof), ("blend", blend_oof)):
        report = choose_thresholds(oof, labels, default, classes)
        expected[name] = [f"{report.default_score:.4f}", f"{report.chosen_score:.4f}"]
    shown = {}
    for line in printed.splitlines():
        found = re.match(r"(teacher|student|blend)\b.*?\s(\d\.\d{4})\s+(\d\.\d{4})$", line)
        if found:
            shown[found[1]] = [found[2], found[3]]
    assert shown == expected
    recorded = json.loads((out / "distill.json").read_text())
    assert recorded["alpha"] == ALPHA and recorded["blend_weight"] == BLEND_WEIGHT
    assert f"{recorded['scores']['blend']['oof_f1_tuned']:.4f}" == expected["blend"][1]


def predict_probabilities(source: str, data: Path, out: Path, *extra: str) -> np.ndarray:
    """``predict --ckpt_path SOURCE [extra]`` of ``data``'s test images: the probabilities."""
    args = ["--ckpt_path", source, "--submission.path", str(out / "submission.csv")]
    args += ["--submission.probabilities_path", str(out / "probs.csv"), *extra]
    assert main(["predict", *cli_args(data, *args)]) == 0
    classes = label_vocabulary(read_train_csv(data / "train.csv"))
    return probabilities(out / "probs.csv", classes)[1]


def blend_thresholds(teacher: Path, out: Path, data: Path, weights: tuple[float, float]):
    """The thresholds tuned on the weighted mean of the two folders' OOF, recomputed."""
    _, classes, labels = truth(data)
    oof = sum(w * probabilities(f / "oof.csv", classes)[1] for f, w in zip((teacher, out), weights))
    default = json.loads((teacher / "cv.json").read_text())["default_threshold"]
    return choose_thresholds(oof, labels, default, classes).thresholds_for_predict()


@pytest.mark.slow
def test_predict_blends_cv_folders_by_weight_at_the_blends_thresholds(
    teacher, student, sample_dir, tmp_path
):
    out, _ = student
    alone = [predict_probabilities(str(f), sample_dir, tmp_path) for f in (teacher, out)]
    assert abs(alone[0] - alone[1]).max() > 1e-3  # the two folders disagree: weights show
    blended = predict_probabilities(f"{teacher},{out}", sample_dir, tmp_path, "--blend", "0.7,0.3")
    assert abs(blended - (0.7 * alone[0] + 0.3 * alone[1])).max() <= 1e-4
    rows = read_csv_rows(tmp_path / "submission.csv")
    classes = label_vocabulary(read_train_csv(sample_dir / "train.csv"))
    chosen = decode(blended, blend_thresholds(teacher, out, sample_dir, (0.7, 0.3)))
    assert [r["labels"] for r in rows] == [
        " ".join(c for c, on in zip(classes, row) if on) for row in chosen
    ]


@pytest.mark.slow
def test_the_offline_package_blends_by_the_same_weights(teacher, student, sample_dir, tmp_path):
    out, _ = student
    code, _ = package(
        f"{teacher},{out}", str(tmp_path / "bundle"), "--user", "me", "--blend", "3,1"
    )
    assert code == 0
    weights = tmp_path / "bundle" / "weights"
    manifest = read_manifest(weights / "manifest.json")
    assert manifest.threshold == blend_thresholds(teacher, out, sample_dir, (0.75, 0.25))
    images, size = sample_dir / "test_images", manifest.image_size
    alone = []
    for member in ("blend0", "blend1"):
        files = sorted(weights.glob(f"{member}-fold*.ckpt"))
        assert len(files) == 2
        probs = tmp_path / f"{member}.csv"
        predict_folder(files, images, tmp_path / "s.csv", size, probabilities=probs, devices=1)
        alone.append(probabilities(probs, manifest.classes)[1])
    assert abs(alone[0] - alone[1]).max() > 1e-3
    probs = tmp_path / "blend.csv"
    predict_with_manifest(
        weights / "manifest.json", images, tmp_path / "s.csv", probabilities=probs
    )
    blended = probabilities(probs, manifest.classes)[1]
    assert abs(blended - (0.75 * alone[0] + 0.25 * alone[1])).max() <= 1e-4


def test_distill_refuses_an_alpha_outside_0_1(tmp_path, in_tmp, capsys):
    assert main(["distill", str(tmp_path), "--out", "student", "--alpha", "1.5"]) == 2
    assert "--alpha" in only_error_line(capsys)
    assert_nothing_written(in_tmp)


@pytest.mark.slow
def test_distill_refuses_another_data_set_or_vocabulary_writing_nothing(
    teacher, data_copy, in_tmp, capsys
):
    rows = (data_copy / "train.csv").read_text().splitlines()
    (data_copy / "train.csv").write_text("\n".join(rows[:-1]) + "\n")  # one image fewer
    args = ["distill", str(teacher), "--out", "student", "--data.data_dir", str(data_copy)]
    assert main(args) == 2
    assert "trained on other images" in only_error_line(capsys)
    renamed = [rows[0], *(row.replace("rust", "rusty") for row in rows[1:])]
    (data_copy / "train.csv").write_text("\n".join(renamed) + "\n")
    assert main(args) == 2
    assert "trained on the labels" in only_error_line(capsys)
    assert_nothing_written(in_tmp)


@pytest.mark.slow
def test_distill_refuses_a_teacher_with_a_missing_fold(teacher, in_tmp, capsys):
    copy = copy_cv_run(teacher, in_tmp / "teacher")
    (copy / "fold1" / "best.ckpt").unlink()
    assert main(["distill", str(copy), "--out", "student"]) == 2
    assert "fold(s) 1 have no best.ckpt" in only_error_line(capsys)
    assert not (in_tmp / "student").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "weights, refusal",
    [
        ("1", "1 weights for 2 folders"),
        ("1,2,3", "3 weights for 2 folders"),
        ("0.5,-0.5", "'-0.5' is not a weight"),
        ("0,0", "the weights are all zero"),
    ],
)
def test_blend_weights_that_do_not_match_the_folders_are_refused(
    teacher, student, sample_dir, in_tmp, capsys, weights, refusal
):
    sources = f"{teacher},{student[0]}"
    args = ["--ckpt_path", sources, "--blend", weights]
    assert main(["predict", *cli_args(sample_dir, *args)]) == 2
    assert refusal in only_error_line(capsys)
    code, _ = package(sources, str(in_tmp / "bundle"), "--user", "me", "--blend", weights)
    assert code == 2
    assert refusal in only_error_line(capsys)
    assert_nothing_written(in_tmp)


@pytest.mark.slow
def test_a_blend_of_cv_folders_of_other_images_is_refused(
    teacher, student, sample_dir, in_tmp, capsys
):
    other = copy_cv_run(student[0], in_tmp / "other")
    rows = (other / "oof.csv").read_text().splitlines()
    (other / "oof.csv").write_text("\n".join(rows[:-1]) + "\n")
    args = ["--ckpt_path", f"{teacher},{other}", "--submission.path", "submission.csv"]
    assert main(["predict", *cli_args(sample_dir, *args)]) == 2
    assert "a blend needs cv folders of one data set" in only_error_line(capsys)
    assert sorted(p.name for p in in_tmp.iterdir()) == ["other"]
