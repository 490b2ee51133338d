"""``tune``: the search file is checked before any trial; trials, resume and shared studies."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.reports import ledger
from {{ cookiecutter.package }}.utils.errors import DataError
from {{ cookiecutter.package }}.workflows.fit_jobs import parse_fit_config
from {{ cookiecutter.package }}.workflows.search_space import load_search_space, trial_flags

from helpers import (
    CONFIG_DIR,
    QUICK_EPOCH,
    SAMPLE_DIR,
    cli_args,
    only_error_line,
    read_csv_rows,
)

optuna = pytest.importorskip("optuna", reason="tune needs the [tune] extra")

from {{ cookiecutter.package }}.utils import atomic  # noqa: E402
from {{ cookiecutter.package }}.workflows import tune, tune_study  # noqa: E402
from {{ cookiecutter.package }}.workflows.tune import PruningCallback  # noqa: E402

SHORT = [
    *QUICK_EPOCH,
    "--data.image_size",
    "32",
    "--trainer.enable_progress_bar",
    "false",
]
SPACE = {
    "model.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    "model.backbone": {"type": "categorical", "choices": ["resnet18"]},
}


@pytest.fixture(scope="module")
def fit_config():
    return parse_fit_config(cli_args(SAMPLE_DIR))


def write_space(folder: Path, space: dict) -> Path:
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def tune_args(search: Path, *extra: str, name: str = "s") -> list[str]:
    study = ["--study", name]
    return ["tune", "--search", str(search), *study, *cli_args(SAMPLE_DIR, *SHORT, *extra)]


@pytest.mark.parametrize(
    "key, spec, problem",
    [
        ("model.no_such_flag", {"type": "float", "low": 0.1, "high": 0.2}, "no such fit flag"),
        ("model.lr", {"type": "float", "low": 0.1, "high": 0.1}, "must be below high"),
        ("model.lr", {"type": "float", "low": 0.0, "high": 0.1, "log": True}, "low > 0"),
        ("model.lr", {"type": "uniform", "low": 0.0, "high": 0.1}, "type 'uniform'"),
        ("model.lr", {"type": ["float"], "low": 0.0, "high": 0.1}, "type ['float']"),
        ("model.lr", {"type": "float", "high": 0.1}, "`low` must be a number"),
        ("model.backbone", {"type": "categorical"}, "non-empty list `choices`"),
        ("model.backbone", {"type": "categorical", "choices": []}, "non-empty list `choices`"),
        ("data.batch_size", {"type": "int", "low": 8, "high": 64.5}, "must be an integer"),
        ("model.lr", {"type": "float", "low": 0.1, "high": 0.2, "lo": 1}, "unknown field(s) lo"),
        ("model.lr", "0.1", "expected a mapping"),
        ("model.lr", {"type": "float", "low": 0.0, "high": float("inf")}, "`high` must be a fin"),
        ("model.lr", {"type": "float", "low": float("nan"), "high": 1.0}, "`low` must be a fin"),
        ("model.lr", {"type": "float", "low": 0.0, "high": 0.5, "step": float("inf")}, "`step`"),
    ],
)
def test_a_search_file_mistake_names_the_file_key_and_problem(
    tmp_path, fit_config, key, spec, problem
):
    path = write_space(tmp_path, {**SPACE, key: spec})
    with pytest.raises(DataError) as error:
        load_search_space(path, fit_config)
    assert str(error.value).startswith(f"{path}: {key}: ") and problem in str(error.value)


def test_a_field_given_twice_in_a_range_is_refused(tmp_path, fit_config):
    path = tmp_path / "search.yaml"
    path.write_text("model.lr: {type: float, low: 0.001, high: 0.01, low: 0.002}\n")
    with pytest.raises(DataError, match="search.yaml: low: given twice \\(line 1\\)$"):
        load_search_space(path, fit_config)


def test_a_merge_key_may_still_override_what_it_brings(tmp_path, fit_config):
    path = tmp_path / "search.yaml"
    path.write_text(
        "model.lr: &range {type: float, low: 0.001, high: 0.01}\n"
        "model.dropout: {<<: *range, low: 0.0, high: 0.5}\n"
    )
    _, dropout = load_search_space(path, fit_config)
    assert (dropout.low, dropout.high) == (0.0, 0.5)


def test_a_value_yaml_cannot_build_is_one_line_naming_the_file(in_tmp, capsys):
    path = in_tmp / "search.yaml"
    path.write_text("model.lr: {type: float, low: 2020-13-45, high: 0.1}\n")  # no 13th month
    assert main(tune_args(path, "--n-trials", "1")) == 2
    assert only_error_line(capsys).startswith(f"error: {path}: month must be in 1..12")
    assert not (in_tmp / "runs").exists()


def test_a_bad_search_file_stops_tune_before_any_trial(in_tmp, capsys):
    path = write_space(in_tmp, {"model.lrr": {"type": "float", "low": 0.1, "high": 0.2}})
    assert main(tune_args(path, "--n-trials", "1")) == 2
    assert "model.lrr: no such fit flag" in only_error_line(capsys)
    assert not (in_tmp / "runs").exists()


@pytest.mark.parametrize(
    "key, spec, problem",
    [
        ("model.dropout", {"type": "float", "low": 0.0, "high": 1.5}, "fit refuses 1.5"),
        ("model.scheduler", {"type": "categorical", "choices": ["cosine", "step"]}, "'step'"),
        ("data.image_size", {"type": "int", "low": -32, "high": 64}, "fit refuses -32"),
    ],
)
def test_a_value_fit_would_refuse_stops_tune_before_any_trial(in_tmp, capsys, key, spec, problem):
    assert main(tune_args(write_space(in_tmp, {**SPACE, key: spec}), "--n-trials", "1")) == 2
    line = only_error_line(capsys)
    assert f"search.yaml: {key}: " in line and problem in line
    assert not (in_tmp / "runs").exists()


def test_a_backbone_choice_torchvision_lacks_stops_tune_before_any_trial(in_tmp, capsys):
    space = {"model.backbone": {"type": "categorical", "choices": ["resnet18", "resnet181"]}}
    assert main(tune_args(write_space(in_tmp, space), "--n-trials", "1")) == 2
    line = only_error_line(capsys)
    assert "search.yaml: model.backbone: backbone 'resnet181'" in line
    assert not (in_tmp / "runs").exists()


def test_a_trial_folder_left_from_a_deleted_study_is_one_clean_error(in_tmp, capsys):
    leftover = in_tmp / "runs" / "tune" / "s" / "trial_0" / "checkpoints"
    leftover.mkdir(parents=True)
    (leftover / "last.ckpt").write_bytes(b"")
    assert main(tune_args(write_space(in_tmp, SPACE), "--n-trials", "1")) == 2
    line = only_error_line(capsys)
    assert "trial_0: holds a trial of an earlier study named s" in line
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "url, problem",
    [
        ("sqlite:///a_folder", "unable to open database file"),
        # The form `tune --help` shows: the driver of the [postgres] extra, whatever SQLAlchemy's
        # default for the bare scheme.
        ("postgresql://ann:s3cret@/db?host=/no/such/folder", "no/such/folder"),
        ("postgresql://ann@/db?host=/no/such/folder&password=s3cret", "no/such/folder"),
    ],
)
def test_a_storage_that_cannot_be_opened_is_one_clean_error(in_tmp, capsys, url, problem):
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg", reason="the [postgres] extra")
    (in_tmp / "a_folder").mkdir()
    assert main(tune_args(write_space(in_tmp, SPACE), "--n-trials", "1", "--storage", url)) == 2
    line = only_error_line(capsys)
    assert "cannot open the database" in line and problem in line
    assert "s3cret" not in line


def test_an_explicit_psycopg2_url_without_psycopg2_says_what_to_install(
    in_tmp, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    url = "postgresql+psycopg2://ann:s3cret@/db?host=/no/such/folder"
    assert main(tune_args(write_space(in_tmp, SPACE), "--n-trials", "1", "--storage", url)) == 2
    line = only_error_line(capsys)
    assert "pip install psycopg2-binary" in line and "postgresql://" in line
    assert "s3cret" not in line and not (in_tmp / "runs").exists()


@pytest.mark.parametrize(
    "url, problem",
    [
        ("postgresql://ann:s3cret@host:abc/db", "the port 'abc' is not a number"),
        ("postgresql://ann@host:abc/db?password=s3cret", "the port 'abc' is not a number"),
        ("postgres://ann@host/db?sslpassword=s3cret", "not a database URL"),
        ("ann:s3cret@host/db", "expected an Optuna storage URL"),
        ("ann@host/db?PassWord=s3cret", "expected an Optuna storage URL"),
    ],
)
def test_a_storage_url_mistake_is_one_line_that_shows_no_password(in_tmp, capsys, url, problem):
    assert main(tune_args(write_space(in_tmp, SPACE), "--n-trials", "1", "--storage", url)) == 2
    line = only_error_line(capsys)
    assert line.startswith("error: --storage ") and problem in line
    assert "s3cret" not in line and "***" in line
    assert not (in_tmp / "runs").exists()


def test_a_sqlite_file_in_a_folder_that_cannot_be_made_is_one_clean_error(in_tmp, capsys):
    (in_tmp / "runs").write_text("a file where the folder should be\n")
    url = "sqlite:///runs/tune/studies.db"
    assert main(tune_args(write_space(in_tmp, SPACE), "--n-trials", "1", "--storage", url)) == 2
    line = only_error_line(capsys)
    assert "--storage sqlite:///runs/tune/studies.db: cannot make the folder runs/tune" in line


@pytest.mark.parametrize(
    "name, problem",
    [
        ("a\nb", "'a\\nb': a study name is"),
        ("-rf", "'-rf': a study name is"),
        ("a/b", "'a/b': a study name is"),
        ("..", "'..': a study name is"),
        ("x" * 300, "at most 100 characters (got 300)"),
    ],
)
def test_a_study_name_that_cannot_be_a_folder_name_is_refused(in_tmp, capsys, name, problem):
    args = tune_args(write_space(in_tmp, SPACE), "--n-trials", "1", name=name)
    args[args.index("--study") : args.index("--study") + 2] = [f"--study={name}"]
    assert main(args) == 2
    line = only_error_line(capsys)
    assert line.startswith("error: --study") and problem in line
    assert not (in_tmp / "runs").exists()


def test_an_infinite_bound_is_refused_before_any_trial(in_tmp, capsys):
    space = {**SPACE, "model.dropout": {"type": "float", "low": 0.0, "high": float("inf")}}
    assert main(tune_args(write_space(in_tmp, space), "--n-trials", "1")) == 2
    line = only_error_line(capsys)
    assert "search.yaml: model.dropout: `high` must be a finite number (got inf)" in line
    assert not (in_tmp / "runs").exists()


def test_a_key_given_twice_in_the_search_file_is_refused(in_tmp, capsys):
    path = in_tmp / "search.yaml"
    path.write_text(
        "model.lr: {type: float, low: 0.001, high: 0.01}\n"
        "model.dropout: {type: float, low: 0.0, high: 0.5}\n"
        "model.lr: {type: float, low: 0.0001, high: 0.1, log: true}\n"
    )
    assert main(tune_args(path, "--n-trials", "1")) == 2
    assert "search.yaml: model.lr: given twice (lines 1 and 3)" in only_error_line(capsys)
    assert not (in_tmp / "runs").exists()


def full_disk_from_write(n: int, real_open):
    """An ``open`` whose ``n``-th and later appends (mode ``ab``) write 10 bytes and fail."""
    writes = [0]

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data: bytes) -> int:
            writes[0] += 1
            if writes[0] < n:
                return self.handle.write(data)
            self.handle.write(data[:10])
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def fake_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return FullDisk(handle) if mode == "ab" else handle

    return fake_open


def test_a_full_disk_under_the_journal_is_one_line_and_leaves_no_partial_entry(
    in_tmp, capsys, monkeypatch
):
    from optuna.storages.journal import _file

    # The first append creates the study; the second, the first trial, finds the disk full.
    monkeypatch.setattr(_file, "open", full_disk_from_write(2, open), raising=False)
    assert main(tune_args(write_space(in_tmp, SPACE), "--n-trials", "1")) == 2
    line = only_error_line(capsys)
    assert line.startswith("error: runs/tune/s.journal: ") and "the disk is full" in line
    monkeypatch.undo()
    lines = (in_tmp / "runs" / "tune" / "s.journal").read_bytes().splitlines(keepends=True)
    assert lines and all(line.endswith(b"\n") for line in lines)
    assert load(in_tmp).trials == []


@pytest.mark.slow
def test_a_full_disk_when_writing_trials_csv_is_one_line_and_writes_nothing(
    in_tmp, capsys, monkeypatch
):
    real_writer = atomic.csv.writer  # every CSV output goes through utils.atomic.write_csv

    class FullDiskWriter:
        """The writer of trials.csv finds the disk full after a few bytes (the trial's logs
        are written as usual)."""

        def __init__(self, handle, *args, **kwargs):
            self.handle = handle
            self.real = real_writer(handle, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.real, name)

        def writerows(self, rows):
            if ".trials.csv." not in self.handle.name:
                return self.real.writerows(rows)
            self.handle.write("trial,st")
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.csv, "writer", FullDiskWriter)
    assert main(tune_args(write_space(in_tmp, SPACE), "--n-trials", "1")) == 2
    line = only_error_line(capsys)
    assert line.startswith("error: runs/tune/s/trials.csv: ") and "the disk is full" in line
    out = in_tmp / "runs" / "tune" / "s"
    assert sorted(path.name for path in out.iterdir()) == ["trial_0"]


def test_the_shipped_search_file_fits_the_baseline():
    baseline = ["--config", str(CONFIG_DIR / "baseline.yaml")]
    config = parse_fit_config(baseline)
    params = load_search_space(CONFIG_DIR / "search.yaml", config)
    assert {"model.lr", "model.dropout", "model.weight_decay", "data.image_size"} <= {
        p.name for p in params
    }
    assert "model.backbone" in {p.name for p in params}
    tune.check_values(baseline, CONFIG_DIR / "search.yaml", params)  # backbones too


def test_trial_values_become_flags_the_fit_parser_reads_back():
    flags = trial_flags({"model.lr": 0.001, "model.channels_last": False, "data.image_size": 64})
    assert flags == [
        "--model.lr",
        "0.001",
        "--model.channels_last",
        "false",
        "--data.image_size",
        "64",
    ]
    config = parse_fit_config(cli_args(SAMPLE_DIR, *flags))
    assert (config.model.lr, config.model.channels_last, config.data.image_size) == (
        0.001,
        False,
        64,
    )


def test_without_optuna_tune_names_the_extra_to_install(in_tmp, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    path = write_space(in_tmp, SPACE)
    assert main(tune_args(path, "--n-trials", "1")) == 2
    assert ".[tune]" in only_error_line(capsys)
    assert not (in_tmp / "runs").exists()


class FakeTrainer:
    sanity_checking = False
    current_epoch = 3
    callback_metrics = {"val/f1": 0.25}


def test_the_pruning_callback_reports_val_f1_and_stops_a_pruned_trial():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(0.5))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        PruningCallback(trial).on_validation_end(FakeTrainer(), None)  # type: ignore[arg-type]
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[0].intermediate_values == {3: 0.25}


# Fit flags the study's trials must override: values outside SPACE's ranges and choices.
CONFIG_VALUES = ["--model.lr", "0.5", "--model.dropout", "0.9"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A 2-trial study on the sample set, 1 short epoch per trial; returns the working folder."""
    work = tmp_path_factory.mktemp("tune")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setattr(ledger, "LEDGER", work / "runs" / "ledger.csv")
        path = write_space(work, SPACE)
        assert main(tune_args(path, "--n-trials", "2", *CONFIG_VALUES)) == 0
    return work


