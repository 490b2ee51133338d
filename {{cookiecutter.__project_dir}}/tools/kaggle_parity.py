"""Kaggle-image parity, checked once: does the bundle's notebook, run with the Kaggle image's
versions of PyTorch and its companions, write what ``predict`` writes in this project's venv?

It builds (once; reused while the versions are the same) a venv with the versions of Kaggle's
2026 Python image (torch 2.10.0, torchvision 0.25.0, timm 1.0.26, the newest pytorch-lightning)
and the few other packages the notebook imports, which the image has; not the project's other
dependencies (the image lacks jsonargparse and iterative-stratification, and the bundle's wheel
installs with ``--no-deps``). Then it packages SOURCE, lays the bundle out as Kaggle mounts it
under a temporary ``/kaggle/input``, runs the notebook's code cells in that venv with no package
index, on the CPU, and compares its submission and probabilities with ``predict``'s.

Not part of the test suite: the venv takes ~7 GB (PyPI's CUDA builds of torch) and one download.
Needs ``uv`` (it installs exact versions, beyond a pip constraints file). Exit code 0: same
labels and probabilities within the tolerance; 1: they differ; 2: it could not run (one line).

Usage: python tools/kaggle_parity.py SOURCE [--images DIR] [--venv DIR] [--python 3.12]
       [--torch 2.10.0] [--torchvision 0.25.0] [--timm 1.0.26] [--lightning VERSION]
       [--tta none] [--weights-as dataset|model] [--tolerance X] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from {{ cookiecutter.package }}.cli import main as cli_main
from {{ cookiecutter.package }}.kaggle.notebook import NOTEBOOK
from {{ cookiecutter.package }}.kaggle.push import KERNEL_METADATA
from {{ cookiecutter.package }}.layout import TEST_IMAGES
from {{ cookiecutter.package }}.utils.hardware import default_precision

PACKAGE = "{{ cookiecutter.package }}"
ROOT = Path(__file__).resolve().parents[1]
# What the notebook imports besides the pinned four, all in Kaggle's image (unpinned: their
# versions there move with each image).
COMPANIONS = ("numpy", "pillow", "scikit-learn", "pip")
# fp32 on two torch builds: the same operations, summed in another order by other kernels,
# move a probability by ~1e-6; 1e-4 leaves room for a deep ensemble and still catches a real
# change (one TTA view dropped moved them by 7e-2). bf16 keeps 8 bits of mantissa: ~1e-2.
TOLERANCE = {"32-true": 1e-4, "bf16-mixed": 3e-2}


class ParityError(Exception):
    """A step could not run; its message is the one line printed."""


def run(command: list[str], what: str) -> subprocess.CompletedProcess:
    """Run ``command``; ``ParityError`` naming ``what`` and its last output line if it fails."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no message").splitlines()
        raise ParityError(f"{what} failed (exit {done.returncode}): {lines[-1]}")
    return done


def kaggle_venv(args: argparse.Namespace) -> Path:
    """The venv's python, built with ``uv`` unless one with these versions exists."""
    pins = {
        "torch": args.torch,
        "torchvision": args.torchvision,
        "timm": args.timm,
        "pytorch-lightning": args.lightning,
    }
    wanted = {"python": args.python, **pins}
    marker, python = args.venv / "kaggle-parity.json", args.venv / "bin" / "python"
    if marker.is_file() and json.loads(marker.read_text()) == wanted and python.exists():
        return python
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise ParityError("uv not found: pip install uv (or set UV to its path)")
    shutil.rmtree(args.venv, ignore_errors=True)
    run([uv, "venv", "--quiet", "--python", args.python, str(args.venv)], "uv venv")
    specs = [f"{name}=={v}" if v else name for name, v in pins.items()] + list(COMPANIONS)
    print(f"installing into {args.venv}: {' '.join(specs)} (PyPI's CUDA builds: minutes)")
    run([uv, "pip", "install", "--quiet", "--python", str(python), *specs], "uv pip install")
    marker.write_text(json.dumps(wanted))
    return python


def versions(python: Path | str) -> dict[str, str]:
    """Python's and the pinned packages' versions in the venv of ``python``."""
    probe = (
        "import json, sys, torch, torchvision, timm, pytorch_lightning as pl;"
        "print(json.dumps({'python': sys.version.split()[0], 'torch': torch.__version__,"
        " 'torchvision': torchvision.__version__, 'timm': timm.__version__,"
        " 'pytorch-lightning': pl.__version__}))"
    )
    return json.loads(run([str(python), "-c", probe], f"importing torch with {python}").stdout)


