"""A command reads each checkpoint file once: the one read is passed on, never repeated.

Every open of a ``.ckpt`` file for reading is counted, whoever opens it (``read_checkpoint``,
Lightning's own loader, torch), so a second load on any path shows.
"""

import builtins
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from {{ cookiecutter.package }}.cli import main
from fake_runs import package
from helpers import cli_args


@pytest.fixture
def reads(monkeypatch) -> Counter:
    """Opens for reading of each ``.ckpt`` file during the test, by resolved path."""
    counts: Counter = Counter()
    real_open = builtins.open

    def counting_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and str(file).endswith(".ckpt") and "r" in mode:
            counts[Path(file).resolve()] += 1
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    return counts


def cv_folder(trained: Path, folder: Path, folds: int = 2) -> list[Path]:
    """A ``cv`` output folder whose folds' ``best.ckpt`` are copies of ``trained``."""
    folder.mkdir()
    (folder / "folds.csv").write_text("image,fold\n", encoding="utf-8")
    (folder / "plan.json").write_text(json.dumps({"folds": folds}), encoding="utf-8")
    members = [folder / f"fold{k}" / "best.ckpt" for k in range(folds)]
    for member in members:
        member.parent.mkdir()
        shutil.copy(trained, member)
    return members


def test_predict_reads_the_checkpoint_once(trained, sample_dir, in_tmp, tmp_path, reads):
    ckpt = Path(shutil.copy(trained, tmp_path / "model.ckpt"))
    reads.clear()
    assert main(["predict", *cli_args(sample_dir, "--ckpt_path", str(ckpt))]) == 0
    assert dict(reads) == {ckpt.resolve(): 1}


def test_validate_best_reads_last_and_best_once_each(trained, sample_dir, in_tmp, reads):
    """``best`` is found in ``last.ckpt``; Lightning's restore gets the one read of the best."""
    args = cli_args(sample_dir, "--ckpt_path", "best", "--checkpoint.dirpath", str(trained.parent))
    assert main(["validate", *args]) == 0
    best = [path for path in reads if path != trained.resolve()]
    assert len(best) == 1 and best[0].name.startswith("best-")
    assert dict(reads) == {trained.resolve(): 1, best[0]: 1}


@pytest.mark.slow
def test_a_fold_ensemble_predict_reads_each_fold_once(trained, sample_dir, in_tmp, tmp_path, reads):
    members = cv_folder(trained, tmp_path / "cv")
    reads.clear()
    args = cli_args(sample_dir, "--ckpt_path", str(tmp_path / "cv"), "--tta", "hflip")
    assert main(["predict", *args]) == 0
    assert dict(reads) == {member.resolve(): 1 for member in members}


@pytest.mark.slow
@pytest.mark.parametrize("folds", [0, 2])
def test_package_reads_each_source_checkpoint_once(folds, trained, in_tmp, tmp_path, reads):
    if folds:
        sources, source = cv_folder(trained, tmp_path / "cv", folds), tmp_path / "cv"
    else:
        source = Path(shutil.copy(trained, tmp_path / "model.ckpt"))
        sources = [source]
    reads.clear()
    code, _ = package(str(source), str(tmp_path / "out"), "--user", "u")
    assert code == 0
    assert {path: reads[path.resolve()] for path in sources} == {path: 1 for path in sources}