def load(work: Path, name: str = "s") -> "optuna.Study":
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(
        JournalFileBackend(str(work / "runs" / "tune" / f"{name}.journal"))
    )
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_tune_writes_trial_folders_trials_csv_and_a_best_yaml_fit_accepts(study, capsys):
    out = study / "runs" / "tune" / "s"
    assert (out / "trial_0" / "checkpoints" / "last.ckpt").is_file()
    assert (out / "trial_1" / "checkpoints" / "last.ckpt").is_file()
    rows = read_csv_rows(out / "trials.csv")
    assert [row["trial"] for row in rows] == ["0", "1"]
    assert {row["state"] for row in rows} == {"COMPLETE"}
    assert all(row["model.lr"] and row["value"] for row in rows)
    for trial in load(study).trials:
        assert sorted(trial.intermediate_values) == [0]
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["model"]["lr"] == load(study).best_params["model.lr"]
    assert main(["fit", "--config", str(out / "best.yaml"), "--print_config"]) == 0
    assert "model:" in capsys.readouterr().out
    (row,) = read_csv_rows(study / "runs" / "ledger.csv")  # the best trial's row
    best_trial = load(study).best_trial
    assert row["command"] == "tune" and row["config"] == str(Path("runs/tune/s/best.yaml"))
    assert row["out"] == str(Path("runs/tune/s") / f"trial_{best_trial.number}")
    assert float(row["cv"]) == pytest.approx(best_trial.value, abs=1e-4)


