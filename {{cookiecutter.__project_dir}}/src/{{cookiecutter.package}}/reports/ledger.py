"""The experiment ledger ``runs/ledger.csv``: one row per finished run (``fit``, ``cv``,
``distill``, ``tune``'s best trial), per submission (``submit``) and per leaderboard score fetched
from Kaggle (``lb``), and the ``ledger`` command that prints it as a table of CV against public LB
with what changed between consecutive runs, and draws CV against LB.

A row is appended when its run has finished, with one ``write`` of the whole line under an
exclusive lock on the file: several processes (tune workers) can append at once, and a run killed
before its end leaves no row at all."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cli.argtypes import command_parser
from ..utils.errors import DataError, UserError

try:  # POSIX; elsewhere the single O_APPEND write is the only guard
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LEDGER = Path("runs") / "ledger.csv"
FIELDS = (
    *("run_id", "started", "command", "commit", "dirty", "config_hash", "config", "metric"),
    *("cv", "fold_spread", "duration_s", "out", "ref", "public_lb"),
)
RUN_COMMANDS = ("fit", "cv", "distill", "tune")
SUBMIT, LB = "submit", "lb"  # a submission of run ``ref``; a public score of run ``ref``
FIGURE = "cv_vs_lb.png"
# What Kaggle CLI 2.x prints with ``competitions submissions --csv`` (kaggle_api_extended.py).
KAGGLE_COLUMNS = ("fileName", "date", "description", "status", "publicScore", "privateScore")
PAGE_SIZE = "100"


def utc(seconds: float | None = None) -> str:
    """A time (``time.time()``, default now) as the ledger writes it: ISO 8601 in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def new_run_id(command: str, started: float | None = None) -> str:
    """A run id: start time (UTC, default now), command and 4 random hex digits, e.g.
    20261205-073748-cv-1a2b."""
    when = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    return f"{when}-{command}-{secrets.token_hex(2)}"


def git_state() -> tuple[str, str]:
    """The commit of the working directory's git checkout and ``yes``/``no`` for uncommitted
    changes; ``("", "")`` outside a checkout or without git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "", ""
    if commit.returncode != 0 or status.returncode != 0:
        return "", ""
    return commit.stdout.strip(), "yes" if status.stdout.strip() else "no"


def config_hash(path: Path | None) -> str:
    """The first 12 hex digits of the SHA-256 of a resolved config file ("" if there is none)."""
    if path is None or not path.is_file():
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def append_row(row: dict[str, Any], ledger: Path | None = None) -> None:
    """Append ``row`` (keys of ``FIELDS``; the header first if the file is new) in one write;
    ``ledger`` defaults to ``LEDGER`` (read when called)."""
    ledger = ledger or LEDGER
    ledger.parent.mkdir(parents=True, exist_ok=True)
    unknown = set(row) - set(FIELDS)
    if unknown:
        raise ValueError(f"not ledger fields: {sorted(unknown)}")
    fd = os.open(ledger, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        size = os.fstat(fd).st_size
        if size == 0:
            writer.writerow(FIELDS)
        elif os.pread(fd, 1, size - 1) != b"\n":  # a row cut short (a full disk): end it there
            text.write("\n")
        writer.writerow(["" if row.get(k) is None else row.get(k) for k in FIELDS])
        os.write(fd, text.getvalue().encode("utf-8"))
    finally:
        os.close(fd)  # releases the lock


def record_run(
    command: str,
    started: float,
    out: str | Path,
    config: Path | None,
    score: float | None,
    metric: str,
    fold_scores: Sequence[float] = (),
    ledger: Path | None = None,
) -> str:
    """Append the row of a finished run that started at ``started`` (``time.time()``); its id."""
    ledger = ledger or LEDGER
    run_id = new_run_id(command, started)
    commit, dirty = git_state()
    spread = f"{statistics.pstdev(fold_scores):.4f}" if len(fold_scores) > 1 else ""
    row = {
        "run_id": run_id,
        "started": utc(started),
        **{"command": command, "commit": commit, "dirty": dirty, "metric": metric},
        **{"config_hash": config_hash(config), "config": "" if config is None else str(config)},
        **{"cv": "" if score is None else f"{float(score):.4f}", "fold_spread": spread},
        **{"duration_s": f"{time.time() - started:.0f}", "out": str(out)},
    }
    append_row(row, ledger)
    print(f"ledger: {command} run {run_id} recorded in {ledger}")
    return run_id


def record_cv_folder(command: str, started: float, out: Path, ledger: Path | None = None) -> str:
    """``record_run`` of a finished cv folder (``cv``, ``distill``): its pooled OOF score at the
    thresholds ``predict`` uses and the spread of its folds' OOF scores, from ``cv.json``."""
    from ..workflows.cv_files import FIT_CONFIG, SUMMARY

    summary = json.loads((out / SUMMARY).read_text(encoding="utf-8"))
    name = summary["metric"]
    score, folds = summary[f"oof_{name}_tuned"], summary[f"fold_oof_{name}"]
    return record_run(command, started, out, out / FIT_CONFIG, score, name, folds, ledger)


