"""The bundle on Kaggle's hardware and input mounts: ``kernel-metadata.json``'s accelerator and
pinned image, the notebook's search for its inputs in every mount layout, and nothing private
(absolute paths, user or host name) in any file of the bundle."""

import getpass
import json
import socket
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.kaggle.notebook import NOTEBOOK, write_notebook
from {{ cookiecutter.package }}.kaggle.push import check_ids

from helpers import only_error_line
from fake_runs import CLASSES, fake_checkpoint, fake_cv_folder, package

COMPETITION = "some-competition"
IDS = check_ids("tester", COMPETITION)
WHEEL = "challenge-0.1-py3-none-any.whl"


def kernel_metadata(tmp_path: Path, *args: str) -> dict:
    """``kernel-metadata.json`` of a bundle ``package`` builds with ``args``."""
    ckpt = fake_checkpoint(tmp_path / "m.ckpt")
    code, _ = package(str(ckpt), str(tmp_path / "out"), "--user", "tester", *args)
    assert code == 0
    return json.loads((tmp_path / "out" / "kernel" / "kernel-metadata.json").read_text())


@pytest.mark.parametrize(
    "args, gpu, shape",
    [([], True, "NvidiaTeslaT4"), (["--machine-shape", "NvidiaL4"], True, "NvidiaL4")],
)
def test_the_notebook_runs_on_a_chosen_gpu_and_its_pinned_image(tmp_path, args, gpu, shape):
    kernel = kernel_metadata(tmp_path, *args)
    assert (kernel["enable_gpu"], kernel["machine_shape"]) == (gpu, shape)
    assert kernel["docker_image_pinning_type"] == "original" and kernel["enable_internet"] is False


def test_a_cpu_only_notebook_asks_for_no_accelerator(tmp_path):
    kernel = kernel_metadata(tmp_path, "--machine-shape", "cpu")
    assert kernel["enable_gpu"] is False and "machine_shape" not in kernel
    assert kernel["docker_image_pinning_type"] == "original"


@pytest.mark.parametrize("shape", ["NvidiaTeslaP100", "TpuV6E8", "T4"])
def test_an_unusable_machine_shape_is_one_line_naming_the_valid_ones(tmp_path, capsys, shape):
    ckpt, out = fake_checkpoint(tmp_path / "m.ckpt"), tmp_path / "out"
    args = [str(ckpt), str(out), "--user", "u", "--machine-shape", shape]
    assert main(["package", *args]) == 2
    line = only_error_line(capsys)
    assert "--machine-shape" in line and repr(shape) in line
    assert "'NvidiaTeslaT4'" in line and "'NvidiaH100'" in line and "'cpu'" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


# --- every mount layout ---------------------------------------------------------------------


@pytest.fixture
def finder(tmp_path, monkeypatch) -> tuple[Path, dict]:
    """The ``/kaggle/input`` stand-in and the namespace of the notebook's settings cell run there
    (the cell that finds the wheel before the package is installed)."""
    write_notebook(tmp_path, IDS, WHEEL, "{{ cookiecutter.package }}")
    root = tmp_path / "input"
    root.mkdir()
    monkeypatch.setenv("KAGGLE_INPUT", str(root))
    cells = json.loads((tmp_path / NOTEBOOK).read_text(encoding="utf-8"))["cells"]
    namespace: dict = {}
    exec("".join(cells[1]["source"]), namespace)
    return root, namespace


def put(root: Path, folder: str, name: str) -> Path:
    """``root/folder/name`` (a file, or a folder when ``name`` has no dot)."""
    path = root / folder / name
    if "." in name:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    else:
        path.mkdir(parents=True)
    return path


