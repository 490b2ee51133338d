"""``package --push``: credentials in the Kaggle CLI's order, uploads, waiting until each dataset
is ready, following the notebook's run; every failure one line, the token never printed.

A stand-in ``kaggle`` on PATH answers from a plan (a list of answers per command, the last one
repeated; an answer may write a metadata file into the folder given with ``-p``, as ``kaggle
models get`` and ``models variations get`` do) and records its calls; the clock is mocked, so no
test sleeps.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from {{ cookiecutter.package }}.cli import main
from {{ cookiecutter.package }}.kaggle import push
from {{ cookiecutter.package }} import __version__
from {{ cookiecutter.package }}.kaggle.push import BASE_SLUG as BASE, KERNEL_METADATA, PROJECT, push_bundle
from {{ cookiecutter.package }}.kaggle.push import INSTANCE_METADATA, MODEL_METADATA
from {{ cookiecutter.package }}.utils.errors import UserError

from fake_kaggle import install_fake_kaggle
from helpers import only_error_line
from fake_runs import fake_checkpoint

TOKEN = "KGAT_fake0123456789token"
CODE, WEIGHTS, KERNEL = (f"tester/{BASE}-{kind}" for kind in ("code", "weights", "submission"))
OUTDATED = "Warning: Looks like you're using an outdated `kaggle` version (installed: 2.0.0)"
CREATED = "Your private Dataset is being created. Please check progress at https://x"


def kernel_says(status: str) -> list:
    return [0, f'{KERNEL} has status "KernelWorkerStatus.{status}"']


def ready_after(*steps: str) -> list:
    return [[0, step] for step in steps] + [[0, "ready"]]


# The code dataset is new (its first status fails), the weights dataset exists; both report
# "not ready" before "ready"; the notebook is queued, then running, then complete.
PLAN = {
    f"datasets status {CODE}": [[1, "404 Client Error: Not Found"]]
    + ready_after("not_yet_persisted", "blobs_received"),
    f"datasets status {WEIGHTS}": [[0, "ready"]] + ready_after(f"{OUTDATED}\nblobs_received"),
    "datasets create": [[0, CREATED]],
    "datasets version": [[0, "Dataset version is being created. Please check progress at x"]],
    "kernels push": [[0, "Kernel version 1 successfully pushed.  Please check progress at x"]],
    f"kernels status {KERNEL}": [kernel_says(s) for s in ("QUEUED", "RUNNING", "COMPLETE")],
}
SCRIPT = """import json, sys
from pathlib import Path
state = Path(sys.argv[0]).with_name("plan.json")
plan = json.loads(state.read_text())
args = sys.argv[1:]
with open(state.with_name("calls.txt"), "a") as log:
    log.write(" ".join(args) + "\\n")
words = []  # the command: "datasets status ID", "kernels push", "models variations get"...
for arg in args:
    if not arg.isalpha():
        break
    words.append(arg)
key = " ".join(args[: len(words) + 1] if "status" in words else words)
answers = plan[key]
code, text, *written = answers.pop(0) if len(answers) > 1 else answers[0]
state.write_text(json.dumps(plan))
for name, content in (written[0] if written else {}).items():
    Path(args[args.index("-p") + 1], name).write_text(json.dumps(content))
