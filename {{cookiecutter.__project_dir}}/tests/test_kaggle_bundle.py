"""``package``: the Kaggle bundle (two datasets + an offline notebook), its checks and ``--push``.

The slow tests run the produced ``inference.ipynb`` in a real Jupyter kernel whose Python does
not have the project installed, cannot reach a package index and cannot import ``jsonargparse``
or ``iterstrat``, against a temporary folder laid out like ``/kaggle/input``; the submission it
writes must equal what ``predict`` writes for the same checkpoint(s).
"""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package }}.kaggle.manifest import read_manifest
from {{ cookiecutter.package }}.kaggle.offline_predict import predict_with_manifest
from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.utils.errors import UserError
from {{ cookiecutter.package }}.predict import inference
from {{ cookiecutter.package }}.predict.inference import load_classifier
from {{ cookiecutter.package }}.kaggle.push import BASE_SLUG as BASE, COMPETITION

from helpers import CONFIG_DIR, cli_args, only_error_line, read_csv_rows
from fake_runs import CLASSES, fake_checkpoint, fake_cv_folder, package

PACKAGE = "{{ cookiecutter.package }}"
KAGGLE_IMAGE = Path(__file__).parent / "kaggle-image-requirements.txt"


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[Path, str]:
    """A bundle of one (untrained) checkpoint; the folder and what ``package`` printed."""
    work = tmp_path_factory.mktemp("bundle")
    ckpt = fake_checkpoint(work / "run" / "last.ckpt")
    code, printed = package(str(ckpt), str(work / "out"), "--user", "tester")
    assert code == 0
    return work / "out", printed


@pytest.mark.slow
def test_metadata_has_the_required_fields_and_consistent_ids(bundle):
    out, _ = bundle
    code = read_json(out / "code" / "dataset-metadata.json")
    weights = read_json(out / "weights" / "dataset-metadata.json")
    kernel = read_json(out / "kernel" / "kernel-metadata.json")
    for meta, suffix in ((code, "code"), (weights, "weights")):
        assert meta["id"] == f"tester/{BASE}-{suffix}"
        assert meta["title"] and meta["licenses"] and all("name" in lic for lic in meta["licenses"])
    assert kernel["id"] == f"tester/{BASE}-submission"
    assert kernel["kernel_type"] == "notebook" and kernel["language"] == "python"
    assert kernel["enable_internet"] is False and kernel["enable_gpu"] is True
    assert kernel["machine_shape"] == "NvidiaTeslaT4"
    assert kernel["competition_sources"] == [COMPETITION]
    assert kernel["dataset_sources"] == [code["id"], weights["id"]]
    assert (out / "kernel" / kernel["code_file"]).is_file()
    assert len(list((out / "code").glob("*.whl"))) == 1