def record_best_trial(
    started: float, trial_dir: Path, config: Path, score: float | None, ledger: Path | None = None
) -> str | None:
    """``record_run`` of a ``tune`` study's best trial, unless that trial has a row already: each
    worker records the study's best when it ends, and workers of one study often end on the same
    best trial. None when it had one."""
    from .. import metrics

    try:
        rows = read_ledger(ledger)
    except DataError:  # not a ledger: ``ledger`` says so; the study's result is still appended
        rows = []
    if any(row["command"] == "tune" and row["out"] == str(trial_dir) for row in rows):
        return None
    return record_run("tune", started, trial_dir, config, score, metrics.NAME, ledger=ledger)


def record_fit(cli: Any, started: float, ledger: Path | None = None) -> str | None:
    """``record_run`` of a finished ``fit`` (its best validation score and the config saved in its
    log folder); None, and nothing written, for a fit that saved no checkpoint (fast_dev_run) or
    was interrupted."""
    from .. import metrics

    trainer = cli.trainer
    best = getattr(trainer.checkpoint_callback, "best_model_score", None)
    if best is None or trainer.interrupted or not trainer.is_global_zero:
        return None
    out = Path(trainer.log_dir or trainer.default_root_dir)
    config = out / "config.yaml"
    score = float(best)
    return record_run(
        "fit", started, out, config if config.is_file() else None, score, metrics.NAME
    )


def read_ledger(ledger: Path | None = None) -> list[dict[str, str]]:
    """The rows of the ledger ([] if it does not exist); ``DataError`` if it is not a ledger."""
    ledger = ledger or LEDGER
    if not ledger.is_file():
        return []
    with ledger.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return []
        if tuple(header) != FIELDS:
            raise DataError(f"{ledger}: not a ledger (header {','.join(header)[:60]})")
        return [dict(zip(FIELDS, row)) for row in reader if len(row) == len(FIELDS)]


def find_run(run_id: str, ledger: Path | None = None) -> dict[str, str]:
    """The row of run ``run_id``; ``DataError`` naming the ledger if it holds no such run."""
    ledger = ledger or LEDGER
    for row in read_ledger(ledger):
        if row["run_id"] == run_id and row["command"] in RUN_COMMANDS:
            return row
    raise DataError(f"{ledger}: no run {run_id!r} (`ledger` lists the run ids)")


def kaggle_scores(competition: str, timeout: float) -> list[dict[str, str]]:
    """The submissions of ``competition`` as ``kaggle competitions submissions --csv`` lists them
    (``KAGGLE_COLUMNS``); ``KaggleCliError`` if the CLI, its credentials or the call fail."""
    from ..kaggle.push import kaggle_executable, run_kaggle

    executable = kaggle_executable("fetching leaderboard scores")
    args = ["competitions", "submissions", "-c", competition, "--csv", "--page-size", PAGE_SIZE]
    output = run_kaggle(executable, args, timeout, echo=False)[1]
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(KAGGLE_COLUMNS[0])), None)
    if start is None:  # "No submissions found", or a version warning only
        return []
    return list(csv.DictReader(lines[start:]))


def fetch_lb(rows: list[dict[str, str]], competition: str, timeout: float, ledger: Path) -> int:
    """Append an ``lb`` row for each submitted run whose public score Kaggle now lists and the
    ledger lacks (the run id starts the submission's description); how many were added."""
    submitted = {row["ref"] for row in rows if row["command"] == SUBMIT}
    known = {(row["ref"], row["out"]) for row in rows if row["command"] == LB}
    added = 0
    for entry in kaggle_scores(competition, timeout):
        run_id = (entry.get("description") or "").split(" ", 1)[0]
        score = (entry.get("publicScore") or "").strip()
        if run_id not in submitted or (run_id, entry.get("date", "")) in known:
            continue
        try:
            value = float(score)
        except ValueError:
            continue  # still scoring, or failed: "None" or ""
        row = dict.fromkeys(FIELDS, "")
        row.update(run_id=new_run_id(LB), command=LB, ref=run_id, public_lb=f"{value:.5f}")
        row.update(started=utc(), out=entry.get("date", ""))
        append_row(row, ledger)
        rows.append(row)
        added += 1
    return added


