"""Hostile and odd images: every mode and bit depth, every EXIF orientation, files built to
exhaust memory, and the pre-flight decode that stops ``fit`` before its first epoch."""

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from PIL import Image

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.data import PlantDataModule
from {{ cookiecutter.package }}.utils.errors import DataError
from {{ cookiecutter.package }}.images import MAX_PIXELS, load_image
from {{ cookiecutter.package }}.prep import image_checks
from {{ cookiecutter.package }}.prep.image_checks import find_unreadable
from {{ cookiecutter.package }}.models import PlantClassifier

from helpers import cli_args, only_error_line
from forged_images import jpeg_claiming

# -- every mode and bit depth -------------------------------------------------------------------

RAMP16 = np.linspace(0, 65535, 256).round().astype(np.uint16).reshape(1, 256).repeat(4, axis=0)


def _pixels(path: Path) -> np.ndarray:
    image = load_image(path)
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def _assert_gray_ramp(pixels: np.ndarray) -> None:
    """Black to white, monotonic, mid-grey in the middle: the full range reached 8 bits."""
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    row = pixels[0, :, 0]
    assert row[0] == 0 and row[-1] == 255, row
    assert (np.diff(row) >= 0).all(), row
    assert abs(row[128] - 128) <= 1, row


def _png(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG file with the given header and (uncompressed) scanlines, written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("gray16.png", "I;16"),  # 16-bit grayscale PNG: came out white
        ("gray16.tif", "I;16"),
        ("gray16be.tif", "I;16B"),
        ("gray16.pgm", "I"),  # Pillow opens 16-bit PGM as 32-bit "I" on the 16-bit scale
        ("gray32.tif", "I"),
    ],
)
def test_16_bit_grayscale_spans_the_8_bit_range(tmp_path, name, mode):
    samples = RAMP16.astype(">u2") if mode == "I;16B" else RAMP16
    image = Image.fromarray(samples)
    if name == "gray32.tif":
        image = Image.fromarray(RAMP16.astype(np.int32))
    image.save(tmp_path / name)
    assert Image.open(tmp_path / name).mode == mode
    _assert_gray_ramp(_pixels(tmp_path / name))


def test_float_images_are_read_as_0_to_1(tmp_path):
    Image.fromarray((RAMP16 / 65535).astype(np.float32)).save(tmp_path / "float.tif")
    assert Image.open(tmp_path / "float.tif").mode == "F"
    _assert_gray_ramp(_pixels(tmp_path / "float.tif"))


def test_16_bit_colour_png(tmp_path):
    # Pillow cannot write 16-bit RGB, but opens it (as 8-bit RGB): written by hand here.
    rgb = np.stack([RAMP16, RAMP16, RAMP16], axis=-1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)
    (tmp_path / "rgb16.png").write_bytes(_png(256, 4, 16, 2, raw))
    _assert_gray_ramp(_pixels(tmp_path / "rgb16.png"))


