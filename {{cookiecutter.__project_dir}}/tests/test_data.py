"""CSV parsing, label encoding, the stratified split, image decoding and the datamodule."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.data import PlantDataModule, build_transforms
from {{ cookiecutter.package }}.utils.errors import DataError
from {{ cookiecutter.package }}.images import load_image
from {{ cookiecutter.package }}.folds import assign_folds, validation_split
from {{ cookiecutter.package }}.prep.image_checks import duplicate_groups
from {{ cookiecutter.package }}.labels import Sample, encode_labels, label_vocabulary, read_train_csv
from {{ cookiecutter.package }}.models import PlantClassifier
from {{ cookiecutter.package }}.utils import hardware
from {{ cookiecutter.package }}.workflows import cv
from {{ cookiecutter.package }}.workflows.fit_jobs import parse_fit_config

from helpers import QUICK_EPOCH, cli_args, read_csv_rows
from cv_checks import add_copies

PP2021_LABELS = [
    "complex",
    "frog_eye_leaf_spot",
    "healthy",
    "powdery_mildew",
    "rust",
    "scab",
]


def test_vocabulary_comes_from_the_csv_sorted(sample_dir):
    samples = read_train_csv(sample_dir / "train.csv")
    assert label_vocabulary(samples) == PP2021_LABELS
    other = [Sample("a.jpg", ("zebra",)), Sample("b.jpg", ("apple", "zebra"))]
    assert label_vocabulary(other) == ["apple", "zebra"]


def test_encode_labels_multi_hot():
    samples = [Sample("a.jpg", ("scab", "rust")), Sample("b.jpg", ("healthy",))]
    targets = encode_labels(samples, ["healthy", "rust", "scab"])
    assert targets.tolist() == [[0, 1, 1], [1, 0, 0]]
    with pytest.raises(DataError, match="b.jpg"):
        encode_labels(samples, ["rust", "scab"])


def test_split_is_stratified_seeded_and_k_fold_ready(sample_dir):
    samples = read_train_csv(sample_dir / "train.csv")
    targets = encode_labels(samples, label_vocabulary(samples))
    names = [sample.image for sample in samples]
    train_idx, val_idx = validation_split(names, targets, 0.2, fold=0, seed=1)
    assert set(train_idx).isdisjoint(val_idx)
    assert len(train_idx) + len(val_idx) == len(samples)
    again = validation_split(names, targets, 0.2, fold=0, seed=1)
    assert np.array_equal(val_idx, again[1])
    assert not np.array_equal(val_idx, validation_split(names, targets, 0.2, fold=0, seed=2)[1])
    # every label, rare ones included, is present in validation in about the right share
    share = targets[val_idx].sum(0) / targets.sum(0)
    assert (targets[val_idx].sum(0) > 0).all()
    assert np.all(np.abs(share - 0.2) < 0.12), share
    splits = [validation_split(names, targets, 0.2, fold=k, seed=1) for k in range(5)]
    folds = [val for _, val in splits]
    # folds 0..4 partition the images: each is validated exactly once, trained on otherwise
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(samples)))
    for train, val in splits:
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(samples)))


def _validation_images(data_dir: Path, **split) -> list[str]:
    dm = PlantDataModule(str(data_dir), image_size=32, num_workers=0, **split)
    dm.setup("fit")
    return dm.val_set.names


def test_datamodule_seed_and_fold_choose_the_validation_set(sample_dir):
    chosen = _validation_images(sample_dir, seed=1, fold=0)
    assert _validation_images(sample_dir, seed=1, fold=0) == chosen
    assert _validation_images(sample_dir, seed=2, fold=0) != chosen
    assert set(_validation_images(sample_dir, seed=1, fold=1)).isdisjoint(chosen)


def test_fit_keeps_identical_images_on_one_side_and_validates_on_a_cv_fold(data_copy):
    originals = [sample.image for sample in read_train_csv(data_copy / "train.csv")][:40]
    add_copies(data_copy, {f"copy_{name}": (name, None) for name in originals})
    samples = read_train_csv(data_copy / "train.csv")
    images = [sample.image for sample in samples]
    targets = encode_labels(samples, label_vocabulary(samples))
    groups = duplicate_groups(data_copy / "train_images", images)
    assert len(groups) == len(originals)
    settings = parse_fit_config(cli_args(data_copy, "--data.num_workers", "0")).data.as_dict()
    n_folds = round(1 / settings["val_fraction"])
    validated: set[str] = set()  # with the settings of fit
    for seed, fold in [(settings["seed"], settings["fold"]), (1, 1), (2, n_folds - 1)]:
        datamodule = PlantDataModule(**{**settings, "seed": seed, "fold": fold})  # as fit does
        datamodule.setup("fit")
        val = set(datamodule.val_set.names)
        assert set(datamodule.train_set.names) == set(images) - val
        assert [group for group in groups if 0 < len(val & set(group)) < len(group)] == []
        plan = assign_folds(images, targets, n_folds, seed, groups)  # cv --folds n_folds
        assert val == {name for name, k in zip(plan.images, plan.folds) if k == fold}
        validated = validated or val
    cache = data_copy.parent / "cache"
    assert main(["prepare", str(data_copy), str(cache), "--size", "64"]) == 0
    shutil.rmtree(data_copy / "train_images")  # groups now come from the cache's manifest
    cached = PlantDataModule(**{**settings, "cache_dir": str(cache)})
    cached.setup("fit")
    assert set(cached.val_set.names) == validated


SMALL = ["--data.image_size", "32", "--data.batch_size", "16"]


@pytest.mark.slow
def test_unset_loader_workers_mean_auto_in_fit_and_in_cv(sample_dir, in_tmp, monkeypatch):
    monkeypatch.setattr(hardware, "available_cores", lambda: 2)  # auto: 1 loader worker
    used: list[int] = []
    real = cv.predict_images

    def recording(*args, **kwargs):
        used.append(args[5])  # num_workers
        return real(*args, **kwargs)

    monkeypatch.setattr(cv, "predict_images", recording)
    flags = ["--folds", "2", "--out", "cv", *cli_args(sample_dir, *QUICK_EPOCH, *SMALL)]
    assert main(["cv", *flags, "--data.num_workers", "null"]) == 0
    assert PlantDataModule(str(sample_dir)).num_workers == 1
    assert used == [1, 1]


@pytest.mark.parametrize(
    ("val_fraction", "fold", "message"),
    [(0.0, 0, "val_fraction"), (0.9, 0, "val_fraction"), (0.25, 4, "fold=4")],
)
def test_split_rejects_bad_settings(val_fraction, fold, message):
    with pytest.raises(DataError, match=message):
        validation_split(list("abcdefghijkl"), np.eye(4).repeat(3, axis=0), val_fraction, fold)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("image,label\na.jpg,scab\n", "missing column.*labels"),
        ("image,labels\n", "no data rows"),
        ("image,labels\na.jpg,scab\nb.jpg,\n", "row 3 .b.jpg.: empty 'labels'"),
        ("image,labels\n,scab\n", "row 2: empty 'image'"),
        ("image,labels\na.jpg,scab\na.jpg,rust\n", "row 3: image a.jpg is listed twice"),
        ('image,labels\na.jpg,scab\nb.jpg,"rust,scab"\n', "row 3 .b.jpg.: label 'rust,scab'"),
        ("image,labels\na.jpg,scab;rust\n", "row 2 .a.jpg.: label 'scab;rust' holds a separator"),
        ("image,labels\na.jpg,scab\nb.jpg,rust Scab\n", "row 3 .b.jpg.: label 'Scab' differs"),
        ("image,labels\na.jpg,Rust\nb.jpg, RUST \n", "'RUST' differs only by case from 'Rust'"),
        ("image,labels\na.jpg,scab\nb.jpg,\uff53\uff43\uff41\uff42\n", "label '\\\\uff53.*row 2"),
        ("image,labels\na.jpg,Scab\u00ad rust\nb.jpg,scab\n", "'scab' differs from 'Scab\\\\xad'"),
        ("image,labels\na.jpg,scab\nb.jpg,scab\n", "every row has the one label 'scab'"),
    ],
)
def test_bad_csv_names_file_and_row(tmp_path, content, message):
    path = _write(tmp_path / "train.csv", content)
    with pytest.raises(DataError, match=message) as error:
        read_train_csv(path)
    assert str(path) in str(error.value)


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match="train.csv: file not found"):
        read_train_csv(tmp_path / "train.csv")


def test_csv_with_bom_and_spaces(tmp_path):
    path = _write(tmp_path / "train.csv", "\ufeffimage , labels\n a.jpg ,scab  rust\n")
    assert read_train_csv(path) == [Sample("a.jpg", ("scab", "rust"))]


def test_images_of_every_mode_become_rgb(tmp_path):
    modes = {"L": 128, "RGBA": (10, 200, 10, 0), "P": 3, "CMYK": (0, 0, 0, 0), "I;16": 1000}
    for mode, colour in modes.items():
        path = tmp_path / f"{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
        Image.new(mode, (20, 10), colour).save(path)
        image = load_image(path)
        assert image.mode == "RGB" and image.size == (20, 10), mode
    # a fully transparent RGBA pixel is laid on white, not black
    assert load_image(tmp_path / "RGBA.png").getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (60, 30), (200, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (30, 60)
    assert load_image(path, min_size=8).size[1] > load_image(path, min_size=8).size[0]


def test_jpeg_is_decoded_near_the_requested_size(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1200), (30, 120, 40)).save(path, quality=90)
    small = load_image(path, min_size=224)
    assert min(small.size) >= 224
    assert small.size[0] <= 500  # 2000 / 4: DCT scaling did the work
    assert load_image(path).size == (2000, 1200)


def test_corrupt_and_missing_images_are_named(tmp_path):
    bad = _write(tmp_path / "bad.jpg", "not an image")
    with pytest.raises(DataError, match="bad.jpg: cannot decode"):
        load_image(bad)
    with pytest.raises(DataError, match="gone.jpg: image file not found"):
        load_image(tmp_path / "gone.jpg")
    good = tmp_path / "cut.jpg"
    Image.effect_noise((200, 200), 60).convert("RGB").save(good, quality=95)
    good.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(DataError, match="cut.jpg"):
        load_image(good)


def test_train_and_val_transforms_give_the_same_size(sample_dir):
    image = load_image(next((sample_dir / "train_images").iterdir()))
    train = build_transforms(80, train=True)(image)
    val = build_transforms(80, train=False)(image)
    assert train.shape == val.shape == (3, 80, 80)
    assert train.dtype == val.dtype == torch.uint8


@pytest.mark.parametrize(
    ("backbone", "expected"),
    [
        # torchvision: ImageNet's statistics, (1 - 0.485) / 0.229, (0 - 0.456) / 0.224, ...
        ("resnet18", [2.248908, -2.035714, 0.426492]),
        # timm: those of the weights it publishes for the model (0.5 and 0.5 for test_convnext)
        ("timm/test_convnext", [1.0, -1.0, 0.003922]),
    ],
)
def test_a_uniform_colour_is_normalised_with_the_backbone_s_statistics(backbone, expected):
    colour = (255, 0, 128)
    pixels = build_transforms(64, train=False)(Image.new("RGB", (50, 30), colour))
    assert [pixels[c].unique().tolist() for c in range(3)] == [[255], [0], [128]]
    model = PlantClassifier(backbone=backbone, classes=["a", "b"])
    normalised = model.normalize(pixels[None])
    assert normalised.dtype == torch.float32 and normalised.shape == (1, 3, 64, 64)
    target = torch.tensor(expected).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    assert torch.allclose(normalised, target, atol=1e-5)
    assert model.normalize(normalised) is normalised  # float images: normalised already
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(pixels[None]), model(normalised))


def test_datamodule_batches(sample_dir):
    dm = PlantDataModule(str(sample_dir), image_size=48, batch_size=8, num_workers=0)
    assert dm.classes == PP2021_LABELS
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 48, 48)
    assert batch["target"].shape == (8, 6)
    assert set(batch["target"].sum(1).tolist()) <= {1.0, 2.0, 3.0}
    assert len(dm.train_set) + len(dm.val_set) == len(dm.samples)
    dm.setup("predict")
    predict = next(iter(dm.predict_dataloader()))
    assert predict["id"][0] == "test_0000.jpg"
    assert "target" not in predict


def _break(data: Path, case: str) -> str:
    """Damage the copied sample set one way; return the text the error must contain."""
    if case == "missing_dir":
        return str(data / "nowhere")
    if case == "missing_csv":
        (data / "train.csv").unlink()
        return "train.csv: file not found"
    if case == "empty_csv":
        _write(data / "train.csv", "")
        return "train.csv: file is empty"
    if case == "wrong_columns":
        _write(data / "train.csv", "id,label\ntrain_0000.jpg,scab\n")
        return "missing column(s) image, labels"
    if case == "row_without_labels":
        rows = (data / "train.csv").read_text().splitlines()
        rows[5] = rows[5].split(",")[0] + ","
        _write(data / "train.csv", "\n".join(rows) + "\n")
        return "row 6 (train_0004.jpg): empty 'labels'"
    if case == "image_missing":
        (data / "train_images" / "train_0007.jpg").unlink()
        return "row 9: image train_0007.jpg not found"
    if case == "corrupt_image":
        _write(data / "train_images" / "train_0003.jpg", "garbage")
        return "train_0003.jpg: not a readable image"
    raise AssertionError(case)


BAD_TRAIN_DATA = [
    "missing_dir",
    "missing_csv",
    "empty_csv",
    "wrong_columns",
    "row_without_labels",
    "image_missing",
    "corrupt_image",
]


@pytest.mark.parametrize("case", BAD_TRAIN_DATA)
def test_bad_training_data_fails_before_training(data_copy, case):
    expected = _break(data_copy, case)
    data_dir = expected if case == "missing_dir" else str(data_copy)
    dm = PlantDataModule(data_dir, num_workers=0)
    with pytest.raises(DataError) as error:
        dm.check("fit")
    assert expected in str(error.value)


def test_empty_test_folder(data_copy):
    for image in (data_copy / "test_images").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="test_images: no images found"):
        PlantDataModule(str(data_copy), num_workers=0).check("predict")


# Divides neither the 35 validation images of fold 0 nor the 12 test images: each last batch
# is partial.
PARTIAL_BATCH = 8


def test_a_partial_last_validation_batch_is_scored(sample_dir, in_tmp, trained, monkeypatch):
    dm = PlantDataModule(str(sample_dir), val_fraction=0.2, fold=0, seed=42)  # the baseline's
    dm.setup("fit")
    assert len(dm.val_set) % PARTIAL_BATCH
    scored = []
    gather = PlantClassifier._gathered_outputs

    def spy(self):
        probs, truth = gather(self)
        scored.append(len(probs))
        return probs, truth

    monkeypatch.setattr(PlantClassifier, "_gathered_outputs", spy)
    args = ["--ckpt_path", str(trained), "--data.batch_size", str(PARTIAL_BATCH)]
    args += ["--trainer.limit_val_batches", "1.0"]
    assert main(["validate", *cli_args(sample_dir, *args)]) == 0
    assert scored == [len(dm.val_set)]


def test_a_partial_last_predict_batch_is_written(sample_dir, in_tmp, trained):
    test_images = sorted(p.name for p in (sample_dir / "test_images").iterdir())
    assert len(test_images) % PARTIAL_BATCH
    args = ["--ckpt_path", str(trained), "--data.batch_size", str(PARTIAL_BATCH)]
    assert main(["predict", *cli_args(sample_dir, *args)]) == 0
    assert [row["image"] for row in read_csv_rows(in_tmp / "submission.csv")] == test_images
