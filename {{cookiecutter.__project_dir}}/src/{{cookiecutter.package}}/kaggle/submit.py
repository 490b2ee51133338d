"""``submit RUN_ID``: submit a run's predictions to the competition with the Kaggle CLI, the run
id first in the message, and record the submission against that run in the ledger (``ledger``
later fetches its public score). A file competition takes ``submission.csv`` (``--file``); a code
competition a pushed notebook version (``--kernel user/slug --version N``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..cli.argtypes import command_parser, positive_int
from ..reports.ledger import LEDGER, SUBMIT, append_row, find_run, new_run_id, utc
from ..utils.errors import DataError
from .push import COMPETITION, SLUG, TIMEOUT, credentials_source, kaggle_executable, run_kaggle


def submit(
    run_id: str,
    competition: str = COMPETITION,
    file: Path | None = None,
    kernel: str | None = None,
    version: int | None = None,
    message: str = "",
    timeout: float = TIMEOUT,
    ledger: Path | None = None,
) -> str:
    """Submit ``file`` or notebook ``kernel`` version ``version`` as run ``run_id``; the id of
    the submission's ledger row. Every check comes before the upload."""
    run = find_run(run_id, ledger)
    if not SLUG.fullmatch(competition):
        raise DataError(f"--competition {competition!r}: not a Kaggle competition slug")
    if (kernel is None) == (file is None) or (kernel is None) != (version is None):
        raise DataError("give --file FILE (file competition) or --kernel ID --version N (code)")
    if file is not None and not file.is_file():
        raise DataError(f"--file {file}: no such file")
    score = f"{run['command']} {run['metric'] or 'score'} {run['cv'] or '-'}"
    text = f"{run_id} {message or score}"
    target = ["-f", str(file)] if file is not None else ["-k", str(kernel), "-v", str(version)]
    executable = kaggle_executable("submit")
    print(f"Kaggle credentials: {credentials_source()}")
    run_kaggle(
        executable, ["competitions", "submit", "-c", competition, *target, "-m", text], timeout
    )
    row_id = new_run_id(SUBMIT)
    shown = str(file) if file is not None else f"{kernel} v{version}"
    append_row(
        {"run_id": row_id, "started": utc(), "command": SUBMIT, "ref": run_id, "out": shown}, ledger
    )
    print(f"submit: {shown} submitted as run {run_id}; `ledger` fetches its public score")
    return row_id


def run_command(argv: Sequence[str]) -> int:
    """``submit RUN_ID (--file FILE | --kernel ID --version N) [options]``."""
    parser = command_parser(
        "submit",
        "Submit a run's predictions to Kaggle (`kaggle competitions submit`) with its run id in"
        " the message and record the submission in the ledger; `ledger` lists the run ids.",
    )
    add = parser.add_argument
    add("run_id", metavar="RUN_ID", help="the run the predictions come from")
    add("--file", type=Path, help="file competitions: the submission.csv to upload")
    add("--kernel", metavar="USER/SLUG", help="code competitions: the pushed notebook")
    add("--version", type=positive_int, metavar="N", help="code competitions: its version")
    add("--competition", default=COMPETITION, help=f"default {COMPETITION}")
    add("-m", "--message", default="", help="after the run id (default: command, metric, score)")
    add("--timeout", type=float, default=TIMEOUT, help=f"seconds (default {TIMEOUT:g})")
    add("--ledger", type=Path, help=f"default {LEDGER}")
    known = parser.parse_args(list(argv))
    submit(
        known.run_id,
        known.competition,
        known.file,
        known.kernel,
        known.version,
        known.message,
        known.timeout,
        known.ledger,
    )
    return 0