@pytest.mark.slow
def test_each_trial_trained_with_its_sampled_values(study):
    trials = load(study).trials
    assert len(trials) >= 2
    for trial in trials:
        checkpoint = study / "runs" / "tune" / "s" / f"trial_{trial.number}" / "checkpoints"
        state = torch.load(checkpoint / "last.ckpt", weights_only=True, map_location="cpu")
        used = state["hyper_parameters"]
        assert used["lr"] == pytest.approx(trial.params["model.lr"], rel=1e-12)
        assert used["dropout"] == pytest.approx(trial.params["model.dropout"], abs=1e-12)
        assert used["backbone"] == trial.params["model.backbone"]
        groups = {g["name"]: g for g in state["optimizer_states"][0]["param_groups"]}
        lr, scale = trial.params["model.lr"], used["backbone_lr_scale"]
        assert groups["head"]["initial_lr"] == pytest.approx(lr, rel=1e-12)
        assert groups["backbone"]["initial_lr"] == pytest.approx(lr * scale, rel=1e-12)


@pytest.mark.slow
def test_running_tune_again_resumes_the_study(study, tmp_path, monkeypatch):
    work = Path(shutil.copytree(study, tmp_path / "work"))  # the shared study stays as it is
    monkeypatch.chdir(work)
    assert main(tune_args(work / "search.yaml", "--n-trials", "1")) == 0
    assert len(load(work).trials) == 3 and len(load(study).trials) == 2
    assert len(read_csv_rows(work / "runs" / "tune" / "s" / "trials.csv")) == 3