def test_the_notebook_is_valid_and_names_the_files_of_the_bundle(bundle):
    nbformat = pytest.importorskip("nbformat")
    out, _ = bundle
    notebook = nbformat.read(out / "kernel" / "inference.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    wheel = next((out / "code").glob("*.whl")).name
    assert f"WHEEL = {wheel!r}" in code
    assert f"CODE_DATASET = 'tester/{BASE}-code'" in code
    assert f"WEIGHTS_DATASET = 'tester/{BASE}-weights'" in code
    assert f"COMPETITION = {COMPETITION!r}" in code
    assert '"--no-index", "--no-deps"' in code
    assert f"from {PACKAGE}.kaggle.offline_predict import predict_with_manifest" in code


def test_weights_are_stripped_to_what_inference_reads(bundle):
    out, printed = bundle
    stripped = out / "weights" / "model.ckpt"
    kept = torch.load(stripped, weights_only=True)
    assert "optimizer_states" not in kept and "loops" not in kept
    model, data = load_classifier(stripped)
    assert model.classes == CLASSES and data["image_size"] == 32
    assert "-> weights/model.ckpt" in printed and " MB" in printed
    original = out.parent / "run" / "last.ckpt"
    assert stripped.stat().st_size < original.stat().st_size * 0.6
    manifest = read_manifest(out / "weights" / "manifest.json")
    assert manifest.classes == CLASSES and manifest.image_size == 32
    assert manifest.checkpoints == [stripped] and manifest.tta == "none"
    assert manifest.threshold == 0.5 and manifest.batch_size == 4
    assert "kaggle datasets create -p" in printed and "kaggle kernels push -p" in printed


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"format": 2}, "not a manifest of format 1"),
        ({"checkpoints": "model.ckpt"}, "'checkpoints' must be a list"),
        ({"classes": []}, "'classes' must list one name or more"),
        ({"tta": "rot90"}, "'tta' must be one of none, hflip, flips"),
        ({"image_size": 0}, "'image_size' must be at least 1"),
        ({"batch_size": True}, "'batch_size' must be a number"),
        ({"threshold": [0.5]}, rf"'threshold' must be a number in \[0, 1\] or {len(CLASSES)} of"),
        ({"threshold": 1.5}, "'threshold' must be a number in"),
    ],
)
def test_the_notebook_refuses_a_damaged_manifest_naming_the_field(bundle, tmp_path, edit, message):
    weights = Path(shutil.copytree(bundle[0] / "weights", tmp_path / "weights"))
    manifest = weights / "manifest.json"
    manifest.write_text(json.dumps({**read_json(manifest), **edit}), encoding="utf-8")
    out = tmp_path / "submission.csv"
    with pytest.raises(UserError, match=message) as refused:
        predict_with_manifest(manifest, tmp_path / "test_images", out)
    assert str(refused.value).startswith(f"{manifest}: not a valid bundle manifest (")
    assert "\n" not in str(refused.value) and not out.exists()


def test_the_threshold_follows_predicts_precedence(tmp_path, capsys):
    ckpt = fake_checkpoint(tmp_path / "m.ckpt")  # saved with the default threshold, 0.5
    assert package(str(ckpt), str(tmp_path / "a"), "--user", "u")[0] == 0
    saved = read_json(tmp_path / "a" / "weights" / "manifest.json")
    assert (saved["threshold"], saved["threshold_from"]) == (
        0.5,
        "the checkpoint's model.threshold",
    )
    code, printed = package(
        str(ckpt), str(tmp_path / "b"), "--user", "u", "--model.threshold", "0.5"
    )
    assert code == 0 and "decision threshold 0.5: --model.threshold on the command line" in printed
    flag = read_json(tmp_path / "b" / "weights" / "manifest.json")
    assert flag["threshold_from"] == "--model.threshold on the command line"
    code, _ = package(str(ckpt), str(tmp_path / "c"), "--user", "u", "--model.threshold", "0.3")
    assert code == 0 and read_json(tmp_path / "c" / "weights" / "manifest.json")["threshold"] == 0.3
    assert (
        main(["package", str(ckpt), str(tmp_path / "d"), "--user", "u", "--model.threshold", "1.5"])
        == 2
    )
    assert "--model.threshold" in only_error_line(capsys) and not (tmp_path / "d").exists()


def saved_threshold(ckpt: Path, threshold: float | None) -> Path:
    """``ckpt`` with its model's saved threshold set to ``threshold`` (``None``: absent)."""
    content = torch.load(ckpt, weights_only=True)
    content["hyper_parameters"].pop("threshold")
    if threshold is not None:
        content["hyper_parameters"]["threshold"] = threshold
    torch.save(content, ckpt)
    return ckpt


@pytest.mark.parametrize(
    "saved, expected",
    [
        (0.3, (0.3, "the checkpoint's model.threshold")),
        (None, (0.5, "the config's model.threshold")),
    ],
)
def test_the_threshold_comes_from_the_checkpoint_else_the_default(tmp_path, saved, expected):
    """As ``predict`` without a config: the checkpoint's threshold, else the model's default."""
    ckpt = saved_threshold(fake_checkpoint(tmp_path / "m.ckpt"), saved)
    code, printed = package(str(ckpt), str(tmp_path / "out"), "--user", "u")
    manifest = read_json(tmp_path / "out" / "weights" / "manifest.json")
    assert code == 0 and (manifest["threshold"], manifest["threshold_from"]) == expected
    assert f"decision threshold {expected[0]}: {expected[1]}" in printed


