"""The experiment ledger: each finished run appends one row, ``submit`` records a submission
against its run, ``ledger`` prints CV next to public LB with what changed between runs.

A stand-in ``kaggle`` on PATH answers each command (``competitions submit``, ``competitions
submissions``) from a plan: exit code, output (``$TOKEN`` is replaced by the token, to show it
is blanked out), and seconds to sleep first; it records its calls.
"""

import csv
import json
import multiprocessing
import re
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package }}.cli import COMMANDS, main
from {{ cookiecutter.package }}.kaggle import push
from {{ cookiecutter.package }}.reports import ledger
from {{ cookiecutter.package }}.reports.ledger import FIELDS, KAGGLE_COLUMNS, append_row, read_ledger

from fake_kaggle import install_fake_kaggle
from helpers import QUICK_EPOCH, cli_args, fit, only_error_line

TOKEN = "KGAT_fake0123456789token"
SCRIPT = """import json, sys, time
from pathlib import Path
state = Path(sys.argv[0]).with_name("plan.json")
plan = json.loads(state.read_text())
args = sys.argv[1:]
with open(state.with_name("calls.txt"), "a") as log:
    log.write(json.dumps(args) + "\\n")
code, text, pause = plan[" ".join(args[:2])]
time.sleep(pause)
print(text.replace("$TOKEN", __import__("os").environ.get("KAGGLE_API_TOKEN", "")))
sys.exit(code)
"""
SUBMITTED = "Successfully submitted to Plant Pathology 2021 - FGVC8 ($TOKEN)"


