"""The ``package`` command: ``OUT_DIR/code/`` (the wheel), ``weights/`` (stripped checkpoints,
``manifest.json``; a dataset, or a Kaggle Model with ``--weights-as model``) and ``kernel/`` (the
offline notebook), with their Kaggle metadata, built beside ``OUT_DIR`` and moved into place
whole; ``--push`` uploads them."""

from __future__ import annotations

import argparse
import inspect
import ntpath
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import __version__
from ..cli.argtypes import command_parser, positive_seconds, unit_interval
from .manifest import FORMAT, MANIFEST
from .target import check_target, staged_folder
from ..utils.errors import DataError
from ..workflows.cv_files import fold_checkpoints, is_cv_folder
from .push import COMPETITION, POLL, PROJECT, TIMEOUT, WAIT, Ids, check_ids, dataset_metadata
from .push import CARRIERS, DATASET, DATASET_METADATA, is_model, weights_metadata
from .push import kaggle_executable, manual_commands, push_bundle
from .notebook import CPU_ONLY, MACHINE_SHAPES, write_notebook
from ..predict.tta import TTA_NAMES
from ..utils.atomic import write_json
from ..utils.torchfiles import save_torch_file

if TYPE_CHECKING:
    from ..predict.blend import Blend
    from ..predict.inference import Checkpoint
WHEEL_TIMEOUT = 600  # seconds; a pure-Python wheel builds in a few
DESCRIPTION = (
    "Write a checkpoint or a cv folder as two Kaggle datasets (code, weights) and an"
    " internet-off submission notebook; --push uploads them with the Kaggle CLI."
)
PACKAGE = __name__.split(".")[0]
KEPT = (  # besides the weights (state_dict); absolute paths in them are cut (without_paths)
    "hyper_parameters",
    "datamodule_hyper_parameters",
    "pytorch-lightning_version",
)


def source_checkpoints(source: Path) -> list[Path]:
    """The checkpoint file, or the fold checkpoints of a ``cv`` folder, in fold order."""
    if source.is_dir():
        if not is_cv_folder(source):
            raise DataError(f"{source}: a folder must be the output of cv (it has no folds.csv)")
        return fold_checkpoints(source)
    if not source.is_file():
        raise DataError(f"{source}: checkpoint file not found")
    return [source]


def inference_settings(
    source: Path,
    checkpoints: list[Checkpoint],
    tta: str,
    threshold: float | None = None,
    blend: Blend | None = None,
) -> dict[str, Any]:
    """The manifest's fields but the checkpoints: ``predict``'s settings, then their provenance
    (``blend``: of the cv folders blended, ``source`` the first). Each checkpoint's model is built
    once, by the ensemble that checks they agree."""
    from ..models import PlantClassifier
    from ..predict.inference import EnsembleClassifier
    from ..predict.threshold_report import decide_threshold

    weights = None if blend is None else blend.checkpoints()[1]
    ensemble = EnsembleClassifier.from_checkpoints(checkpoints, tta=tta, weights=weights)
    first = checkpoints[0]
    data = dict(first.content.get("datamodule_hyper_parameters") or {})
    if not isinstance(data.get("image_size"), int):
        raise DataError(f"{first.path}: checkpoint has no image size (data hyper-parameters)")
    choice = decide_threshold(
        ensemble.classes,
        inspect.signature(PlantClassifier).parameters["threshold"].default,  # package: no config
        flag=threshold,
        cv_folder=source if source.is_dir() else None,
        checkpoint=first.hyper_parameters.get("threshold"),
        blend=None if blend is None or threshold is not None else blend.thresholds(),
    )
    print(choice.log_line())
    if blend is None:
        provenance: dict[str, Any] = {
            "source": source.resolve().name,
            "source_checkpoints": (
                [c.path.resolve().relative_to(source.resolve()).as_posix() for c in checkpoints]
                if source.is_dir()
                else [source.name]
            ),
        }
    else:
        provenance = {
            "source": [folder.resolve().name for folder in blend.folders],
            "source_checkpoints": [
                f"{blend.folders[index].resolve().name}/{path.parent.name}/{path.name}"
                for index, path, _ in blend.members()
            ],
            "weights": weights,
        }
    return {
        "classes": list(ensemble.classes),
        "image_size": data["image_size"],
        "batch_size": int(data.get("batch_size") or 32),
        "threshold": choice.value,
        "tta": tta,
        "threshold_from": choice.origin,
        **provenance,
        "package": PACKAGE,
        "version": __version__,
        "config": without_paths(
            {"model": dict(cast(PlantClassifier, ensemble.members[0]).hparams), "data": data}
        ),
    }


