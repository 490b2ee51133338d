"""``tune`` against a real PostgreSQL server: shared study, and a killed worker's trial retried.

The storage URL is the bare ``postgresql://...`` that ``tune --help`` shows.

Each test starts a throw-away server (``postgres_server``) and always stops it. Skipped, with the
reason, where PostgreSQL's binaries or the driver are absent.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from helpers import QUICK_EPOCH, SAMPLE_DIR, cli_args
from postgres_server import new_database, throwaway_postgres, why_unavailable

optuna = pytest.importorskip("optuna", reason="tune needs the [tune] extra")

from {{ cookiecutter.package }}.workflows.tune_study import make_pruner, make_storage, open_study  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable())),
]

SPACE = {
    "model.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
}
SHORT = [
    *QUICK_EPOCH,  # each test gives its own --trainer.max_epochs after these
    "--data.image_size",
    "32",
    "--trainer.enable_progress_bar",
    "false",
]
# A worker whose heartbeat beats every second and whose trials are stale after two: the
# defaults (60 s, 120 s) behave the same, only slower.
FAST_HEARTBEAT = (
    "import sys; from {{ cookiecutter.package }}.workflows import tune_study;"
    " from {{ cookiecutter.package }}.cli import main;"
    " tune_study.HEARTBEAT_SECONDS = 1; sys.exit(main(sys.argv[1:]))"
)
STALE_AFTER = 2
# Workers that share the cores with one thread each, not one per core (which is 5x slower).
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
PLAIN = "import sys; from {{ cookiecutter.package }}.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def url():
    with throwaway_postgres() as url:
        yield url


def worker(folder: Path, url: str, *extra: str, code: str = FAST_HEARTBEAT) -> subprocess.Popen:
    """A ``tune`` process in ``folder`` on the study ``pg`` of ``url``."""
    search = folder / "search.yaml"
    search.write_text(yaml.safe_dump(SPACE))
    args = ["tune", "--search", str(search), "--study", "pg", "--storage", url]
    return subprocess.Popen(
        [sys.executable, "-c", code, *args, *cli_args(SAMPLE_DIR, *SHORT, *extra)],
        cwd=folder,
        env=ONE_THREAD,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(*workers: subprocess.Popen) -> None:
    outputs = [w.communicate(timeout=600)[0].decode(errors="replace") for w in workers]
    assert [w.returncode for w in workers] == [0] * len(workers), "\n\n".join(outputs)


def storage(url: str):
    """The study storage of ``url`` as tune opens it (its driver, whatever SQLAlchemy's)."""
    return make_storage(url, Path("unused.journal"))


def trials(url: str) -> list:
    return optuna.load_study(study_name="pg", storage=storage(url)).trials


def test_two_workers_started_together_share_one_postgresql_study(in_tmp, url):
    args = ["--n-trials", "1", "--trainer.max_epochs", "2"]
    finish(*(worker(in_tmp, url, *args, code=PLAIN) for _ in "ab"))
    done = trials(url)
    assert [t.state.name for t in done] == ["COMPLETE", "COMPLETE"]
    assert all(sorted(t.intermediate_values) == [0, 1] for t in done)
    assert len({t.params["model.lr"] for t in done}) == 2
    assert (in_tmp / "runs" / "tune" / "pg" / "best.yaml").is_file()


def join_together(url: str, workers: int) -> list[str]:
    """``workers`` threads open the study ``pg`` of ``url`` at the same moment; what each got."""
    barrier = threading.Barrier(workers)
    got: list[str] = []

    def join() -> None:
        barrier.wait()
        try:
            storage = make_storage(url, Path("unused.journal"))
            got.append(open_study("pg", storage, make_pruner("median")).study_name)
        except Exception as exc:  # any failure is the answer
            got.append(repr(exc))

    threads = [threading.Thread(target=join) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return got


def test_workers_starting_together_on_a_new_database_all_join_one_study(url):
    # The race to create the tables is lost or won by chance: several fresh databases.
    for round_ in range(4):
        database = new_database(url, f"race{round_}")
        assert join_together(database, 4) == ["pg"] * 4
        assert len(optuna.get_all_study_summaries(storage(database))) == 1


def wait_for_a_reported_epoch(url: str, killed: subprocess.Popen) -> None:
    """Wait until the first trial has reported an epoch (the worker is mid-trial)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert killed.poll() is None, killed.communicate()[0].decode(errors="replace")
        try:
            running = trials(url)
        except KeyError:  # the study does not exist yet
            running = []
        if running and running[0].intermediate_values:
            return
        time.sleep(0.5)
    pytest.fail("the first trial reported no epoch within 300 s")


@pytest.mark.filterwarnings("ignore:.*retried_trial_number is experimental")
def test_a_killed_workers_trial_is_failed_and_retried_by_the_next_worker(in_tmp, url):
    killed = worker(in_tmp, url, "--n-trials", "1", "--trainer.max_epochs", "1000")
    try:
        wait_for_a_reported_epoch(url, killed)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
    assert [t.state.name for t in trials(url)] == ["RUNNING"]
    time.sleep(STALE_AFTER + 1)
    finish(worker(in_tmp, url, "--n-trials", "1", "--trainer.max_epochs", "1"))
    dead, retried = trials(url)
    assert (dead.state.name, retried.state.name) == ("FAIL", "COMPLETE")
    assert optuna.storages.RetryFailedTrialCallback.retried_trial_number(retried) == dead.number
    assert retried.params == dead.params
    assert sorted(retried.intermediate_values) == [0]