print(text.replace("$TOKEN", __import__("os").environ.get("KAGGLE_API_TOKEN", "")))
sys.exit(code)
"""


class Clock:
    """A stand-in for ``time``: ``sleep`` advances ``monotonic`` and is recorded."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """A stand-in ``kaggle`` on PATH following ``PLAN`` (``kaggle.plan(**changes)`` edits it);
    ``kaggle.calls()`` lists the calls, ``kaggle.clock`` is the mocked clock. No credentials."""
    bin_dir = install_fake_kaggle(tmp_path, monkeypatch, SCRIPT)
    clock = Clock()
    monkeypatch.setattr(push, "time", clock)

    class Fake:
        def plan(self, **changes: list) -> None:
            plan = {**PLAN, **changes}
            (bin_dir / "plan.json").write_text(json.dumps(plan), encoding="utf-8")

        def calls(self) -> list[str]:
            log = bin_dir / "calls.txt"
            return log.read_text().splitlines() if log.exists() else []

    fake = Fake()
    fake.plan()
    fake.clock = clock
    return fake


def push_folders(tmp_path: Path, **options: float) -> None:
    """``push_bundle`` of two dataset folders and a kernel folder under ``tmp_path``."""
    datasets = {CODE: tmp_path / "code", WEIGHTS: tmp_path / "weights"}
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / KERNEL_METADATA).write_text(json.dumps({"id": KERNEL}))
    push_bundle(datasets, tmp_path / "kernel", "v2", **options)


def test_push_waits_for_each_dataset_then_follows_the_kernel_and_never_prints_the_token(
    tmp_path, kaggle, monkeypatch, capsys
):
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    ckpt, out = fake_checkpoint(tmp_path / "m.ckpt"), tmp_path / "out"
    args = [str(ckpt), str(out), "--user", "tester", "--push", "--poll", "7"]
    assert main(["package", *args]) == 0
    status = [f"datasets status {CODE}", f"datasets status {WEIGHTS}"]
    assert kaggle.calls() == [
        status[0],
        f"datasets create -p {out / 'code'}",
        status[1],
        f"datasets version -p {out / 'weights'} -m {PROJECT} {__version__}",
        *[status[0]] * 3,
        *[status[1]] * 2,
        f"kernels push -p {out / 'kernel'}",
        *[f"kernels status {KERNEL}"] * 3,
    ]
    assert kaggle.clock.sleeps == [7.0] * 5
    printed = capsys.readouterr()
    assert "Kaggle credentials: KAGGLE_API_TOKEN" in printed.out
    assert f"{CODE}: blobs_received" in printed.out and f"{KERNEL}: running" in printed.out
    assert f"{WEIGHTS}: blobs_received" in printed.out  # the status after the version warning
    last = printed.out.strip().splitlines()[-1]
    assert last.startswith(f"notebook {KERNEL} complete; its log: kaggle kernels logs {KERNEL}")
    assert f"https://www.kaggle.com/code/{KERNEL}" in last
    assert TOKEN not in printed.out + printed.err


def test_a_dataset_never_ready_stops_before_the_kernel_push_naming_the_command(
    tmp_path, kaggle, monkeypatch, capsys
):
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    kaggle.plan(**{f"datasets status {WEIGHTS}": [[0, "blobs_received"]]})
    with pytest.raises(UserError) as stopped:
        push_folders(tmp_path, wait=60, poll=10)
    message = str(stopped.value)
    assert message.startswith(f"`kaggle datasets status {WEIGHTS}` still says 'blobs_received'")
    assert "after 60 s (--wait 60)" in message and "\n" not in message
    assert not any(call.startswith("kernels push") for call in kaggle.calls())
    assert kaggle.clock.sleeps == [10.0] * 8  # the code dataset twice, then the weights' six


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"kernels status": [kernel_says("RUNNING"), kernel_says("ERROR")]},
            f"notebook {KERNEL} ended with status 'error'; its log: kaggle kernels logs {KERNEL};",
        ),
        (
            {"kernels status": [kernel_says("RUNNING")]},
            f"`kaggle kernels status {KERNEL}` still says 'running' after 30 s (--wait 30); its"
            f" log: kaggle kernels logs {KERNEL};",
        ),
        ({f"datasets status {CODE}": [[0, "ready"], [0, "failed"]]}, "is 'failed' on Kaggle"),
        ({"datasets create": [[0, "Dataset creation error: $TOKEN bad"]]}, "error: *** bad"),
        ({"kernels push": [[1, "401 Unauthorized $TOKEN"]]}, "failed (exit 1): 401 Una"),
        (
            {"kernels push": [[0, "The following are not valid dataset sources and could not"]]},
            "push -p",
        ),
    ],
)
def test_each_failure_is_one_line_naming_the_command_without_the_token(
    tmp_path, kaggle, monkeypatch, capsys, change, expected
):
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    key, answers = next(iter(change.items()))
    kaggle.plan(**{f"kernels status {KERNEL}" if key == "kernels status" else key: answers})
    with pytest.raises(UserError) as stopped:
        push_folders(tmp_path, wait=30, poll=5)
    message = str(stopped.value)
    assert expected in message and "\n" not in message
    assert TOKEN not in message + "".join(capsys.readouterr())
    if "kernel" in expected:
        assert f"https://www.kaggle.com/code/{KERNEL}" in message


def assert_credentials(expected: str | None) -> None:
    assert push.credentials_source() == expected


def test_credentials_are_found_in_the_kaggle_cli_order(tmp_path, kaggle, monkeypatch, capsys):
    home = tmp_path / "home" / ".kaggle"
    home.mkdir(parents=True)
    ckpt, out = fake_checkpoint(tmp_path / "m.ckpt"), tmp_path / "out"
    assert main(["package", str(ckpt), str(out), "--user", "u", "--push"]) == 2
    assert "no Kaggle credentials found; create an API token" in only_error_line(capsys)
    assert kaggle.calls() == [] and not out.exists()
    steps = [
        ("credentials.json", "kaggle auth login"),
        ("kaggle.json", "kaggle.json (legacy)"),
        ("KAGGLE_KEY", "KAGGLE_USERNAME and KAGGLE_KEY"),
        ("access_token", "~/.kaggle/access_token"),
        ("KAGGLE_API_TOKEN", "KAGGLE_API_TOKEN"),
    ]
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    for where, expected in steps:  # each one added takes over from those before
        if where.startswith("KAGGLE_"):
            monkeypatch.setenv(where, "secret")
        else:
            (home / where).write_text("{}")
        assert_credentials(expected)
    monkeypatch.setenv("PATH", os.environ["PATH"].split(os.pathsep, 1)[1])
    if shutil.which("kaggle") is None:
        assert main(["package", str(ckpt), str(out), "--user", "u", "--push"]) == 2
        assert "pip install kaggle" in only_error_line(capsys)


# --- the weights as a Kaggle Model ----------------------------------------------------------

MODEL = f"tester/{BASE}-weights"
INSTANCE = f"{MODEL}/pytorch/default"
NOT_FOUND = [1, "404 Client Error: Not Found for url: https://www.kaggle.com/api/v1/x"]
LISTED = "name  size  creationDate\n----  ----  ----\nmanifest.json  912  x\nmodel.ckpt  8000  x"


def variation(version: int) -> list:
    """An answer of ``models variations get``: the metadata file it writes."""
    written = {INSTANCE_METADATA: {"instanceSlug": "default", "versionNumber": version}}
    return [0, "Metadata file written to x", written]


MODEL_PLAN = {
    "models variations get": [NOT_FOUND, variation(1)],
    "models get": [NOT_FOUND],
    "models create": [[0, "Your model was created. Id=7. Url=https://www.kaggle.com/models/x"]],
    "models variations create": [[0, "Your model instance was created. Id=8. Url=x"]],
    "models variations versions create": [[0, "Your model instance version was created. Url=x"]],
    "models variations versions files": [NOT_FOUND, [0, "No files found"], [0, LISTED]],
}


def model_calls(kaggle) -> list[str]:
    """The stand-in's calls, the temporary folder ``-p`` of the metadata queries as ``TMP``."""
    return [re.sub(r"-p \S*kaggle-\S+", "-p TMP", call) for call in kaggle.calls()]