def without_paths(value: Any) -> Any:
    """``value`` with each absolute path in it (a string, at any depth of dicts and lists) cut to
    its last part: a bundle is published, and these name the user, their folders and machine."""
    from ..backbones import LOCAL_DIR  # here: `package --help` must not import torch

    if isinstance(value, dict):
        return {key: without_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [without_paths(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, str) and value.startswith(LOCAL_DIR):  # timm's pretrained folder
        return LOCAL_DIR + without_paths(value.removeprefix(LOCAL_DIR))
    if isinstance(value, str) and (os.path.isabs(value) or ntpath.isabs(value)):
        return ntpath.basename(value.rstrip("/\\"))  # either separator, on any system
    return value


def project_root() -> Path:
    """The source folder of this project (the package must be installed editable)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file() or not (root / "src" / PACKAGE).is_dir():
        raise DataError(
            "package builds the wheel from the project's source folder: install the project"
            " editable (pip install -e .) and run it from there"
        )
    return root


def build_wheel(root: Path, dest: Path) -> Path:
    """Build the project's wheel into ``dest`` offline (setuptools' PEP 517 backend, no build
    isolation), from a copy of its sources that keeps ``build/`` out of the project."""
    with tempfile.TemporaryDirectory(prefix="wheel-") as tmp:
        copy = Path(tmp) / "project"
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
        shutil.copytree(root / "src", copy / "src", ignore=ignore)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, copy / name)
        script = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
        command = [sys.executable, "-c", script, str(dest.resolve())]
        try:
            done = subprocess.run(
                command, cwd=copy, capture_output=True, text=True, timeout=WHEEL_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise DataError(
                f"building the wheel of {root} did not finish within {WHEEL_TIMEOUT} s"
            ) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DataError(f"building the wheel of {root} failed (is setuptools installed?): {last}")
    return dest / done.stdout.strip().splitlines()[-1]


def write_weights(
    folder: Path,
    checkpoints: list[Checkpoint],
    settings: dict[str, Any],
    blend: Blend | None = None,
) -> None:
    """The checkpoints stripped to what ``load_classifier`` reads (weights and ``KEPT``, each
    loaded back as a check) and ``manifest.json``; prints each size before and after."""
    from ..predict.inference import load_classifier

    names = (
        [f"fold{k}.ckpt" for k in range(len(checkpoints))] if checkpoints[1:] else ["model.ckpt"]
    )
    if blend is not None:  # blend{i}-fold{k}.ckpt: fold k of the i-th cv folder
        names = [f"blend{index}-{path.parent.name}.ckpt" for index, path, _ in blend.members()]
    for source, name in zip(checkpoints, names):
        kept = without_paths({key: source.content[key] for key in KEPT if key in source.content})
        kept["state_dict"] = source.content["state_dict"]
        save_torch_file(kept, folder / name)
        load_classifier(folder / name)
        before, after = source.path.stat().st_size, (folder / name).stat().st_size
        print(f"{source.path}: {before / 1e6:.1f} MB -> weights/{name}: {after / 1e6:.1f} MB")
    write_json(folder / MANIFEST, {"format": FORMAT, "checkpoints": names, **settings})


def package(args: argparse.Namespace) -> Ids:
    """Check everything, build the bundle next to ``args.out``, then move it into place."""
    from ..predict.blend import parse_blend, parse_sources
    from ..predict.inference import read_checkpoint

    ids = check_ids(args.user, args.competition, args.weights_as)
    root = project_root()
    protected = {
        "the working directory": Path.cwd(),
        "the project": root,
        "your home folder": Path.home(),
    }
    sources = parse_sources(args.source)
    blend = parse_blend("package", sources, args.blend)
    for number, source in enumerate(sources, start=1):
        blended = f" (blend member {number})" if sources[1:] else ""
        protected[f"the checkpoint or cv folder being packaged{blended}"] = source
    target = check_target(args.out, protected, args.force)
    paths = source_checkpoints(sources[0]) if blend is None else blend.checkpoints()[0]
    checkpoints = [read_checkpoint(path) for path in paths]
    settings = inference_settings(sources[0], checkpoints, args.tta, args.threshold, blend)
    with staged_folder(target) as staging:
        code, weights, kernel = (staging / name for name in ("code", "weights", "kernel"))
        for folder in (code, weights, kernel):
            folder.mkdir()
        wheel = build_wheel(root, code)
        print(f"code/{wheel.name}: {wheel.stat().st_size / 1e3:.0f} kB")
        write_json(code / DATASET_METADATA, dataset_metadata(ids.code, "the package wheel"))
        write_weights(weights, checkpoints, settings, blend)
        for name, metadata in weights_metadata(ids.weights).items():
            write_json(weights / name, metadata)
        write_notebook(kernel, ids, wheel.name, PACKAGE, args.machine_shape)
    return ids


def parser() -> argparse.ArgumentParser:
    build = command_parser("package", DESCRIPTION)
    build.add_argument(
        "source",
        metavar="CKPT_OR_CV_DIR",
        help="checkpoint or cv folder, or cv folders A,B,... to blend (see --blend)",
    )
    build.add_argument("out", type=Path, metavar="OUT_DIR", help="new folder for the bundle")
    build.add_argument("--user", required=True, help="your Kaggle user name (owns the datasets)")
    build.add_argument("--competition", default=COMPETITION, help=f"default: {COMPETITION}")
    build.add_argument("--tta", choices=TTA_NAMES, default="none", help="test-time augmentation")
    build.add_argument(
        "--blend",
        help="weights of the cv folders A,B,... (e.g. 0.6,0.4; default equal): the weighted mean"
        " of their probabilities, at thresholds tuned on the same mean of their oof.csv",
    )
    build.add_argument(
        "--model.threshold",
        dest="threshold",
        type=unit_interval,
        help="decision threshold (default: the cv folder's thresholds.json, else the checkpoint's"
        " model.threshold, as predict)",
    )
    build.add_argument(
        "--machine-shape",
        choices=[*MACHINE_SHAPES, CPU_ONLY],
        default=MACHINE_SHAPES[0],
        help=f"Kaggle accelerator of the notebook, or {CPU_ONLY} (default: {MACHINE_SHAPES[0]})",
    )
    build.add_argument(
        "--weights-as",
        choices=CARRIERS,
        default=DATASET,
        help="how the notebook gets the weights: a dataset, or a private Kaggle Model whose"
        " version --push pins in kernel-metadata.json's model_sources (default: dataset)",
    )
    build.add_argument("--force", action="store_true", help="replace an earlier bundle at OUT_DIR")
    build.add_argument("--push", action="store_true", help="upload with the Kaggle CLI")
    build.add_argument(
        "--timeout",
        type=positive_seconds,
        default=TIMEOUT,
        help=f"seconds each Kaggle CLI command may take (default {TIMEOUT:g})",
    )
    build.add_argument(
        "--wait",
        type=positive_seconds,
        default=WAIT,
        help=f"seconds --push waits for each upload to be ready, then for the notebook's run"
        f" (default {WAIT:g})",
    )
    build.add_argument(
        "--poll",
        type=positive_seconds,
        default=POLL,
        help=f"seconds between two status queries while waiting (default {POLL:g})",
    )
    build.add_argument(
        "--message", default=f"{PROJECT} {__version__}", help="version note of each upload"
    )
    return build


def run_command(argv: Sequence[str]) -> int:
    """Run ``package`` with the arguments after the command name; returns the exit code."""
    args = parser().parse_args(list(argv))
    if args.push:
        kaggle_executable()  # refuse before building when the CLI or credentials are missing
    ids = package(args)
    datasets, weights = {ids.code: args.out / "code"}, args.out / "weights"
    model = (ids.weights, weights) if is_model(ids.weights) else None
    if model is None:
        datasets[ids.weights] = weights
    print(
        f"wrote {args.out}/: code/ ({ids.code}), weights/ ({ids.weights}), kernel/ ({ids.kernel})"
    )
    if args.push:
        kernel = args.out / "kernel"
        push_bundle(datasets, kernel, args.message, args.timeout, args.wait, args.poll, model)
    else:
        commands = manual_commands(
            list(datasets.values()), args.out / "kernel", args.message, model
        )
        print("upload with --push, or run:", *commands, sep="\n  ")
    return 0