def test_8_bit_gray_and_bilevel(tmp_path):
    Image.fromarray((RAMP16 // 257).astype(np.uint8)).save(tmp_path / "gray.png")
    _assert_gray_ramp(_pixels(tmp_path / "gray.png"))
    checker = Image.fromarray(np.indices((4, 4)).sum(axis=0) % 2 == 0)
    assert checker.mode == "1"
    checker.save(tmp_path / "bilevel.png")
    pixels = _pixels(tmp_path / "bilevel.png")
    assert pixels[0, 0].tolist() == [255, 255, 255] and pixels[0, 1].tolist() == [0, 0, 0]


def test_transparency_is_laid_on_white(tmp_path):
    la = Image.fromarray(np.array([[[100, 0], [100, 255], [100, 128]]], dtype=np.uint8))
    la.save(tmp_path / "la.png")
    assert _pixels(tmp_path / "la.png")[0, :, 0].tolist() == [255, 100, 177]

    rgba = Image.new("RGBA", (2, 1), (10, 200, 10, 0))
    rgba.putpixel((1, 0), (10, 200, 10, 255))
    rgba.save(tmp_path / "rgba.png")
    assert _pixels(tmp_path / "rgba.png")[0].tolist() == [[255, 255, 255], [10, 200, 10]]

    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    for name in ("palette.png", "palette.gif"):
        palette.save(tmp_path / name, transparency=0)
        assert _pixels(tmp_path / name)[0].tolist() == [[255, 255, 255], [255, 0, 0]], name

    Image.new("PA", (1, 1)).save(tmp_path / "pa.tif")
    assert Image.open(tmp_path / "pa.tif").mode == "PA"
    assert _pixels(tmp_path / "pa.tif")[0].tolist() == [[255, 255, 255]]

    keyed = Image.new("RGB", (2, 1), (1, 2, 3))
    keyed.putpixel((1, 0), (9, 9, 9))
    keyed.save(tmp_path / "keyed.png", transparency=(1, 2, 3))  # a colour-key tRNS chunk
    assert _pixels(tmp_path / "keyed.png")[0].tolist() == [[255, 255, 255], [9, 9, 9]]


@pytest.mark.parametrize(
    ("mode", "name", "colours", "expected"),
    [
        ("CMYK", "cmyk.jpg", [(255, 0, 0, 0), (0, 0, 0, 255)], [(0, 255, 255), (0, 0, 0)]),
        ("CMYK", "cmyk.tif", [(255, 0, 0, 0), (0, 0, 0, 0)], [(0, 255, 255), (255, 255, 255)]),
        ("YCbCr", "ycbcr.tif", [(255, 128, 128), (76, 85, 255)], [(255, 255, 255), (254, 0, 0)]),
        ("LAB", "lab.tif", [(255, 128, 128), (153, 168, 188)], [(255, 255, 255), (222, 113, 32)]),
    ],
)
def test_other_colour_spaces(tmp_path, mode, name, colours, expected):
    image = Image.new(mode, (16, 8), colours[0])
    image.paste(colours[1], (8, 0, 16, 8))
    image.save(tmp_path / name)
    assert Image.open(tmp_path / name).mode == mode
    pixels = _pixels(tmp_path / name)
    for got, want in zip((pixels[4, 2], pixels[4, 13]), expected):
        assert np.abs(got - np.array(want)).max() <= 4, (got, want)


# -- EXIF orientation -----------------------------------------------------------------------------


def _upright() -> np.ndarray:
    """A 128x96 image whose corners tell every rotation and mirror apart."""
    pixels = np.full((96, 128, 3), 255, dtype=np.uint8)
    pixels[:32, :32] = (255, 0, 0)  # top left red
    pixels[:32, -32:] = (0, 0, 255)  # top right blue
    pixels[-32:, :32] = (0, 160, 0)  # bottom left green
    return pixels


# How a camera stores the upright image for each EXIF orientation value (TIFF 6.0: row 0 / column
# 0 of the stored image are the visual ...): 1 top/left, 2 top/right, 3 bottom/right,
# 4 bottom/left, 5 left/top, 6 right/top, 7 right/bottom, 8 left/bottom.
STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: np.rot90(a[::-1], 1),
    8: lambda a: np.rot90(a, -1),
}


def _corners(pixels: np.ndarray) -> list[list[int]]:
    height, width = pixels.shape[:2]
    y, x = height // 6, width // 8
    points = [(y, x), (y, width - 1 - x), (height - 1 - y, x), (height - 1 - y, width - 1 - x)]
    return [pixels[p].astype(int).tolist() for p in points]


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(tmp_path, orientation, suffix):
    upright = _upright()
    stored = Image.fromarray(np.ascontiguousarray(STORED[orientation](upright)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}{suffix}"
    stored.save(path, exif=exif, quality=95)
    for min_size in (None, 24):  # full decode, and the reduced JPEG decode of training
        image = load_image(path, min_size)
        scale = 1 if min_size is None or suffix == ".png" else 4
        assert image.size == (128 // scale, 96 // scale), (orientation, min_size)
        want = _corners(upright)
        got = _corners(np.asarray(image))
        for g, w in zip(got, want):
            assert np.abs(np.array(g) - w).max() <= 40, (orientation, min_size, got, want)


# -- images built to exhaust memory ---------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A few dozen bytes that declare a ``width`` x ``height`` image."""
    path.write_bytes(_png(width, height, 8, 0, b""))
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: _png_header_only(tmp / "huge.png", 100_000, 100_000),  # Pillow: an error
        lambda tmp: jpeg_claiming(tmp / "huge.jpg", 60_000, 60_000),
        lambda tmp: _png_header_only(tmp / "over.png", 8_100, 8_000),  # just over MAX_PIXELS
    ],
)
def test_huge_declared_dimensions_are_one_data_error(tmp_path, make):
    path = make(tmp_path)
    assert path.stat().st_size < 1000
    with pytest.raises(DataError, match=f"{path.name}: .*(more than|exceeds limit)") as caught:
        load_image(path)
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match=path.name):
        image_checks.check_image_header(path)