def kaggle_input(bundle: Path, images: Path, work: Path) -> Path:
    """``bundle`` and ``images`` laid out as Kaggle's 2026 ``/kaggle/input`` mounts them."""
    kernel = json.loads((bundle / "kernel" / KERNEL_METADATA).read_text())
    folders = {}  # input id (a model variation's without its version) -> bundle folder
    for part in ("code", "weights"):
        for meta in sorted((bundle / part).glob("*-metadata.json")):
            data = json.loads(meta.read_text())
            if "id" in data:  # a dataset's
                folders[data["id"]] = bundle / part
            elif "instanceSlug" in data:  # a model variation's
                keys = ("ownerSlug", "modelSlug", "framework", "instanceSlug")
                folders["/".join(data[key] for key in keys)] = bundle / part
    root = work / "input"
    shutil.copytree(images, root / "competitions" / kernel["competition_sources"][0] / TEST_IMAGES)
    metadata = shutil.ignore_patterns("*-metadata.json")
    for source in kernel["dataset_sources"]:
        shutil.copytree(folders[source], root / "datasets" / source, ignore=metadata)
    for source in kernel["model_sources"]:
        shutil.copytree(
            folders[source.rsplit("/", 1)[0]], root / "models" / source, ignore=metadata
        )
    return root


def run_notebook(python: Path, notebook: Path, root: Path, working: Path) -> str:
    """Run the code cells of ``notebook`` in order, as one script, offline on the CPU; the text
    it printed. The cells are plain Python (no magics), so this is what the kernel runs."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    script = working.parent / "notebook_cells.py"
    script.write_text(
        "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code") + "\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "KAGGLE_INPUT": str(root),
        "KAGGLE_WORKING": str(working),
        "CUDA_VISIBLE_DEVICES": "",  # the same device as predict here: the CPU
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONNOUSERSITE": "1",
    }
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(python), str(script)], cwd=working, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise NotebookFailed((done.stderr.strip() or "no message").splitlines()[-1])
    return done.stdout


class NotebookFailed(Exception):
    """The notebook stopped; its message is the last line of its error output."""


def load_check(python: Path, weights: Path, saved: dict[str, str], there: dict[str, str]) -> None:
    """After a failed notebook run: ``ParityError`` in one line naming both versions when the
    installed package does not import, or the weights do not load, under the venv's versions."""
    probe = (
        "import sys\n"
        "try:\n"
        f"    from {PACKAGE}.predict.inference import load_classifier\n"
        "except Exception as error:\n"
        "    sys.exit(f'import: {error}')\n"
        "for path in sys.argv[1:]:\n"
        "    load_classifier(path)\n"
    )
    ckpts = [str(p) for p in sorted(weights.glob("*.ckpt"))]
    done = subprocess.run([str(python), "-c", probe, *ckpts], capture_output=True, text=True)
    if done.returncode == 0:
        return
    last = (done.stderr.strip() or "no message").splitlines()[-1]
    under = f"torch {there['torch']} and pytorch-lightning {there['pytorch-lightning']}"
    if last.startswith("import: "):
        raise ParityError(f"the package does not import under {under}: {last[8:]}")
    raise ParityError(
        f"the weights saved under torch {saved['torch']} and pytorch-lightning"
        f" {saved['pytorch-lightning']} do not load under {under}: {last}"
    )


def predict(source: Path, images: Path, image_size: int, tta: str, out: Path) -> Path:
    """``predict`` in this venv on the CPU; the folder of its submission and probabilities."""
    data = out / "data"
    data.mkdir(parents=True)
    (data / TEST_IMAGES).symlink_to(images.resolve(), target_is_directory=True)
    configs = ROOT / "configs"
    argv = ["predict", "--config", str(configs / "baseline.yaml")]
    argv += ["--config", str(configs / "cpu_debug.yaml"), "--data.data_dir", str(data)]
    argv += ["--data.image_size", str(image_size), "--ckpt_path", str(source), "--tta", tta]
    argv += ["--submission.path", str(out / "submission.csv")]
    argv += ["--submission.probabilities_path", str(out / "probabilities.csv")]
    if cli_main([*argv, "--trainer.enable_progress_bar", "false"]) != 0:
        raise ParityError("predict failed (its error line is above)")
    return out


