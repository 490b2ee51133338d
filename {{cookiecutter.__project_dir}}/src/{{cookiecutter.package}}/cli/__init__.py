"""The ``{{ cookiecutter.package }}`` command: the overview of its subcommands, and the dispatch.

``{{ cookiecutter.package }} fit|validate|test|predict --config configs/baseline.yaml ...`` is a
LightningCLI (every model, data and trainer argument is a flag; ``--print_config`` shows them);
``{{ cookiecutter.package }} prepare`` and ``sample-data`` are small ``argparse`` commands. Each
command lives in its own module, imported only when that command runs, so the commands that do
not train never load torch. Bad input ends with one ``error:`` line on stderr and exit code 2,
before anything is written.

A new command is one entry in ``COMMANDS`` plus its module, whose ``run_command(argv) -> int``
gets the arguments after the command's name and raises a ``UserError`` for bad input.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Sequence
from typing import NamedTuple

from .argtypes import program_name
from ..utils.errors import UserError, disk_full_error
from ..utils.stop_signals import Stopped, StopSignals, stopped_message
from ..layout import TEST_IMAGES

LIGHTNING = "cli.lightning"


class Command(NamedTuple):
    """One subcommand: its line in the overview, and the module that runs it (under the package)."""

    summary: str
    module: str


COMMANDS = {
    "fit": Command("train a model (checkpoints/, logs/); `make demo` shows one", LIGHTNING),
    "validate": Command(
        "score a checkpoint on the validation fold (--ckpt_path FILE|last|best)", LIGHTNING
    ),
    "test": Command("the same on the held-out fold (today: the validation fold again)", LIGHTNING),
    "predict": Command(
        f"write submission.csv for {TEST_IMAGES}/ (--ckpt_path FILE|last|best)", LIGHTNING
    ),
    "cv": Command(
        "k-fold cross-validation: fold models, out-of-fold predictions, tuned thresholds",
        "workflows.cv",
    ),
    "tune": Command(
        "hyper-parameter search with Optuna; workers share one study", "workflows.tune"
    ),
    "package": Command(
        "bundle a checkpoint or cv folder as Kaggle datasets + an offline notebook",
        "kaggle.bundle",
    ),
    "report": Command(
        "plots of a data folder and a run folder, written as PNG files", "reports.report"
    ),
    "prepare": Command(
        "pre-resize the images once into a cache folder for fast epochs", "prep.prepare"
    ),
    "sample-data": Command(
        "write the synthetic sample set (Kaggle layout) into a new folder", "prep.sample_data"
    ),
}


def overview() -> str:
    """The top-level help: every subcommand, one line each."""
    prog = program_name()
    choices = "{" + ",".join(COMMANDS) + "}"
    lines = [f"usage: {prog} {choices} [options]", "", "commands:"]
    lines += [f"  {name:<12} {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", f"'{prog} COMMAND --help' lists the options of a command."]
    return "\n".join(lines)


def run(args: list[str], from_process: bool) -> int:
    """Run the command ``args[0]`` with the rest of ``args``; return its exit code.

    An unknown name goes to the LightningCLI too, whose parser refuses it in one line.
    ``from_process``: the arguments are the process's own (LightningCLI then reads ``sys.argv``).
    """
    command = COMMANDS.get(args[0])
    module_name = command.module if command else LIGHTNING
    module = importlib.import_module(f"..{module_name}", __package__)
    if module_name == LIGHTNING:
        module.run_cli(None if from_process else args, description=__doc__)
        return 0
    status: int = module.run_command(args[1:])
    return status


def one_line(exc: BaseException) -> str:
    """The message of a user error, even when a DataLoader worker wrapped it in a traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        text = text.split("Error: ", 1)[-1] if "Error: " in text else text
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Ctrl-C (SIGINT) and SIGTERM end any command with one line and exit code 130 / 143, after
    the command's own clean-up has run (partial files and folders are removed on the way out).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        return 0 if args else 2
    code, detail = 0, ""
    with StopSignals() as stop:
        try:
            code = run(args, from_process=argv is None)
        except UserError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            code = 2
        except KeyboardInterrupt as exc:
            detail = "" if isinstance(exc, Stopped) else one_line(exc)  # the command's own words
            stop.received = stop.received or signal.SIGINT  # also one raised without a signal
        except SystemExit as exc:  # a parser's --help (0) or its refusal of an option (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except OSError as exc:  # a full disk, met outside the package's own writes too
            full = disk_full_error(exc)
            if full is None:
                raise
            print(f"error: {one_line(full)}", file=sys.stderr)
            code = 2
    if stop.received is not None:  # whatever the command made of the interrupt, it ends here
        print(f"error: {stopped_message(stop.received, detail)}", file=sys.stderr)
        return 128 + stop.received
    return code
