"""``tune``: hyper-parameter search with Optuna, shared by any number of workers.

``run_tune(fit_args, search, study)`` runs trials of ``fit`` with ``fit_args`` and, per trial,
the values Optuna picks for the flags of the search file (see ``search_space``). Each trial
reports ``val/f1`` after every validation, so the pruner can stop a poor one early; its value is
the best ``val/f1`` of the run. Into ``OUT/STUDY/`` (``OUT`` default ``runs/tune``):

- ``trial_{n}/`` (that trial's ``checkpoints/`` and logs);
- ``best.yaml``: the complete ``fit`` config of the best trial (``fit --config best.yaml``);
- ``trials.csv``: every trial of the study (number, state, value, parameters).

The study lives in a storage (``tune_study``): by default the journal file ``OUT/STUDY.journal``
(no server; processes on one machine, or machines sharing a filesystem, can use it at once), or
any Optuna storage URL (``postgresql://...``, ``sqlite:///runs/tune/studies.db``; database
storages also get heartbeats, so a dead worker's trial is failed and retried). Starting the same
command again, anywhere, joins and resumes the study. A full disk stops it with one line naming
the file, and leaves no file half-written.
"""

from __future__ import annotations

import csv
import math
from argparse import ArgumentError
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytorch_lightning import Callback, LightningModule, Trainer

from ..cli.argtypes import fit_job_parser, positive_int
from ..utils.atomic import atomic_write
from ..backbones import check_backbone_name
from ..utils.errors import DataError, UserError, full_disk_named
from .fit_jobs import config_only_cli, fit_config_yaml, parse_fit_config, run_folder_flags
from ..cli.lightning import run_cli
from .search_space import Param, load_search_space, trial_flags
from ..cli.trainer_checks import one_line_parse_error
from .tune_study import (
    check_storage,
    check_study_name,
    import_optuna,
    make_pruner,
    make_storage,
    open_study,
)

if TYPE_CHECKING:
    import optuna

MONITOR = "val/f1"


class TrialStopped(KeyboardInterrupt):
    """The worker was stopped (Ctrl-C, SIGTERM) during trial ``number``."""

    def __init__(self, number: int, study: str) -> None:
        super().__init__(
            f"trial {number} is marked FAIL and its parameters are queued for the next worker of"
            f" study {study}"
        )


class PruningCallback(Callback):
    """Report ``val/f1`` to an Optuna trial after each validation; stop the run if it is pruned.

    ``optuna_integration``'s callback is built on the ``lightning`` package, not
    ``pytorch_lightning``, so the trainer here would refuse it. ``stopped`` tells whether the
    run ended on Ctrl-C or SIGTERM, which Lightning turns into ``SystemExit``.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = MONITOR) -> None:
        self.trial = trial
        self.monitor = monitor
        self.stopped = False

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        self.stopped = isinstance(exception, (KeyboardInterrupt, SystemExit))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is None:
            return
        self.trial.report(float(score), step=trainer.current_epoch)
        if self.trial.should_prune():
            optuna = import_optuna()
            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch}")


def check_values(fit_args: list[str], search: str | Path, params: list[Param]) -> None:
    """Refuse a bound or choice of the search file that ``fit`` would refuse, before any trial.

    Each parse of the ``fit`` flags costs a good part of a second, so the extremes are tried
    together (the k-th bound or choice of every parameter at once); only when such a set is
    refused is each of its values tried alone, to name the one at fault.
    """
    cli = config_only_cli(fit_args, exit_on_error=False)

    def refusal(values: dict[str, Any]) -> str | None:
        try:
            cli.parser.parse_args(["fit", *fit_args, *trial_flags(values)])
        except ArgumentError as exc:
            return one_line_parse_error(str(exc))
        return None

    extremes = {param.name: param.extremes() for param in params}
    for k in range(max(map(len, extremes.values()), default=0)):
        together = {name: values[min(k, len(values) - 1)] for name, values in extremes.items()}
        if refusal(together) is None:
            continue
        for name, value in together.items():
            reason = refusal({name: value})
            if reason is not None:
                raise DataError(f"{search}: {name}: fit refuses {value!r}: {reason}")
        reason = refusal(together)
        raise DataError(f"{search}: fit refuses the combination {together}: {reason}")


def check_backbones(search: str | Path, params: list[Param]) -> None:
    """Refuse a ``model.backbone`` choice that is not a torchvision model, before any trial."""
    for param in params:
        if param.name == "model.backbone":
            for choice in param.choices:
                try:
                    check_backbone_name(str(choice))
                except UserError as exc:
                    raise DataError(f"{search}: model.backbone: {exc}") from None


def make_objective(
    fit_args: list[str], params: list[Param], config: Any, out: Path, errors: list[BaseException]
) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls per trial: train with the trial's values, return best val/f1.

    A user error (bad data, a leftover folder) or a stopped worker ends the study's loop: the
    error lands in ``errors`` for the caller to raise, and the trial fails quietly instead of
    Optuna logging a traceback. A stopped trial is queued again, so no trial is lost.
    """

    def objective(trial: optuna.Trial) -> float:
        try:
            return run_trial(trial, fit_args, params, config, out)
        except UserError as exc:
            errors.append(exc)
        except TrialStopped as stop:
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            errors.append(stop)
        trial.study.stop()
        return math.nan

    return objective