@pytest.mark.slow
def test_an_aggressive_pruner_prunes_and_no_best_yaml_is_written(in_tmp, monkeypatch):
    monkeypatch.setattr(tune, "make_pruner", lambda name: optuna.pruners.ThresholdPruner(2.0))
    assert main(tune_args(write_space(in_tmp, SPACE), "--n-trials", "1")) == 0
    out = in_tmp / "runs" / "tune" / "s"
    assert [row["state"] for row in read_csv_rows(out / "trials.csv")] == ["PRUNED"]
    assert load(in_tmp).trials[0].intermediate_values.keys() == {0}
    assert not (out / "best.yaml").exists()


@pytest.mark.slow
def test_a_database_url_storage_with_heartbeats_holds_the_study(in_tmp):
    url = "sqlite:///runs/tune/studies.db"  # the README's, in a project that has no runs/ yet
    args = tune_args(write_space(in_tmp, SPACE), "--n-trials", "1", "--storage", url)
    assert main(args) == 0
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE]
    assert not (in_tmp / "runs" / "tune" / "s.journal").exists()
    assert (in_tmp / "runs" / "tune" / "s" / "best.yaml").is_file()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
def test_the_trial_of_a_dead_worker_is_failed_and_retried(in_tmp, monkeypatch):
    monkeypatch.setattr(tune_study, "HEARTBEAT_SECONDS", 1)
    url = f"sqlite:///{in_tmp / 'studies.db'}"
    storage = tune.make_storage(url, in_tmp / "unused.journal")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    dead = study.ask({"model.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    storage.record_heartbeat(dead._trial_id)  # a worker that started a trial, then died
    time.sleep(2.5)
    args = tune_args(write_space(in_tmp, SPACE), "--n-trials", "1", "--storage", url)
    assert main(args) == 0
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params["model.lr"] == trials[0].params["model.lr"]


@pytest.mark.slow
def test_two_workers_started_together_share_one_journal(in_tmp):
    path = write_space(in_tmp, SPACE)
    command = [sys.executable, "-m", "{{ cookiecutter.package }}.cli"]
    args = tune_args(path, "--n-trials", "1", name="shared")
    workers = [
        subprocess.Popen(
            [*command, *args],
            cwd=in_tmp,
            env={**os.environ, "OMP_NUM_THREADS": "1"},  # share the cores, not one each per core
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=300)[0].decode() for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    trials = load(in_tmp, "shared").trials
    assert len(trials) == 2
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert all(sorted(t.intermediate_values) == [0] for t in trials)


# Python as a terminal starts it: Ctrl-C raises KeyboardInterrupt even if our parent ignores it.
WORKER = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " from {{ cookiecutter.package }}.cli import main; sys.exit(main(sys.argv[1:]))"
)


def wait_for_an_epoch(work: Path, worker: subprocess.Popen) -> None:
    """Wait until the worker's first trial has reported an epoch (it is training)."""
    journal = work / "runs" / "tune" / "s.journal"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[0].decode(errors="replace")
        if journal.exists():
            trials = load(work).trials
            if trials and trials[0].intermediate_values:
                return
        time.sleep(0.5)
    pytest.fail("the first trial reported no epoch within 300 s")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_worker_fails_its_trial_and_queues_it_for_the_next(in_tmp, stop):
    path = write_space(in_tmp, SPACE)
    args = tune_args(path, "--n-trials", "1", "--trainer.max_epochs", "1000")
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, *args],
        cwd=in_tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_an_epoch(in_tmp, worker)
        worker.send_signal(stop)
        output = worker.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        worker.kill()
    assert [t.state.name for t in load(in_tmp).trials] == ["FAIL", "WAITING"], output
    assert worker.returncode == 128 + stop, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: stopped by") and "trial 0 is marked FAIL" in last, output
    assert "Traceback" not in output
    assert main(tune_args(path, "--n-trials", "1")) == 0
    stopped, rerun = load(in_tmp).trials
    assert (stopped.state.name, rerun.state.name) == ("FAIL", "COMPLETE")
    assert rerun.params == stopped.params and rerun.user_attrs["retry_of"] == 0


@pytest.mark.slow
def test_workers_starting_together_on_a_new_sqlite_database_all_join_one_study(in_tmp):
    # Who wins the race to create the tables is chance: several fresh databases.
    for round_ in range(4):
        url = f"sqlite:///{in_tmp / f'race{round_}.db'}"
        barrier = threading.Barrier(4)
        got: list[str] = []

        def join() -> None:
            barrier.wait()
            try:
                storage = tune.make_storage(url, in_tmp / "unused.journal")
                got.append(tune.open_study("s", storage, tune.make_pruner("median")).study_name)
            except Exception as exc:  # any failure is the answer
                got.append(repr(exc))

        threads = [threading.Thread(target=join) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert got == ["s"] * 4