def test_a_bomb_pillow_only_warns_about_is_refused_before_decoding(tmp_path):
    # 10000 x 10000 bilevel zeros: 30 kB on disk, 300 MB as RGB. Pillow warns (over
    # MAX_IMAGE_PIXELS, under twice that) and would then decode it.
    rows = b"\x00" * (10_000 * (1 + 10_000 // 8))
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(10_000, 10_000, 1, 0, rows))
    assert Image.MAX_IMAGE_PIXELS < 10_000 * 10_000 < 2 * Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="bomb.png: 10000x10000 pixels is more than"):
            load_image(path, min_size=64)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_the_pixel_limit_allows_competition_photos_comfortably(tmp_path):
    assert MAX_PIXELS >= 5 * 4000 * 2672
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (4000, 2672), (90, 120, 30)).save(path, quality=90)
    assert load_image(path, min_size=64).size == (4000 // 8, 2672 // 8)


# -- the pre-flight check of fit ------------------------------------------------------------------


def _validation_image(data_dir: Path) -> str:
    datamodule = PlantDataModule(str(data_dir), image_size=64, num_workers=0)
    datamodule.setup("fit")
    return datamodule.val_set.names[0]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_check_decodes_every_listed_image(data_copy):
    name = _validation_image(data_copy)
    _truncate(data_copy / "train_images" / name)
    datamodule = PlantDataModule(str(data_copy), image_size=64, num_workers=0)
    with pytest.raises(DataError, match=rf"row \d+: .*{name}: not a readable image \(.*truncated"):
        datamodule.check("fit")


def _fit(data_dir: Path) -> int:
    args = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    return main(["fit", *cli_args(data_dir, *args, "--trainer.limit_val_batches", "1")])


@pytest.mark.parametrize("damage", ["truncated", "bomb"])
def test_fit_stops_before_any_epoch_on_an_unreadable_image(data_copy, in_tmp, capsys, damage):
    name = _validation_image(data_copy)
    path = data_copy / "train_images" / name
    if damage == "truncated":
        _truncate(path)
    else:
        jpeg_claiming(path, 20_000, 20_000)
    assert _fit(data_copy) == 2
    line = only_error_line(capsys)
    assert name in line and ("truncated" in line if damage == "truncated" else "pixels" in line)
    assert sorted(p.name for p in in_tmp.iterdir()) == []  # no logs/, no checkpoints/


@pytest.mark.slow
def test_predict_names_a_bomb_among_the_test_images(
    data_copy, tmp_path, in_tmp, capsys, cheap_trainer_kwargs
):
    datamodule = PlantDataModule(str(data_copy), image_size=64, num_workers=0)
    trainer = pl.Trainer(**cheap_trainer_kwargs, max_steps=0)
    trainer.fit(PlantClassifier(classes=datamodule.classes), datamodule=datamodule)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    _png_header_only(data_copy / "test_images" / "test_0005.jpg", 30_000, 30_000)
    assert main(["predict", *cli_args(data_copy, "--ckpt_path", str(tmp_path / "model.ckpt"))]) == 2
    line = only_error_line(capsys)
    assert "test_0005.jpg: cannot decode image (Image size (900000000 pixels) exceeds" in line
    assert not (in_tmp / "submission.csv").exists()


def _count_decodes(monkeypatch) -> list[Path]:
    decoded: list[Path] = []
    real = image_checks.verify_image

    def counting(path: Path) -> str | None:
        decoded.append(path)
        return real(path)

    monkeypatch.setattr(image_checks, "verify_image", counting)
    return decoded


def test_verified_images_are_remembered_outside_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    monkeypatch.setattr(image_checks, "STAMP_MIN_FILES", 4)
    decoded = _count_decodes(monkeypatch)
    folder = tmp_path / "images"
    folder.mkdir()
    names = [f"{i}.jpg" for i in range(6)]
    for i, name in enumerate(names):
        Image.new("RGB", (40, 30), (i * 40, 90, 30)).save(folder / name)
    assert find_unreadable(folder, names) == {}
    assert len(decoded) == 6
    assert sorted(p.name for p in folder.iterdir()) == names  # nothing written beside the data
    assert image_checks.stamp_path(folder).is_file()

    decoded.clear()
    assert find_unreadable(folder, names) == {}
    assert decoded == []  # the second run pays nothing

    Image.new("RGB", (40, 30), (1, 2, 3)).save(folder / "2.jpg")  # changed: decoded again
    _truncate(folder / "4.jpg")
    failures = find_unreadable(folder, names)
    assert sorted(p.name for p in decoded) == ["2.jpg", "4.jpg"]
    assert list(failures) == ["4.jpg"] and "4.jpg: not a readable image" in failures["4.jpg"]

    decoded.clear()
    assert list(find_unreadable(folder, names)) == ["4.jpg"]
    assert [p.name for p in decoded] == ["4.jpg"]  # a failed file is never remembered as good


def test_identical_images_are_found_again_without_reading_unchanged_files(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    monkeypatch.setattr(image_checks, "STAMP_MIN_FILES", 4)
    read: list[str] = []
    real = image_checks.readable_digest
    monkeypatch.setattr(image_checks, "readable_digest", lambda p: read.append(p.name) or real(p))
    folder = tmp_path / "images"
    folder.mkdir()
    names = [f"{i}.jpg" for i in range(6)]
    for i, name in enumerate(names):
        Image.new("RGB", (40, 30), (i * 40, 90, 30)).save(folder / name)
    (folder / "5.jpg").write_bytes((folder / "1.jpg").read_bytes())
    assert image_checks.duplicate_groups(folder, names) == [["1.jpg", "5.jpg"]]
    assert sorted(read) == names and sorted(p.name for p in folder.iterdir()) == names

    read.clear()
    assert image_checks.duplicate_groups(folder, names) == [["1.jpg", "5.jpg"]]
    assert read == []  # a second fit or cv reads no unchanged file

    (folder / "3.jpg").write_bytes((folder / "0.jpg").read_bytes())  # changed: read again
    assert image_checks.duplicate_groups(folder, names) == [["0.jpg", "3.jpg"], ["1.jpg", "5.jpg"]]
    assert read == ["3.jpg"]


def test_small_folders_leave_no_stamp(data_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    PlantDataModule(str(data_copy), image_size=64, num_workers=0).check("fit")
    assert not (tmp_path / "user-cache").exists()