CODE, WEIGHTS = (IDS.code.split("/")[1], IDS.weights.split("/")[1])
LAYOUTS = {
    "flat": (COMPETITION, CODE, WEIGHTS),
    "competitions and datasets": (
        f"competitions/{COMPETITION}",
        f"datasets/{IDS.code}",
        f"datasets/{IDS.weights}",
    ),
    "dataset versions": (
        f"competitions/{COMPETITION}",
        f"datasets/{IDS.code}/versions/12",
        f"datasets/{IDS.weights}/versions/3",
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_notebook_finds_its_inputs_in_each_layout_not_a_lookalike(finder, layout):
    root, cell = finder
    competition, code, weights = LAYOUTS[layout]
    expected = [
        put(root, code, WHEEL),
        put(root, weights, "manifest.json"),
        put(root, competition, "test_images"),
    ]
    # Other inputs holding files of the same names: another owner's dataset of the same slug,
    # other datasets, an older version, another competition.
    for folder in (f"datasets/someone/{WEIGHTS}", f"datasets/someone/{CODE}", "aaa", "zzz"):
        put(root, folder, "manifest.json")
        put(root, folder, WHEEL)
        put(root, folder, "test_images")
    if layout != "flat":  # Kaggle mounts all inputs in one layout
        put(root, f"datasets/{IDS.weights}/versions/2", "manifest.json")
    put(root, "competitions/another-competition", "test_images")
    find = cell["find_input"]
    found = [
        find(cell["WHEEL"], cell["CODE_DATASET"]),
        find("manifest.json", cell["WEIGHTS_DATASET"]),
        find(cell["TEST_FOLDER"], cell["COMPETITION"]),
    ]
    assert found == expected


@pytest.mark.parametrize(
    "source, expected",
    [
        ("tester/plant-model/pytorch/default/3", "models/tester/plant-model/pytorch/default/3"),
        ("tester/plant-model/pytorch/default", "models/tester/plant-model/pytorch/default/10"),
    ],
)
def test_the_notebook_finds_weights_shipped_as_a_kaggle_model(finder, source, expected):
    root, cell = finder
    for version in ("2", "3", "10"):
        put(root, f"models/tester/plant-model/pytorch/default/{version}", "manifest.json")
    put(root, "models/someone/plant-model/pytorch/default/11", "manifest.json")
    put(root, "models/tester/plant-model/pytorch/other/12", "manifest.json")
    assert cell["find_input"]("manifest.json", source) == root / expected / "manifest.json"
    older = "plant-model/pytorch/default/4"  # the older flat mount of a model
    put(root, older, "weights.json")
    assert cell["find_input"]("weights.json", "tester/plant-model/pytorch/default/4") == (
        root / older / "weights.json"
    )


def test_a_missing_input_says_where_it_looked_and_what_to_add(finder):
    root, cell = finder
    put(root, "zzz", WHEEL)  # another dataset's wheel of the same name is not taken
    with pytest.raises(FileNotFoundError) as missing:
        cell["find_input"](cell["WHEEL"], cell["CODE_DATASET"])
    message = str(missing.value)
    assert f"datasets/{IDS.code}, datasets/{IDS.code}/versions/*, {CODE} under {root}" in message
    assert f"add {IDS.code} to this notebook's inputs" in message and "\n" not in message


def test_weights_as_a_kaggle_model_have_its_metadata_and_the_notebook_finds_them(
    tmp_path, monkeypatch
):
    ckpt, out = fake_checkpoint(tmp_path / "m.ckpt"), tmp_path / "out"
    code, printed = package(str(ckpt), str(out), "--user", "tester", "--weights-as", "model")
    assert code == 0
    model_id = IDS.weights
    instance = f"{model_id}/pytorch/default"
    kernel = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert kernel["dataset_sources"] == [IDS.code]
    assert kernel["model_sources"] == [f"{instance}/1"]  # a first upload; --push writes its own
    weights = out / "weights"
    assert sorted(p.name for p in weights.iterdir()) == [
        "manifest.json",
        "model-instance-metadata.json",
        "model-metadata.json",
        "model.ckpt",
    ]
    model = json.loads((weights / "model-metadata.json").read_text())
    assert (model["ownerSlug"], model["slug"], model["isPrivate"]) == ("tester", model_id[7:], True)
    assert model["title"] and model["description"]
    variation = json.loads((weights / "model-instance-metadata.json").read_text())
    assert f"{variation['ownerSlug']}/{variation['modelSlug']}" == model_id
    assert (variation["framework"], variation["instanceSlug"]) == ("pytorch", "default")
    assert variation["licenseName"] and variation["fineTunable"] is False
    assert f"kaggle models create -p {weights}" in printed
    assert f"kaggle models variations create -p {weights}" in printed
    assert f"kaggle models variations versions create {instance} -p {weights}" in printed
    # the notebook reads the manifest where Kaggle mounts that version
    cells = json.loads((out / "kernel" / NOTEBOOK).read_text(encoding="utf-8"))["cells"]
    assert "Kaggle Model" in "".join(cells[0]["source"])
    monkeypatch.setenv("KAGGLE_INPUT", str(tmp_path / "input"))
    mounted = put(tmp_path / "input", f"models/{instance}/1", "manifest.json")
    put(tmp_path / "input", f"datasets/{model_id}", "manifest.json")  # not this one
    namespace: dict = {}
    exec("".join(cells[1]["source"]), namespace)
    assert namespace["find_input"]("manifest.json", namespace["WEIGHTS_DATASET"]) == mounted
    # --force replaces a bundle of either kind
    assert package(str(ckpt), str(out), "--user", "tester", "--force")[0] == 0
    assert (out / "weights" / "dataset-metadata.json").is_file()
    assert (
        package(str(ckpt), str(out), "--user", "tester", "--weights-as", "model", "--force")[0] == 0
    )


# --- nothing private ------------------------------------------------------------------------


def private_checkpoint(
    path: Path, data_dir: Path, pretrained: str = "/home/{user}/weights/resnet18.pth"
) -> Path:
    """``fake_checkpoint`` with what training records of the machine: absolute paths in the
    hyper-parameters (``pretrained`` a file or a timm ``local-dir:`` folder), the callbacks' state
    and the loggers', the user and host name in them."""
    fake_checkpoint(path)
    content = torch.load(path, weights_only=True)
    user, host = getpass.getuser(), socket.gethostname()
    content["hyper_parameters"]["pretrained"] = pretrained.format(user=user)
    content["datamodule_hyper_parameters"].update(
        data_dir=str(data_dir), cache_dir=f"C:\\Users\\{user}\\cache"
    )
    content["callbacks"] = {
        "ModelCheckpoint{'monitor': 'val_f1'}": {
            "dirpath": str(path.parent),
            "best_model_path": str(path),
        }
    }
    content["loggers"] = {"log_dir": f"{path.parent}/events.out.tfevents.1.{host}.42"}
    torch.save(content, path)
    return path


def contents(path: Path) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of a file, and of every member of a zip file (wheels, checkpoints),
    recursively."""
    data = path.read_bytes()
    if not zipfile.is_zipfile(path):
        return [(str(path), data)]
    found = []
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            inner = archive.read(member)
            found.append((f"{path}!{member}", inner))
            if member.endswith((".zip", ".whl", ".ckpt")):
                nested = path.parent / f".nested-{Path(member).name}"
                nested.write_bytes(inner)
                found += [(f"{path}!{name}", item) for name, item in contents(nested)]
                nested.unlink()
    return found


def private_marks(*paths: Path) -> list[bytes]:
    """What must not be in a published file: these paths, this home, this Python's prefix, this
    project; the user and host name where paths and loggers write them."""
    from {{ cookiecutter.package }}.kaggle import bundle

    folders = {*paths, *(p.resolve() for p in paths), Path.home(), Path(sys.prefix)}
    folders.add(Path(bundle.__file__).resolve().parents[3])
    marks = [str(folder).encode() for folder in folders]
    for name in (getpass.getuser(), socket.gethostname()):
        marks += [m.encode() for m in (f"/{name}/", f"\\{name}\\", f"-of-{name}", f".{name}.")]
    return marks


def test_nothing_private_is_in_any_file_of_a_bundle(tmp_path):
    data_dir = tmp_path / "data"
    ckpt = private_checkpoint(tmp_path / "runs" / "one" / "last.ckpt", data_dir)
    cv = fake_cv_folder(tmp_path / "cv", [CLASSES, CLASSES])
    for fold in (0, 1):
        folder = "local-dir:/home/{user}/weights/timm-folder"
        private_checkpoint(cv / f"fold{fold}" / "best.ckpt", data_dir, folder)
    marks = private_marks(tmp_path, ckpt, cv)
    for source, out in ((ckpt, tmp_path / "from-ckpt"), (cv, tmp_path / "from-cv")):
        assert package(str(source), str(out), "--user", "tester")[0] == 0
        files = [path for path in sorted(out.rglob("*")) if path.is_file()]
        assert {path.suffix for path in files} >= {".whl", ".ckpt", ".json", ".ipynb"}
        leaks = [
            (name, mark.decode())
            for path in files
            for name, data in contents(path)
            for mark in marks
            if mark in data
        ]
        assert leaks == []
    manifest = json.loads((tmp_path / "from-cv" / "weights" / "manifest.json").read_text())
    assert manifest["source"] == "cv"
    assert manifest["source_checkpoints"] == ["fold0/best.ckpt", "fold1/best.ckpt"]
    assert manifest["config"]["data"]["data_dir"] == "data"
    kept = torch.load(tmp_path / "from-ckpt" / "weights" / "model.ckpt", weights_only=True)
    assert kept["hyper_parameters"]["pretrained"] == "resnet18.pth"
    assert kept["datamodule_hyper_parameters"]["cache_dir"] == "cache"
