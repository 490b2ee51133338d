"""The logger overlays of ``configs/logger/``: each run's ``val/f1`` read back by the tool itself.

One short fit per overlay, then the metric is read through that tool's own reader
(TensorBoard's event reader, MLflow's client), not by parsing its files by hand.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package }}.cli import loggers
from {{ cookiecutter.package }}.workflows.fit_jobs import parse_fit_config

from helpers import CONFIG_DIR, assert_nothing_written, cli_args, fit, logged, only_error_line

LOGGER_CONFIGS = CONFIG_DIR / "logger"


def _overlay(name: str) -> list[str]:
    return ["--config", str(LOGGER_CONFIGS / f"{name}.yaml")]


def _tensorboard_f1(folder: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = folder.rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    return [event.value for event in accumulator.Scalars("val/f1")]


def _mlflow_f1(work: Path) -> list[float]:
    from mlflow.tracking import MlflowClient

    assert (work / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    experiment = client.get_experiment_by_name("{{ cookiecutter.package }}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    return [metric.value for metric in client.get_metric_history(run.info.run_id, "val/f1")]


@pytest.mark.parametrize("name", ["csv", "tensorboard", "mlflow", "wandb"])
def test_every_logger_overlay_parses(name):
    config = parse_fit_config(cli_args(Path("tests/data"), *_overlay(name)))
    class_path = config.trainer.logger.class_path
    assert class_path.rsplit(".", 1)[-1].lower().startswith(name[:5])


@pytest.mark.parametrize("name, module", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_a_missing_logger_package_is_one_line_naming_the_extra(
    sample_dir, in_tmp, capsys, monkeypatch, name, module
):
    if loggers.is_importable(module):
        real = loggers.is_importable
        monkeypatch.setattr(
            loggers, "is_importable", lambda m: not m.startswith(module) and real(m)
        )
    assert fit(sample_dir, *_overlay(name)) == 2
    line = only_error_line(capsys)
    assert f'pip install -e ".[{name}]"' in line and module in line
    assert_nothing_written(in_tmp)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["csv", "tensorboard", "mlflow"])
def test_a_fit_with_the_logger_overlay_logs_val_f1(sample_dir, in_tmp, name):
    if name != "csv":
        pytest.importorskip(name, reason=f'the extra: pip install -e ".[{name}]"')
    assert fit(sample_dir, *_overlay(name), "--trainer.max_epochs", "2") == 0
    readers = {
        "csv": lambda: logged(in_tmp / "logs", "val/f1"),
        "tensorboard": lambda: _tensorboard_f1(in_tmp / "logs"),
        "mlflow": lambda: _mlflow_f1(in_tmp),
    }
    values = readers[name]()
    assert len(values) == 2 and all(0.0 <= value <= 1.0 for value in values)


@pytest.mark.slow
def test_the_mlflow_overlay_turns_telemetry_off(sample_dir, tmp_path):
    """No installation id under the user's config folder, outside tests as well.

    MLflow skips telemetry by itself under pytest or CI (it reads their environment variables),
    so the fit runs in a fresh process with a minimal environment: a fake home, and proxies that
    refuse at once whatever a telemetry thread would send.
    """
    pytest.importorskip("mlflow", reason='the extra: pip install -e ".[mlflow]"')
    home = tmp_path / "home"
    home.mkdir()
    refused = "http://127.0.0.1:9"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LANG": "C.UTF-8"}
    env |= {"HTTP_PROXY": refused, "HTTPS_PROXY": refused, "NO_PROXY": ""}
    args = cli_args(sample_dir, *_overlay("mlflow"), "--trainer.fast_dev_run", "true")
    script = "import sys; from {{ cookiecutter.package }}.cli import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", script, "fit", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "mlflow.db").is_file()  # the logger was created, mlflow imported
    assert not (home / ".config" / "mlflow").exists()
