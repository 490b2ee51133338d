"""The ``{{ cookiecutter.package }}`` command: the overview of its subcommands, and the dispatch.

``fit|validate|test|predict`` are a LightningCLI (``--print_config`` shows every flag). The module
of another command (``MODULES``) is imported only when it runs, so the commands that do not train
never load torch; its ``run_command(argv) -> int`` raises a ``UserError`` for bad input, which ends
with one ``error:`` line on stderr and exit code 2, before anything is written."""

from __future__ import annotations

import importlib
import signal
import sys
import time
from collections.abc import Sequence

from .argtypes import program_name
from ..utils.errors import UserError, disk_full_error
from ..utils.stop_signals import Stopped, StopSignals, stopped_message
from ..layout import TEST_IMAGES

# Each command's line in the overview.
COMMANDS = {
    "fit": "train a model (checkpoints/, logs/); `make demo` shows one",
    "validate": "score a checkpoint on the validation fold (--ckpt_path FILE|last|best)",
    "test": "the same on the held-out fold (today: the validation fold again)",
    "predict": f"write submission.csv for {TEST_IMAGES}/ (--ckpt_path FILE|last|best)",
    "cv": "k-fold cross-validation: fold models, out-of-fold predictions, tuned thresholds",
    "distill": "train a cv folder's folds again on soft targets from its out-of-fold predictions",
    "tune": "hyper-parameter search with Optuna; workers share one study",
    "package": "bundle a checkpoint or cv folder as Kaggle datasets + an offline notebook",
    "submit": "submit a run's submission.csv or notebook to Kaggle, recorded in the ledger",
    "ledger": "every run's CV next to its public LB score, and what changed between runs",
    "report": "plots of a data folder and a run folder, written as PNG files",
    "prepare": "pre-resize the images once into a cache folder for fast epochs",
    "sample-data": "write the synthetic sample set (Kaggle layout) into a new folder",
}
# The module (under the package) of each command the LightningCLI does not run.
MODULES = {
    "cv": "workflows.cv",
    "distill": "workflows.distill",
    "tune": "workflows.tune",
    "package": "kaggle.bundle",
    "submit": "kaggle.submit",
    "ledger": "reports.ledger",
    "report": "reports.report",
    "prepare": "prep.prepare",
    "sample-data": "prep.sample_data",
}


def overview() -> str:
    """The top-level help: every subcommand, one line each."""
    prog = program_name()
    choices = "{" + ",".join(COMMANDS) + "}"
    lines = [f"usage: {prog} {choices} [options]", "", "commands:"]
    lines += [f"  {name:<12} {summary}" for name, summary in COMMANDS.items()]
    lines += ["", f"'{prog} COMMAND --help' lists the options of a command."]
    return "\n".join(lines)


def one_line(exc: BaseException) -> str:
    """The message of a user error, even when a DataLoader worker wrapped it in a traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split("Error: ", 1)[-1]
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code. Ctrl-C (SIGINT) and SIGTERM end
    any command with one line and exit code 130 / 143, after its clean-up removed partial files."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        return 0 if args else 2
    code, detail = 0, ""
    with StopSignals() as stop:
        try:
            name = MODULES.get(args[0], "cli.lightning")  # an unknown name: refused in one line
            module = importlib.import_module(f"..{name}", __package__)
            if args[0] in MODULES:
                code = module.run_command(args[1:])
            else:  # None: LightningCLI reads the process's own arguments from sys.argv
                started = time.time()
                cli = module.run_cli(None if argv is None else args, description=__doc__)
                if args[0] == "fit":
                    from ..reports.ledger import record_fit

                    record_fit(cli, started)
        except (UserError, OSError) as exc:  # OSError: a full disk, met outside our own writes
            error = exc if isinstance(exc, UserError) else disk_full_error(exc)
            if error is None:
                raise
            print(f"error: {one_line(error)}", file=sys.stderr)
            code = 2
        except KeyboardInterrupt as exc:
            detail = "" if isinstance(exc, Stopped) else one_line(exc)  # the command's own words
            stop.received = stop.received or signal.SIGINT  # also one raised without a signal
        except SystemExit as exc:  # a parser's --help (0) or its refusal of an option (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if stop.received is not None:  # whatever the command made of the interrupt, it ends here
        print(f"error: {stopped_message(stop.received, detail)}", file=sys.stderr)
        return 128 + stop.received
    return code