@pytest.mark.parametrize("case", ["new model", "new variation", "new version"])
def test_model_weights_are_created_or_versioned_and_the_kernel_pins_the_ready_version(
    tmp_path, kaggle, monkeypatch, capsys, case
):
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    plan = dict(MODEL_PLAN)
    if case != "new model":
        plan["models get"] = [[0, "Metadata file written", {MODEL_METADATA: {"slug": "x"}}]]
    if case == "new version":  # version 3 exists; 4 is listed once, then processed
        plan["models variations get"] = [variation(3), variation(3), variation(4)]
    kaggle.plan(**plan)
    ckpt, out = fake_checkpoint(tmp_path / "m.ckpt"), tmp_path / "out"
    args = [str(ckpt), str(out), "--user", "tester", "--weights-as", "model", "--push"]
    assert main(["package", *args, "--poll", "7"]) == 0
    version = 4 if case == "new version" else 1
    get, weights = f"models variations get {INSTANCE} -p TMP", out / "weights"
    files = f"models variations versions files {INSTANCE}/{version} --page-size 200"
    upload = {
        "new model": [f"models get {MODEL} -p TMP", f"models create -p {weights}"],
        "new variation": [f"models get {MODEL} -p TMP"],
        "new version": [],
    }[case]
    if case == "new version":
        upload.append(
            f"models variations versions create {INSTANCE} -p {weights} -n {PROJECT} {__version__}"
        )
    else:
        upload.append(f"models variations create -p {weights}")
    waiting = [get] if case == "new version" else []  # still version 3
    assert model_calls(kaggle) == [
        f"datasets status {CODE}",
        f"datasets create -p {out / 'code'}",
        get,
        *upload,
        *[f"datasets status {CODE}"] * 3,
        *waiting,
        *[get, files] * 3,
        f"kernels push -p {out / 'kernel'}",
        *[f"kernels status {KERNEL}"] * 3,
    ]
    assert kaggle.clock.sleeps == [7.0] * (7 if case == "new version" else 6)
    kernel = json.loads((out / "kernel" / KERNEL_METADATA).read_text())
    assert kernel["model_sources"] == [f"{INSTANCE}/{version}"]
    assert kernel["dataset_sources"] == [CODE]
    printed = capsys.readouterr()
    assert f"{INSTANCE}: version {version}: 2 files not listed yet" in printed.out
    assert f"{INSTANCE}: ready" in printed.out
    assert f"kernel-metadata.json: model_sources {INSTANCE}/{version}" in printed.out
    assert TOKEN not in printed.out + printed.err


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"models variations versions files": [[0, "No files found"]]},
            f"`kaggle models variations get {INSTANCE}` still says 'version 1: 2 files not listed"
            " yet' after 30 s (--wait 30)",
        ),
        (
            {
                "models variations get": [variation(3)],
                "models variations versions create": [
                    [0, "Model instance version creation error: $TOKEN may not upload"]
                ],
            },
            "failed: Model instance version creation error: *** may not upload",
        ),
        (
            {"models create": [[1, "403 Client Error: Forbidden $TOKEN"]]},
            "`kaggle models create -p",
        ),
        (
            {"models variations get": [[0, "Metadata file written", {INSTANCE_METADATA: {}}]]},
            f"`kaggle models variations get {INSTANCE}` gave no version number: None",
        ),
    ],
)
def test_a_model_upload_refused_or_never_ready_stops_before_the_kernel_push(
    tmp_path, kaggle, monkeypatch, capsys, change, expected
):
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    kaggle.plan(**{**MODEL_PLAN, **change})
    ckpt, out = fake_checkpoint(tmp_path / "m.ckpt"), tmp_path / "out"
    args = [str(ckpt), str(out), "--user", "tester", "--weights-as", "model", "--push"]
    assert main(["package", *args, "--wait", "30", "--poll", "5"]) == 2
    printed = capsys.readouterr()
    line = printed.err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in printed.err
    assert expected in line and TOKEN not in printed.out + printed.err
    assert not any(call.startswith("kernels push") for call in kaggle.calls())
    kernel = json.loads((out / "kernel" / KERNEL_METADATA).read_text())
    assert kernel["model_sources"] == [f"{INSTANCE}/1"]  # as package wrote it
