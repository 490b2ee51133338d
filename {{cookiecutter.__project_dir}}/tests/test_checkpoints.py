"""Checkpoints: the newest model is in last.ckpt, a killed run resumes, files are never partial."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package }}.utils.atomic import current_umask
from {{ cookiecutter.package }}.cli.checkpoints import AtomicCheckpointIO
from {{ cookiecutter.package }}.cli import main

from helpers import assert_nothing_written, cli_args, fit, only_error_line
from full_disk import fill_disk

# ``epoch`` is 0 after the first epoch and only grows: monitored with mode "min", the metric never
# improves again. That is a plateau whatever the precision or the data do.
PLATEAU = ["--checkpoint.monitor", "epoch", "--checkpoint.mode", "min"]
STEPS_PER_EPOCH = 2

MARKER = '''
from pathlib import Path

from pytorch_lightning import Callback


class EpochMarker(Callback):
    """Append the number of each epoch that starts to epochs.log.

    When epoch N starts, epoch N - 1 has finished and its checkpoints are written.
    """

    def on_train_epoch_start(self, trainer, pl_module):
        with Path("epochs.log").open("a") as log:
            log.write(f"{trainer.current_epoch}\\n")
'''


def started_epochs(folder: Path) -> list[int]:
    log = folder / "epochs.log"
    return [int(line) for line in log.read_text().split()] if log.is_file() else []


@pytest.mark.slow
def test_last_checkpoint_is_rewritten_every_epoch_on_a_plateau(sample_dir, in_tmp):
    assert fit(sample_dir, "--trainer.max_epochs", "3", *PLATEAU) == 0
    last = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 3 * STEPS_PER_EPOCH
    best = [p.name for p in (in_tmp / "checkpoints").glob("best-*.ckpt")]
    assert best == ["best-epoch00.ckpt"]  # the plateau: only epoch 0 was ever "best"
    assert main(["predict", *cli_args(sample_dir, "--ckpt_path", "best", *PLATEAU)]) == 0
    assert main(["validate", *cli_args(sample_dir, "--ckpt_path", "last", *PLATEAU)]) == 0


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_finished_epoch(sample_dir, in_tmp):
    """SIGKILL in a later epoch of a run whose metric stopped improving, then --ckpt_path last."""
    (in_tmp / "marker.py").write_text(MARKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(in_tmp), *sys.path])}
    args = ["--trainer.limit_train_batches", str(STEPS_PER_EPOCH)]
    args += ["--trainer.limit_val_batches", "1", "--data.image_size", "32", *PLATEAU]
    args += ["--trainer.callbacks+=marker.EpochMarker", "--trainer.enable_progress_bar", "false"]
    command = [sys.executable, "-m", "{{ cookiecutter.package }}.cli", "fit"]
    run = subprocess.Popen(
        [*command, *cli_args(sample_dir, *args, "--trainer.max_epochs", "100")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while len(started_epochs(in_tmp)) < 4 and run.poll() is None:
        assert time.monotonic() < deadline, "the run did not finish 3 epochs in time"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    _, err = run.communicate()
    assert run.returncode == -signal.SIGKILL, err.decode()[-2000:]
    started = started_epochs(in_tmp)
    finished = started[-1] - 1
    assert finished >= 2
    state = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    # the kill may land while the next epoch's checkpoint is being written: either is whole
    assert state["epoch"] in (finished, finished + 1)
    assert state["global_step"] == (state["epoch"] + 1) * STEPS_PER_EPOCH
    resumed_to = state["epoch"] + 2
    resume = [*args, "--trainer.max_epochs", str(resumed_to), "--ckpt_path", "last"]
    subprocess.run([*command, *cli_args(sample_dir, *resume)], env=env, check=True, timeout=300)
    # no finished epoch was trained again: the resumed run started right after the checkpoint
    assert started_epochs(in_tmp)[len(started) :] == [resumed_to - 1]
    final = torch.load(in_tmp / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == resumed_to * STEPS_PER_EPOCH


@pytest.mark.slow
def test_a_second_run_in_the_same_folder_is_refused(sample_dir, in_tmp, capsys):
    assert fit(sample_dir) == 0
    before = sorted(p.name for p in (in_tmp / "checkpoints").iterdir())
    logs_before = sorted(str(p) for p in (in_tmp / "logs").rglob("*"))
    assert fit(sample_dir) == 2
    line = only_error_line(capsys)
    assert "holds the checkpoints of an earlier run" in line and "--ckpt_path last" in line
    assert sorted(p.name for p in (in_tmp / "checkpoints").iterdir()) == before
    assert sorted(str(p) for p in (in_tmp / "logs").rglob("*")) == logs_before
    assert fit(sample_dir, "--checkpoint.dirpath", "other") == 0  # another folder is fine
    assert (in_tmp / "other" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    ("subcommand", "ckpt", "expected"),
    [
        ("predict", "last", "--ckpt_path last: no checkpoints/last.ckpt"),
        ("validate", "best", "--ckpt_path best: no checkpoints/last.ckpt"),
        ("fit", "best", "--ckpt_path best: fit resumes from 'last' or a checkpoint file"),
    ],
)
def test_last_and_best_without_a_run_are_one_line(
    sample_dir, in_tmp, capsys, subcommand, ckpt, expected
):
    assert main([subcommand, *cli_args(sample_dir, "--ckpt_path", ckpt)]) == 2
    assert expected in only_error_line(capsys)
    assert_nothing_written(in_tmp)


def _edited_checkpoint(source: Path, target: Path, **hyper_parameters) -> Path:
    state = torch.load(source, weights_only=True)
    state["hyper_parameters"].update(hyper_parameters)
    torch.save(state, target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        {"backbone": "mobilenet_v3_small"},
        {"classes": ["complex", "healthy", "rust", "scab"]},
    ],
    ids=["another-architecture", "another-head-size"],
)
def test_a_checkpoint_that_does_not_fit_the_model_is_one_line(
    trained, data_copy, in_tmp, capsys, change
):
    (data_copy / "train.csv").unlink()  # no vocabulary check: the weights themselves must fail
    ckpt = _edited_checkpoint(trained, in_tmp.parent / "other.ckpt", **change)
    assert main(["predict", *cli_args(data_copy, "--ckpt_path", str(ckpt))]) == 2
    assert "the checkpoint's weights do not fit this model" in only_error_line(capsys)
    assert_nothing_written(in_tmp)


@pytest.mark.slow
def test_checkpoint_writes_are_whole_even_across_filesystems(sample_dir, in_tmp, monkeypatch):
    """A crash while a checkpoint is written never leaves a truncated file at its path.

    Lightning's default writer stages the file in the system temp folder; on another filesystem
    (here /dev/shm) the final move is a copy onto the target. The copy is made to fail half-way,
    as a kill or a full disk would: the fit must not depend on it.
    """
    staging = Path("/dev/shm")
    if not staging.is_dir() or staging.stat().st_dev == in_tmp.stat().st_dev:
        pytest.skip("needs a temp folder on another filesystem")
    monkeypatch.setattr(tempfile, "tempdir", tempfile.mkdtemp(dir=staging))
    real_copyfile = shutil.copyfile

    def copy_half_then_crash(src, dst, *args, **kwargs):
        if str(dst).endswith(".ckpt"):
            Path(dst).write_bytes(Path(src).read_bytes()[: Path(src).stat().st_size // 2])
            raise OSError(28, "No space left on device")
        return real_copyfile(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copy_half_then_crash)
    assert fit(sample_dir) == 0
    for ckpt in (in_tmp / "checkpoints").iterdir():
        assert ckpt.suffix == ".ckpt", f"left behind: {ckpt.name}"
        assert torch.load(ckpt, weights_only=True)["global_step"] == STEPS_PER_EPOCH


def test_an_interrupted_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "weights": torch.ones(4)}, target)
    real_save = torch.save

    def save_half_then_die(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.truncate(file.tell() // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2, "weights": torch.zeros(4)}, target)
    assert torch.load(target, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_no_partial_file(
    sample_dir, in_tmp, capsys, monkeypatch
):
    fill_disk(monkeypatch, in_tmp / "checkpoints")
    assert fit(sample_dir) == 2
    line = only_error_line(capsys)
    assert "checkpoints/" in line and ".ckpt: cannot write it, the disk is full" in line
    assert_nothing_written(in_tmp / "checkpoints")


def test_a_full_disk_for_lightnings_own_files_is_one_line_too(
    sample_dir, in_tmp, capsys, monkeypatch
):
    fill_disk(monkeypatch, in_tmp)  # the first write is Lightning's config.yaml of the run
    assert fit(sample_dir) == 2
    assert "the disk is full (No space left on device)" in only_error_line(capsys)


def test_written_files_get_the_usual_permissions(trained, sample_dir, in_tmp):
    """Checkpoints and submissions are readable like any new file (mkstemp's 0600 is private)."""
    expected = 0o666 & ~current_umask()
    args = ["--ckpt_path", str(trained), "--submission.probabilities_path", "probs.csv"]
    assert main(["predict", *cli_args(sample_dir, *args)]) == 0
    for path in (trained, in_tmp / "submission.csv", in_tmp / "probs.csv"):
        assert path.stat().st_mode & 0o777 == expected, path.name


class PlantedCode:
    """Unpickling this object would create the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.mkdir, (self.marker,))


@pytest.mark.slow
def test_a_checkpoint_that_would_run_code_is_refused(trained, sample_dir, in_tmp, capsys):
    state = torch.load(trained, weights_only=True)
    marker = in_tmp.parent / "pwned"
    state["hyper_parameters"]["payload"] = PlantedCode(marker)
    torch.save(state, in_tmp.parent / "hostile.ckpt")
    args = ["--ckpt_path", str(in_tmp.parent / "hostile.ckpt")]
    for subcommand in ("predict", "validate", "fit"):
        assert main([subcommand, *cli_args(sample_dir, *args)]) == 2
        assert "not a readable checkpoint" in only_error_line(capsys)
    assert not marker.exists()
    assert_nothing_written(in_tmp)
    with pytest.raises(Exception, match="Weights only load failed"):
        AtomicCheckpointIO().load_checkpoint(in_tmp.parent / "hostile.ckpt")
    assert not marker.exists()
