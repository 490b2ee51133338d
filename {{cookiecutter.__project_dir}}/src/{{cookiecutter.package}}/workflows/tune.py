"""``tune``: Optuna search over ``fit`` flags into ``OUT/STUDY/`` (``trial_{n}/``, ``best.yaml``:
the best trial's whole fit config, ``trials.csv``); any number of workers share the study."""

from __future__ import annotations

import importlib.util
import math
import time
from argparse import ArgumentError
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytorch_lightning import Callback, LightningModule, Trainer

from .. import metrics
from ..backbones import check_backbone_name
from ..cli.argtypes import fit_job_parser, positive_int
from ..cli.lightning import run_cli
from ..cli.trainer_checks import one_line_parse_error
from ..reports.ledger import record_best_trial
from ..reports.report import summary_table
from ..utils.atomic import write_csv, write_text
from ..utils.errors import DataError, UserError, full_disk_named
from .fit_jobs import config_only_cli, fit_config_yaml, parse_fit_config, run_folder_flags
from .search_space import Param, load_search_space, trial_flags
from .tune_study import check_study_name, database_url, make_pruner, make_storage, open_study

if TYPE_CHECKING:
    import optuna


class PruningCallback(Callback):
    """Report the metric to the trial after each validation; stop a pruned run (Optuna's callback
    needs ``lightning``). ``stopped``: Ctrl-C or SIGTERM ended the run (Lightning: SystemExit)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self.monitor, self.stopped = trial, metrics.logged_key(), False

    def on_exception(self, trainer: Trainer, module: LightningModule, exc: BaseException) -> None:
        self.stopped = isinstance(exc, (KeyboardInterrupt, SystemExit))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or score is None:
            return
        self.trial.report(float(score), step=trainer.current_epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch}")


def check_values(fit_args: list[str], search: str | Path, params: list[Param]) -> None:
    """Refuse a bound, choice or backbone of the search file that ``fit`` would refuse. A parse
    costs most of a second: the k-th values of every parameter go at once, singly if refused."""
    for choice in next((p.choices for p in params if p.name == "model.backbone"), ()):
        try:
            check_backbone_name(str(choice))
        except UserError as exc:
            raise DataError(f"{search}: model.backbone: {exc}") from None
    cli = config_only_cli(fit_args, exit_on_error=False)

    def refusal(values: dict[str, Any]) -> str | None:
        try:
            cli.parser.parse_args(["fit", *fit_args, *trial_flags(values)])
        except ArgumentError as exc:
            return one_line_parse_error(str(exc))
        return None

    extremes = {p.name: [*p.choices] if p.choices else [p.low, p.high] for p in params}
    for k in range(max(map(len, extremes.values()), default=0)):
        together = {name: values[min(k, len(values) - 1)] for name, values in extremes.items()}
        if refusal(together) is None:
            continue
        for name, value in together.items():
            reason = refusal({name: value})
            if reason is not None:
                raise DataError(f"{search}: {name}: fit refuses {value!r}: {reason}")
        raise DataError(f"{search}: fit refuses the combination {together}: {refusal(together)}")


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
    started = time.time()
    check_study_name(study_name)
    if importlib.util.find_spec("optuna") is None:
        raise DataError('tune needs Optuna: pip install -e ".[tune]"')
    database_url(storage)
    config = parse_fit_config(fit_args)
    params = load_search_space(search, config)
    check_values(fit_args, search, params)
    study_dir = Path(out) / study_name
    store = make_storage(storage, Path(out) / f"{study_name}.journal")
    study = open_study(study_name, store, make_pruner(pruner))
    with full_disk_named(study_dir):
        study_dir.mkdir(parents=True, exist_ok=True)
    log(f"tune: study {study_name} ({len(study.trials)} trials so far) into {study_dir}")
    errors: list[BaseException] = []

    def objective(trial: optuna.Trial) -> float:
        """Train one trial into ``trial_{n}``: its best score. A user error or a stopped worker
        ends the study, raised after it (no Optuna traceback); a stopped trial is queued again."""
        flags = trial_flags({param.name: param.suggest(trial) for param in params})
        run, watcher = study_dir / f"trial_{trial.number}", PruningCallback(trial)
        try:
            if run.exists() and any(run.iterdir()):
                raise DataError(
                    f"{run}: holds a trial of an earlier study named {study_name} (was its"
                    f" storage deleted?); delete {study_dir} or choose another --study"
                )
            trial.set_user_attr("dir", str(run))
            trial.set_user_attr("flags", flags)
            args = ["fit", *fit_args, *flags, *run_folder_flags(config, run)]
            with full_disk_named(run):
                cli = run_cli(args, callbacks=[watcher])
            best = getattr(cli.trainer.checkpoint_callback, "best_model_score", None)
            if best is None or math.isnan(float(best)):
                key = metrics.logged_key()
                raise DataError(f"{run}: the run recorded no {key} (is validation switched off?)")
            return float(best)
        except UserError as exc:
            errors.append(exc)
        except (SystemExit, KeyboardInterrupt) as exc:  # exits with 130 / 143 after the study
            if isinstance(exc, SystemExit) and not watcher.stopped:
                raise
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            queued = f"its parameters are queued for the next worker of study {study_name}"
            errors.append(KeyboardInterrupt(f"trial {trial.number} is marked FAIL and {queued}"))
        trial.study.stop()
        return math.nan

    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=())
    if errors:
        raise errors[0]
    names = sorted({name for trial in study.trials for name in trial.params})
    rows = [["trial", "state", "value", *names]]
    for trial in study.trials:  # floats to 6 significant digits (0.3, not 0.30000000000000004)
        values = [trial.params.get(name, "") for name in names]
        shown = [f"{v:.6g}" if isinstance(v, float) else str(v) for v in values]
        score = "" if trial.value is None else f"{trial.value:.4f}"
        rows.append([str(trial.number), trial.state.name, score, *shown])
    write_csv(study_dir / "trials.csv", rows[0], rows[1:])
    try:
        best = study.best_trial
    except ValueError:
        log("tune: no trial has finished yet; best.yaml not written")
    else:  # the complete fit config of the best trial's flags
        best_cli = config_only_cli([*fit_args, *trial_flags(best.params)])
        write_text(study_dir / "best.yaml", fit_config_yaml(best_cli, skip_none=False))
        key = metrics.logged_key()
        log(f"tune: best trial {best.number}: {key} {best.value:.4f} -> {study_dir}/best.yaml")
        trial_dir = Path(best.user_attrs.get("dir", study_dir))
        record_best_trial(started, trial_dir, study_dir / "best.yaml", best.value)
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
    add = parser.add_argument
    add("--search", type=Path, required=True, metavar="FILE", help="the search-space YAML file")
    add("--study", required=True, metavar="NAME", dest="study_name", help="joined if it exists")
    storage = "e.g. postgresql://user@host/db; default OUT/STUDY.journal"
    add("--storage", metavar="URL", help=storage)
    add("--n-trials", type=positive_int, metavar="N", help="trials of this worker")
    add("--timeout", type=positive_int, metavar="S", help="start no trial after S s")
    median = "median (default): stop a trial below the median of earlier ones at an epoch"
    add("--pruner", choices=("median", "none"), default="median", help=median)
    add("--out", type=Path, default=Path("runs/tune"), metavar="DIR", help="default runs/tune")
    known, fit_args = parser.parse_known_args(argv)
    if known.n_trials is None and known.timeout is None:
        parser.error("give --n-trials N or --timeout S (or both)")
    run_tune(fit_args, **vars(known))
    return 0