def run_trial(
    trial: optuna.Trial, fit_args: list[str], params: list[Param], config: Any, out: Path
) -> float:
    """Train one trial into ``out/trial_{n}``; its best ``val/f1``."""
    chosen = {param.name: param.suggest(trial) for param in params}
    run = out / f"trial_{trial.number}"
    if run.exists() and any(run.iterdir()):
        raise DataError(
            f"{run}: holds a trial of an earlier study named {out.name} (was its storage"
            f" deleted?); delete {out} or choose another --study"
        )
    flags = trial_flags(chosen)
    trial.set_user_attr("dir", str(run))
    trial.set_user_attr("flags", flags)
    watcher = PruningCallback(trial)
    try:
        with full_disk_named(run):
            cli = run_cli(
                ["fit", *fit_args, *flags, *run_folder_flags(config, run)], callbacks=[watcher]
            )
    except SystemExit:
        if not watcher.stopped:
            raise
        raise TrialStopped(trial.number, out.name) from None
    except KeyboardInterrupt:
        raise TrialStopped(trial.number, out.name) from None
    best = getattr(cli.trainer.checkpoint_callback, "best_model_score", None)
    if best is None or math.isnan(float(best)):
        raise DataError(f"{run}: the run recorded no {MONITOR} (is validation switched off?)")
    return float(best)


def write_best_config(fit_args: list[str], params: dict[str, Any], target: Path) -> None:
    """``target``: the complete ``fit`` config of ``fit_args`` with ``params`` applied."""
    cli = config_only_cli([*fit_args, *trial_flags(params)])
    text = fit_config_yaml(cli, skip_none=False)
    with atomic_write(target) as tmp:  # a full disk is one line naming target
        tmp.write_text(text, encoding="utf-8")


def write_trials_csv(study: optuna.Study, target: Path) -> list[list[str]]:
    """``target``: one row per trial (number, state, value, each parameter); returns the rows."""
    names = sorted({name for trial in study.trials for name in trial.params})
    header = ["trial", "state", "value", *names]
    rows = [header]
    for trial in study.trials:
        value = "" if trial.value is None else f"{trial.value:.4f}"
        rows.append(
            [str(trial.number), trial.state.name, value]
            + [shown(trial.params.get(name, "")) for name in names]
        )
    with atomic_write(target) as tmp:  # a full disk is one line naming target
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)
    return rows


def shown(value: Any) -> str:
    """A parameter value for ``trials.csv``: floats to 6 significant digits (0.3, not 0.30..04)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def summary_table(rows: list[list[str]]) -> str:
    """The rows of ``trials.csv`` as an aligned text table."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def run_tune(
    fit_args: list[str],
    search: str | Path,
    study_name: str,
    storage: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    pruner: str = "median",
    out: str | Path = Path("runs/tune"),
    log: Callable[[str], None] = print,
) -> optuna.Study:
    """Run trials of the study ``study_name`` (joined or resumed if it exists); see the module."""
    check_study_name(study_name)
    import_optuna()
    check_storage(storage)
    config = parse_fit_config(fit_args)
    params = load_search_space(search, config)
    check_values(fit_args, search, params)
    check_backbones(search, params)
    out = Path(out)
    study_dir = out / study_name
    study = open_study(
        study_name, make_storage(storage, out / f"{study_name}.journal"), make_pruner(pruner)
    )
    with full_disk_named(study_dir):
        study_dir.mkdir(parents=True, exist_ok=True)
    log(f"tune: study {study_name} ({len(study.trials)} trials so far) into {study_dir}")
    errors: list[BaseException] = []
    study.optimize(
        make_objective(fit_args, params, config, study_dir, errors),
        n_trials=n_trials,
        timeout=timeout,
        catch=(),
    )
    if errors:
        raise errors[0]
    rows = write_trials_csv(study, study_dir / "trials.csv")
    try:
        best = study.best_trial
    except ValueError:
        log("tune: no trial has finished yet; best.yaml not written")
    else:
        write_best_config(fit_args, best.params, study_dir / "best.yaml")
        log(f"tune: best trial {best.number}: {MONITOR} {best.value:.4f} -> {study_dir}/best.yaml")
    log(summary_table(rows))
    return study


def run_command(argv: Sequence[str]) -> int:
    """``tune --search FILE --study NAME [options] [fit flags]``: the command line of run_tune."""
    parser = fit_job_parser(
        "tune",
        "Search hyper-parameters with Optuna: trials of fit with the fit flags given (e.g."
        " --config configs/baseline.yaml) and the values the search file's ranges pick. Run the"
        " same command again, here or on another machine, to add workers to the study.",
    )
    parser.add_argument(
        "--search", type=Path, required=True, metavar="FILE", help="the search-space YAML file"
    )
    parser.add_argument(
        "--study",
        required=True,
        metavar="NAME",
        help="study name, joined if it exists (letters, digits, '.', '_', '-')",
    )
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage URL, e.g. postgresql://user@host/db (default: OUT/STUDY.journal)",
    )
    parser.add_argument(
        "--n-trials", type=positive_int, default=None, metavar="N", help="trials of this worker"
    )
    parser.add_argument(
        "--timeout", type=positive_int, default=None, metavar="S", help="start no trial after S s"
    )
    parser.add_argument(
        "--pruner",
        choices=("median", "none"),
        default="median",
        help="median (default): stop a trial below the median of earlier ones at an epoch",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/tune"), metavar="DIR", help="default runs/tune"
    )
    known, fit_args = parser.parse_known_args(argv)
    if known.n_trials is None and known.timeout is None:
        parser.error("give --n-trials N or --timeout S (or both)")
    run_tune(  # a TrialStopped ends the command with its message and exit code 130 / 143
        fit_args,
        known.search,
        known.study,
        storage=known.storage,
        n_trials=known.n_trials,
        timeout=known.timeout,
        pruner=known.pruner,
        out=known.out,
    )
    return 0