def submissions_csv(*rows: tuple[str, str]) -> str:
    """What ``kaggle competitions submissions -c C --csv`` prints: a version warning, then its
    CSV; ``rows`` are (description, publicScore)."""
    lines = [
        "Warning: Looks like you're using an outdated `kaggle` version",
        ",".join(KAGGLE_COLUMNS),
    ]
    for description, score in rows:
        date = "2026-12-05 08:00:00.123000"
        lines.append(f"submission.csv,{date},{description},SubmissionStatus.COMPLETE,{score},")
    lines.append("submission.csv,2026-12-04 08:00:00,other,SubmissionStatus.ERROR,None,None")
    return "\n".join(lines)


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """The stand-in ``kaggle`` with a token; ``kaggle.plan(command=[code, text, sleep])``."""
    bin_dir = install_fake_kaggle(tmp_path, monkeypatch, SCRIPT)
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)

    class Fake:
        def plan(self, **answers: list) -> None:
            plan = {"competitions submit": [0, SUBMITTED, 0]}
            plan["competitions submissions"] = [0, submissions_csv(), 0]
            plan.update({key.replace("_", " "): value for key, value in answers.items()})
            (bin_dir / "plan.json").write_text(json.dumps(plan), encoding="utf-8")

        def calls(self) -> list[list[str]]:
            log = bin_dir / "calls.txt"
            return (
                [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            )

    fake = Fake()
    fake.plan()
    return fake


@pytest.fixture(autouse=True)
def own_ledger(monkeypatch) -> None:
    """Each test records into ``runs/ledger.csv`` under its own working folder (``in_tmp``)."""
    monkeypatch.setattr(ledger, "LEDGER", Path("runs") / "ledger.csv")


def fake_run(work: Path, command: str, cv: float, lr: float, commit: str = "abc") -> str:
    """A ledger row of a run whose resolved config sets ``model.lr``; its run id."""
    config = work / f"{command}-{lr}.yaml"
    config.write_text(f"model:\n  lr: {lr}\ndata:\n  batch_size: 8\n", encoding="utf-8")
    run_id = ledger.new_run_id(command)
    row = dict(run_id=run_id, command=command, commit=commit, dirty="no", cv=f"{cv:.4f}")
    row.update(config=str(config), config_hash=ledger.config_hash(config), out=str(work))
    append_row(row)
    return run_id


@pytest.mark.slow
def test_two_cv_runs_and_a_submission_give_a_ledger_with_the_change_between_them(
    sample_dir, in_tmp, kaggle, capsys
):
    tiny = ["--folds", "2", *cli_args(sample_dir, *QUICK_EPOCH)]
    assert main(["cv", "--out", "runs/cv_a", *tiny]) == 0
    lr = yaml.safe_load(Path("runs/cv_a/fit_config.yaml").read_text())["model"]["lr"]
    assert main(["cv", "--out", "runs/cv_b", *tiny, "--model.lr", str(lr * 2)]) == 0
    runs = read_ledger()
    assert [row["command"] for row in runs] == ["cv", "cv"]
    first, second = runs
    summary = json.loads(Path("runs/cv_b/cv.json").read_text())
    assert float(second["cv"]) == pytest.approx(summary[f"oof_{summary['metric']}_tuned"], abs=1e-4)
    assert second["config"] == str(Path("runs/cv_b/fit_config.yaml"))
    assert second["config_hash"] != first["config_hash"] and second["fold_spread"]
    Path("submission.csv").write_text("image,labels\nx.jpg,healthy\n", encoding="utf-8")
    assert main(["submit", second["run_id"], "--file", "submission.csv"]) == 0
    message = kaggle.calls()[-1][kaggle.calls()[-1].index("-m") + 1]
    assert message.startswith(f"{second['run_id']} ")
    kaggle.plan(competitions_submissions=[0, submissions_csv((message, "0.61234")), 0])
    capsys.readouterr()
    assert main(["ledger"]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out
    line = next(line for line in out.splitlines() if line.startswith(second["run_id"]))
    gap = 0.61234 - float(second["cv"])
    assert "0.61234" in line and f"{gap:+.4f}" in line
    assert f"model.lr ({lr} -> {lr * 2})" in line
    assert (Path("runs") / ledger.FIGURE).is_file()
    assert [row["command"] for row in read_ledger()] == ["cv", "cv", "submit", "lb"]
    assert main(["ledger"]) == 0  # the score is known now: not appended twice
    assert [row["command"] for row in read_ledger()] == ["cv", "cv", "submit", "lb"]


@pytest.mark.slow
def test_fit_appends_its_row_with_its_config_and_validation_score(sample_dir, in_tmp):
    assert fit(sample_dir) == 0
    (row,) = read_ledger()
    assert row["command"] == "fit" and float(row["cv"]) >= 0.0
    assert Path(row["config"]).is_file() and row["config_hash"] == ledger.config_hash(
        Path(row["config"])
    )
    assert re.fullmatch(r"\d{8}-\d{6}-fit-[0-9a-f]{4}", row["run_id"])


def _append_many(path: str, worker: int) -> None:
    for n in range(40):
        append_row({"run_id": f"w{worker}-{n}", "command": "fit", "out": "x" * 2000}, Path(path))


def test_appends_from_several_processes_keep_every_row_whole(tmp_path):
    path = tmp_path / "runs" / "ledger.csv"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(FIELDS) and all(len(row) == len(FIELDS) for row in rows)
    assert sorted(row[0] for row in rows[1:]) == sorted(
        f"w{w}-{n}" for w in range(4) for n in range(40)
    )


def test_a_row_cut_short_is_skipped_and_the_next_one_starts_on_its_own_line(in_tmp):
    first = fake_run(in_tmp, "cv", 0.5, 0.001)
    with ledger.LEDGER.open("a") as handle:
        handle.write("20261205-000000-fit-dead,2026-12-05T00:00:00Z,fit,abc")  # no newline
    second = fake_run(in_tmp, "cv", 0.6, 0.002)
    assert [row["run_id"] for row in read_ledger()] == [first, second]


def test_ledger_says_what_changed_and_prints_what_it_has_without_credentials(
    in_tmp, kaggle, monkeypatch, capsys
):
    monkeypatch.delenv("KAGGLE_API_TOKEN")
    fake_run(in_tmp, "cv", 0.5, 0.001)
    second = fake_run(in_tmp, "cv", 0.55, 0.003, commit="def")
    append_row({"run_id": "s", "command": "submit", "ref": second})
    assert main(["ledger"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if "leaderboard" in line] == [
        f"ledger: fetching leaderboard scores: no Kaggle credentials found; {push.SETUP};"
        " the table shows the scores recorded so far"
    ]
    line = next(line for line in out if line.startswith(second))
    assert "submitted" in line
    assert "commit abc -> def" in line and "model.lr (0.001 -> 0.003)" in line
    assert kaggle.calls() == []


FAILED = [1, "403 Client Error: Forbidden for url ($TOKEN)", 0]
SLOW = [0, "slow", 60]
KAGGLE_FAILS_OR_IS_SLOW = pytest.mark.parametrize(
    "answer, expected",
    [(FAILED, "failed (exit 1): 403 Client"), (SLOW, "did not finish within 0.5 s")],
)


@KAGGLE_FAILS_OR_IS_SLOW
def test_when_kaggle_fails_or_is_slow_ledger_says_so_in_one_line_and_prints_its_table(
    in_tmp, kaggle, capsys, answer, expected
):
    run_id = fake_run(in_tmp, "cv", 0.5, 0.001)
    append_row({"run_id": "s", "command": "submit", "ref": run_id})
    kaggle.plan(competitions_submissions=answer)
    assert main(["ledger", "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out
    (said,) = [line for line in out.splitlines() if "competitions submissions" in line]
    assert expected in said and said.endswith("the table shows the scores recorded so far")
    assert any(line.startswith(run_id) for line in out.splitlines())
    assert [row["command"] for row in read_ledger()] == ["cv", "submit"]


@KAGGLE_FAILS_OR_IS_SLOW
def test_a_failed_or_slow_submission_is_one_line_and_not_recorded(
    in_tmp, kaggle, capsys, answer, expected
):
    run_id = fake_run(in_tmp, "cv", 0.5, 0.001)
    Path("submission.csv").write_text("image,labels\n", encoding="utf-8")
    kaggle.plan(competitions_submit=answer)
    args = ["submit", run_id, "--file", "submission.csv", "--timeout", "0.5"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert expected in captured.err.strip().splitlines()[-1]
    assert [row["command"] for row in read_ledger()] == ["cv"]


def test_a_code_competition_submits_the_notebook_version(in_tmp, kaggle):
    run_id = fake_run(in_tmp, "cv", 0.5, 0.001)
    assert main(["submit", run_id, "--kernel", "tester/nb", "--version", "3", "-m", "blend"]) == 0
    (call,) = kaggle.calls()
    assert call[:2] == ["competitions", "submit"]
    assert call[call.index("-k") + 1 :] == ["tester/nb", "-v", "3", "-m", f"{run_id} blend"]
    assert read_ledger()[-1]["ref"] == run_id


@pytest.mark.parametrize(
    "args, expected",
    [
        (["nope", "--file", "submission.csv"], "no run 'nope'"),
        (["RUN", "--file", "missing.csv"], "--file missing.csv: no such file"),
        (["RUN", "--kernel", "tester/nb"], "give --file FILE"),
    ],
)
def test_bad_submit_input_is_one_line_before_kaggle_is_called(
    in_tmp, kaggle, capsys, args, expected
):
    run_id = fake_run(in_tmp, "cv", 0.5, 0.001)
    Path("submission.csv").write_text("image,labels\n", encoding="utf-8")
    assert main(["submit", *[run_id if a == "RUN" else a for a in args]]) == 2
    assert expected in only_error_line(capsys)
    assert kaggle.calls() == []


def test_agents_md_names_every_command_and_each_one_answers_help(capsys):
    text = (Path(__file__).parents[1] / "AGENTS.md").read_text(encoding="utf-8")
    named = set(re.findall(r"^{{ cookiecutter.package }} ([a-z][a-z-]*)", text, re.MULTILINE))
    assert named == set(COMMANDS)
    for command in sorted(named):
        assert main([command, "--help"]) == 0, command


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, "runs/ledger.csv: no runs recorded yet"),
        ("image,labels\nx.jpg,healthy\n", "runs/ledger.csv: not a ledger (header image,labels)"),
    ],
    ids=["missing", "another-csv"],
)
def test_ledger_without_a_ledger_is_one_line_and_writes_nothing(in_tmp, capsys, text, expected):
    if text is not None:
        Path("runs").mkdir()
        Path("runs/ledger.csv").write_text(text, encoding="utf-8")
    assert main(["ledger", "--offline"]) == 2
    assert expected in only_error_line(capsys)
    assert sorted(p.name for p in Path("runs").glob("*")) == (
        [] if text is None else ["ledger.csv"]
    )


def test_workers_of_one_study_ending_on_the_same_best_trial_record_it_once(in_tmp):
    config = in_tmp / "best.yaml"
    config.write_text("model:\n  lr: 0.001\n", encoding="utf-8")
    trial_0, trial_3 = in_tmp / "trial_0", in_tmp / "trial_3"
    for trial_dir, score in [(trial_0, 0.5), (trial_0, 0.5), (trial_3, 0.7), (trial_0, 0.5)]:
        ledger.record_best_trial(0.0, trial_dir, config, score)
    rows = read_ledger()
    assert [(row["command"], row["out"], row["cv"]) for row in rows] == [
        ("tune", str(trial_0), "0.5000"),
        ("tune", str(trial_3), "0.7000"),
    ]
    assert rows[0]["config_hash"] == ledger.config_hash(config)