def test_package_builds_each_model_once(tmp_path, monkeypatch):
    """One build per source checkpoint (the ensemble's), one per stripped copy (its check)."""
    built: Counter = Counter()
    real = inference.load_classifier

    def counting(checkpoint):
        built[Path(getattr(checkpoint, "path", checkpoint)).resolve()] += 1
        return real(checkpoint)

    monkeypatch.setattr(inference, "load_classifier", counting)
    cv = fake_cv_folder(tmp_path / "cv", [CLASSES, CLASSES])
    assert package(str(cv), str(tmp_path / "out"), "--user", "u")[0] == 0
    sources = [(cv / f"fold{k}" / "best.ckpt").resolve() for k in range(2)]
    assert {path: built[path] for path in sources} == {path: 1 for path in sources}
    assert sorted(path.name for path in built if path not in sources) == [
        "fold0.ckpt",
        "fold1.ckpt",
    ]
    assert sum(built.values()) == 4


def test_force_replaces_an_earlier_bundle(bundle, tmp_path):
    out = Path(shutil.copytree(bundle[0], tmp_path / "out"))
    ckpt = fake_checkpoint(tmp_path / "m.ckpt")
    code, _ = package(str(ckpt), str(out), "--user", "u", "--force", "--tta", "flips")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["code", "kernel", "weights"]
    assert read_manifest(out / "weights" / "manifest.json").tta == "flips"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "out"]