def changes(before: dict[str, str] | None, after: dict[str, str]) -> str:
    """What changed from run ``before`` to run ``after``: commit, config keys (or hash)."""
    if before is None:
        return "first run"
    said = []
    if before["commit"] != after["commit"]:
        said.append(f"commit {before['commit'] or '-'} -> {after['commit'] or '-'}")
    if after["dirty"] == "yes":
        said.append("uncommitted changes")
    if before["config_hash"] != after["config_hash"]:
        said.append(config_diff(Path(before["config"]), Path(after["config"])))
    return "; ".join(said) or "nothing"


def config_diff(before: Path, after: Path) -> str:
    """The config keys that differ between two resolved config files, as ``key (old -> new)``."""
    from ..workflows.cv import SETTINGS_IGNORED
    from ..workflows.fit_jobs import config_changes, yaml

    try:
        old, new = (yaml.safe_load(p.read_text(encoding="utf-8")) for p in (before, after))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return "config changed (a config file is gone)"
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "config changed"
    keys = config_changes(old, new, SETTINGS_IGNORED)
    return ", ".join(keys) if keys else "config changed (paths only)"


def table(rows: list[dict[str, str]]) -> tuple[list[list[object]], list[tuple[float, float, str]]]:
    """The printed table (header first) of the runs, and the (CV, LB, run id) points."""
    lb = {row["ref"]: row["public_lb"] for row in rows if row["command"] == LB}
    submitted = {row["ref"] for row in rows if row["command"] == SUBMIT}
    runs = [row for row in rows if row["command"] in RUN_COMMANDS]
    lines: list[list[object]] = [["run", "command", "cv", "spread", "lb", "lb-cv", "changed"]]
    points = []
    for previous, row in zip([None, *runs[:-1]], runs):
        public = lb.get(row["run_id"], "submitted" if row["run_id"] in submitted else "")
        gap = ""
        if row["run_id"] in lb and row["cv"]:
            cv, score = float(row["cv"]), float(lb[row["run_id"]])
            gap = f"{score - cv:+.4f}"
            points.append((cv, score, row["run_id"]))
        cells = [row["run_id"], row["command"], row["cv"], row["fold_spread"], public, gap]
        lines.append([*cells, changes(previous, row)])
    return lines, points


def run_command(argv: Sequence[str]) -> int:
    """``ledger [--competition SLUG] [--offline] [--figure FILE]``: the ledger as a table."""
    from ..kaggle.push import COMPETITION, TIMEOUT
    from .report import summary_table

    parser = command_parser(
        "ledger",
        f"Print {LEDGER} as a table: each run's CV score, its public leaderboard score, their"
        " difference and what changed since the run before it (commit, config keys); first fetch"
        " the scores of submitted runs from Kaggle (`kaggle competitions submissions`), and draw"
        " CV against LB.",
    )
    add = parser.add_argument
    add("--ledger", type=Path, help=f"default {LEDGER}")
    add("--competition", default=COMPETITION, help=f"default {COMPETITION}")
    add("--offline", action="store_true", help="do not ask Kaggle for leaderboard scores")
    add("--figure", type=Path, help=f"the CV vs LB figure (default: {FIGURE} beside the ledger)")
    add("--timeout", type=float, default=60.0, help="seconds for the Kaggle CLI (default 60)")
    known = parser.parse_args(list(argv))
    known.ledger = known.ledger or LEDGER
    rows = read_ledger(known.ledger)
    if not rows:
        raise DataError(
            f"{known.ledger}: no runs recorded yet (fit, cv, distill and tune add them)"
        )
    waiting = any(r["command"] == SUBMIT for r in rows)
    if known.offline or not waiting:
        why = "--offline" if known.offline else "no submission recorded"
        print(f"ledger: leaderboard scores not fetched ({why})")
    else:
        try:
            added = fetch_lb(rows, known.competition, min(known.timeout, TIMEOUT), known.ledger)
            print(f"ledger: {added} new leaderboard scores from Kaggle")
        except UserError as exc:
            print(f"ledger: {exc}; the table shows the scores recorded so far")
    lines, points = table(rows)
    print(summary_table(lines))
    if points:
        from .plots import cv_vs_lb, save_figure

        figure = known.figure or known.ledger.with_name(FIGURE)
        print(f"ledger: CV vs LB figure {save_figure(cv_vs_lb(points), figure)}")
    return 0