def rows(path: Path) -> dict[str, list[str]]:
    """``image -> the other fields`` of a CSV file written by the package."""
    with path.open(newline="", encoding="utf-8") as handle:
        return {row[0]: row[1:] for row in list(csv.reader(handle))[1:]}


def compare(notebook: Path, expected: Path, tolerance: float) -> bool:
    """Print how the notebook's files differ from ``predict``'s; whether they agree."""
    got, want = rows(notebook / "submission.csv"), rows(expected / "submission.csv")
    p_got, p_want = rows(notebook / "probabilities.csv"), rows(expected / "probabilities.csv")
    if got.keys() != want.keys() or p_got.keys() != p_want.keys():
        print(f"the images differ: {sorted(set(got) ^ set(want))[:5]}")
        return False
    labels = [name for name in want if got[name] != want[name]]
    largest = max(
        abs(float(a) - float(b)) for name in p_want for a, b in zip(p_got[name], p_want[name])
    )
    print(
        f"{len(want)} images: {len(want) - len(labels)} with the same labels; largest"
        f" probability difference {largest:.2e} (tolerance {tolerance:g})"
    )
    for name in labels[:5]:
        print(f"  {name}: notebook {got[name]}, predict {want[name]}")
    return not labels and largest <= tolerance


def parity(args: argparse.Namespace, work: Path) -> bool:
    """Package, run the notebook in the Kaggle venv, predict here, compare."""
    python = kaggle_venv(args)
    there = versions(python)
    here = versions(sys.executable)
    print("Kaggle venv:", ", ".join(f"{k} {v}" for k, v in there.items()))
    print("this venv:  ", ", ".join(f"{k} {v}" for k, v in here.items()))
    bundle = work / "bundle"
    argv = ["package", str(args.source), str(bundle), "--user", "parity", "--tta", args.tta]
    if cli_main([*argv, "--weights-as", args.weights_as, "--machine-shape", "cpu"]) != 0:
        raise ParityError("package failed (its error line is above)")
    manifest = json.loads((bundle / "weights" / "manifest.json").read_text())
    first = torch.load(bundle / "weights" / manifest["checkpoints"][0], weights_only=True)
    saved = {  # package saved the stripped checkpoints with this torch
        "torch": torch.__version__,
        "pytorch-lightning": first.get("pytorch-lightning_version", "unknown"),
    }
    root = kaggle_input(bundle, args.images, work)
    working = work / "working"
    working.mkdir()
    try:
        printed = run_notebook(python, bundle / "kernel" / NOTEBOOK, root, working)
    except NotebookFailed as failed:
        load_check(python, bundle / "weights", saved, there)
        raise ParityError(f"the notebook failed under the Kaggle versions: {failed}") from None
    print(printed.strip())
    expected = predict(args.source, args.images, manifest["image_size"], args.tta, work / "here")
    precision = default_precision("cpu")
    tolerance = args.tolerance if args.tolerance is not None else TOLERANCE.get(precision, 3e-2)
    print(f"precision on this CPU, both sides: {precision}")
    return compare(working, expected, tolerance)


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("source", type=Path, help="a checkpoint or a cv folder, as for package")
    options.add_argument(
        "--images", type=Path, default=ROOT / "tests" / "data" / TEST_IMAGES, help="test images"
    )
    options.add_argument("--venv", type=Path, default=ROOT / ".venv-kaggle", help="its folder")
    options.add_argument("--python", default="3.12", help="version or interpreter (Kaggle: 3.12)")
    options.add_argument("--torch", default="2.10.0")
    options.add_argument("--torchvision", default="0.25.0")
    options.add_argument("--timm", default="1.0.26")
    options.add_argument("--lightning", default="", help="pytorch-lightning (default: newest)")
    options.add_argument("--tta", default="none", help="as package --tta")
    options.add_argument("--weights-as", default="dataset", choices=("dataset", "model"))
    options.add_argument("--tolerance", type=float, help="largest probability difference allowed")
    options.add_argument("--keep", type=Path, help="work in this new folder and keep it")
    return options


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 when the notebook agrees with ``predict``, 1 when not, 2 on an error."""
    args = parser().parse_args(argv)
    if not args.images.is_dir():
        print(f"error: {args.images}: folder of test images not found", file=sys.stderr)
        return 2
    try:
        if args.keep:
            args.keep.mkdir(parents=True)
            agree = parity(args, args.keep.resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="kaggle-parity-") as work:
                agree = parity(args, Path(work))
    except (ParityError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("parity: the notebook agrees with predict" if agree else "parity: they DIFFER")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