@pytest.mark.slow
def test_the_inference_path_imports_no_training_only_dependency(tmp_path):
    blocked = tmp_path / "blocked"
    for name in ("jsonargparse", "iterstrat"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    script = (
        f"import sys; import {PACKAGE}.kaggle.offline_predict, {PACKAGE}.models as m\n"
        "try:\n    m.PlantClassifier('resnet18', classes=['a'], threshold=2.0)\n"
        "except ValueError as exc:\n    print('refused:', exc)\n"
        "print(sorted(k for k in sys.modules if k.startswith(('jsonargparse', 'iterstrat'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: threshold=2.0" in done.stdout  # the ranges still hold without jsonargparse
    assert done.stdout.strip().endswith("[]")


def assert_package_refused(capsys, out: Path, *args: str, expected: str) -> None:
    assert main(["package", *args]) == 2
    assert expected in only_error_line(capsys)
    leftovers = [p.name for p in out.parent.iterdir() if ".partial-" in p.name or ".old" in p.name]
    assert not leftovers


def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    good = fake_checkpoint(tmp_path / "good.ckpt")
    no_vocab = fake_checkpoint(tmp_path / "novocab.ckpt", classes=None)
    assert_package_refused(
        capsys, out, str(no_vocab), str(out), "--user", "u", expected="no backbone or"
    )
    no_weights = tmp_path / "noweights.ckpt"
    torch.save({**torch.load(good, weights_only=True), "state_dict": None}, no_weights)
    assert_package_refused(
        capsys, out, str(no_weights), str(out), "--user", "u", expected="(no weights: state_dict)"
    )
    mixed = fake_cv_folder(tmp_path / "cv", [CLASSES, ["healthy", "rust", "other"]])
    assert_package_refused(
        capsys, out, str(mixed), str(out), "--user", "u", expected="one label vocab"
    )
    empty = tmp_path / "emptycv"
    empty.mkdir()
    (empty / "folds.csv").write_text("image,fold\n")
    (empty / "plan.json").write_text('{"folds": 2}')
    assert_package_refused(
        capsys, out, str(empty), str(out), "--user", "u", expected="have no best.ckpt"
    )
    assert_package_refused(
        capsys, out, str(good), str(out), "--user", "a b", expected="--user 'a b'"
    )
    bad_slug = ["--user", "u", "--competition", "Bad_Slug"]
    assert_package_refused(capsys, out, str(good), str(out), *bad_slug, expected="--competition")
    assert_package_refused(
        capsys, out, str(tmp_path), str(out), "--user", "u", expected="output of cv"
    )
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_package_refused(capsys, out, str(good), str(out), "--user", "u", expected="--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


# --- the notebook, offline, in a real kernel (slow) -----------------------------------------


@pytest.fixture(scope="module")
def offline_kernel(tmp_path_factory) -> dict:
    """A fresh venv without this project, for a Jupyter kernel; its folder and python.

    The venv sees every site-packages folder of this interpreter (layered venvs too) as plain
    paths: PyTorch and ipykernel come from wherever they are installed, and the ``.pth`` hook of
    an editable install of the project is not run, so the wheel is what installs the project.
    Its own site-packages, first on its path, gets what Kaggle's image has at older versions
    (``KAGGLE_IMAGE``: timm 1.0.26), from the package index, pinned by hash (pip's cache keeps it).
    """
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import venv

    root = tmp_path_factory.mktemp("kernel")
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(root / "venv")
    python = root / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own = subprocess.run([str(python), "-c", purelib], capture_output=True, text=True, check=True)
    sites = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    pth = Path(own.stdout.strip()) / "_shared_packages.pth"
    pth.write_text("\n".join(sites) + "\n", encoding="utf-8")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes"]
    pip += ["--target", own.stdout.strip(), "-r", str(KAGGLE_IMAGE)]
    installed = subprocess.run(pip, capture_output=True, text=True)
    assert installed.returncode == 0, f"{KAGGLE_IMAGE.name}: {installed.stderr[-2000:]}"
    version = "import timm; print(timm.__version__)"
    seen = subprocess.run([str(python), "-c", version], capture_output=True, text=True, check=True)
    assert f"timm=={seen.stdout.strip()}" in KAGGLE_IMAGE.read_text(), "the kernel's timm"
    probe = f"import importlib.util as u; print(u.find_spec({PACKAGE!r}) is None)"
    seen = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    assert seen.stdout.strip() == "True", "the kernel's Python must not have the project yet"
    blocked = root / "blocked"
    for name in ("jsonargparse", "iterstrat"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name}: not on Kaggle')\n")
    return {"root": root, "python": str(python), "blocked": str(blocked)}


def kaggle_input(root: Path, bundle_dir: Path, test_images: Path) -> Path:
    """A folder laid out like Kaggle's 2026 ``/kaggle/input``: the competition and the two
    datasets (test_kaggle_layouts.py checks the search in the other layouts)."""
    tree = root / "input"
    shutil.copytree(test_images, tree / "competitions" / COMPETITION / "test_images")
    for name in ("code", "weights"):
        dataset_id = read_json(bundle_dir / name / "dataset-metadata.json")["id"]
        files = shutil.ignore_patterns("dataset-metadata.json")
        shutil.copytree(bundle_dir / name, tree / "datasets" / dataset_id, ignore=files)
    return tree


def run_notebook(kernel: dict, notebook: Path, tree: Path, working: Path) -> str:
    """Execute ``notebook`` offline in the kernel; the text it printed."""
    import nbclient
    import nbformat

    spec_dir = kernel["root"] / "jupyter" / "kernels" / "kaggle-offline"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [kernel["python"], "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "offline",
        "language": "python",
        "env": {
            "KAGGLE_INPUT": str(tree),
            "KAGGLE_WORKING": str(working),
            "PYTHONPATH": kernel["blocked"],
            "PIP_NO_INDEX": "1",
            "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    document = nbformat.read(notebook, as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(kernel["root"] / "jupyter"))
        client = nbclient.NotebookClient(
            document,
            kernel_name="kaggle-offline",
            timeout=900,
            resources={"metadata": {"path": str(working)}},
        )
        client.execute()
    streams = [
        output.get("text", "")
        for cell in document.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    ]
    return "".join(streams)


def predict_cli(sample_dir: Path, ckpt: Path, image_size: int, tta: str) -> tuple[Path, Path]:
    """``predict`` as a user runs it, in the current folder; its submission and probabilities."""
    args = ["--config", str(CONFIG_DIR / "baseline.yaml")]
    args += ["--config", str(CONFIG_DIR / "cpu_debug.yaml"), "--data.data_dir", str(sample_dir)]
    args += ["--data.image_size", str(image_size), "--ckpt_path", str(ckpt), "--tta", tta]
    args += ["--submission.path", f"submission-{tta}.csv"]
    args += ["--submission.probabilities_path", f"probabilities-{tta}.csv"]
    assert main(["predict", *args, "--trainer.enable_progress_bar", "false"]) == 0
    return Path(f"submission-{tta}.csv"), Path(f"probabilities-{tta}.csv")


def probabilities(path: Path) -> dict[str, list[float]]:
    """``image -> [probability per class]`` of a probabilities CSV."""
    return {row.pop("image"): [float(v) for v in row.values()] for row in read_csv_rows(path)}


def largest_difference(found: Path, expected: Path) -> float:
    """The largest absolute difference between two probabilities CSVs of the same images."""
    got, want = probabilities(found), probabilities(expected)
    assert got.keys() == want.keys()
    return max(abs(a - b) for name in want for a, b in zip(got[name], want[name], strict=True))


def check_offline_notebook(
    kernel: dict, source: Path, image_size: int, tta: str, passes: int, work: Path
) -> None:
    """Package ``source``, run the notebook offline, compare with ``predict`` (same ``tta``).

    Probabilities, not only labels: a notebook that dropped the bundle's TTA, or a ``predict``
    that ignored ``--tta``, still writes the same labels for a barely trained model.
    """
    sample_dir = Path(__file__).parent / "data"
    code, printed = package(str(source), str(work / "bundle"), "--user", "tester", "--tta", tta)
    assert code == 0
    tree = kaggle_input(work, work / "bundle", sample_dir / "test_images")
    working = work / "working"
    working.mkdir()
    text = run_notebook(kernel, work / "bundle" / "kernel" / "inference.ipynb", tree, working)
    print(printed, text, sep="\n", file=sys.__stdout__)  # sizes, speed, wall time (pytest -s)
    assert "img/s" in text and "5,000 hidden test images: about" in text
    assert f"{passes} forward passes each" in text
    assert "litlogger" not in text  # Lightning's advert, dropped on this path too
    assert "LeafSpec" not in text  # and torch 2.14's warning inside Lightning
    submission, probs = predict_cli(sample_dir, source, image_size, tta)
    rows = read_csv_rows(working / "submission.csv")
    assert len(rows) == len(list((sample_dir / "test_images").iterdir()))
    assert rows == read_csv_rows(submission)
    assert largest_difference(working / "probabilities.csv", probs) <= 2e-6
    _, plain = predict_cli(sample_dir, source, image_size, "none")
    assert largest_difference(plain, probs) > 1e-5  # the views changed the probabilities


@pytest.mark.slow
def test_the_offline_notebook_matches_predict_for_a_checkpoint(offline_kernel, trained, in_tmp):
    check_offline_notebook(offline_kernel, trained, 64, "hflip", 2, in_tmp)


@pytest.mark.slow
def test_the_offline_notebook_builds_a_timm_model_with_kaggle_s_timm(offline_kernel, in_tmp):
    """A timm test model trained here (timm of the lock) runs in the kernel on timm 1.0.26."""
    sample_dir = Path(__file__).parent / "data"
    quick = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    flags = [*quick, "--model.backbone", "timm/test_convnext", "--trainer.enable_progress_bar"]
    assert main(["fit", *cli_args(sample_dir, *flags, "false")]) == 0
    trained = in_tmp / "checkpoints" / "last.ckpt"
    check_offline_notebook(offline_kernel, trained, 64, "flips", 4, in_tmp)


@pytest.fixture(scope="module")
def small_cv(tmp_path_factory) -> Path:
    """A 2-fold cv run on the sample set (one short epoch per fold), with its thresholds.json."""
    work = tmp_path_factory.mktemp("cv")
    flags = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    flags += ["--data.image_size", "32", "--trainer.enable_progress_bar", "false"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        data = Path(__file__).parent / "data"
        assert main(["cv", "--folds", "2", "--out", "cv", *cli_args(data, *flags)]) == 0
    assert (work / "cv" / "thresholds.json").is_file()
    return work / "cv"


@pytest.mark.slow
def test_the_offline_notebook_matches_predict_for_a_cv_folder(offline_kernel, small_cv, in_tmp):
    check_offline_notebook(offline_kernel, small_cv, 32, "flips", 2 * 4, in_tmp)
    manifest = read_json(in_tmp / "bundle" / "weights" / "manifest.json")
    assert manifest["checkpoints"] == ["fold0.ckpt", "fold1.ckpt"]
    assert manifest["threshold_from"].startswith("the thresholds.json of the cv folder")
