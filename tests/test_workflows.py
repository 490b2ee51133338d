"""Workflows, issue forms and dependabot files validate; zizmor finds nothing; least privilege."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent


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


def test_issue_forms_and_dependabot_validate(tree):
    forms = tree / ".github" / "ISSUE_TEMPLATE"
    _check("vendor.github-issue-forms", forms / "bug_report.yml", forms / "feature_request.yml")
    _check("vendor.github-issue-config", forms / "config.yml")
    _check("vendor.dependabot", tree / ".github" / "dependabot.yml")
    assert (tree / ".github" / "PULL_REQUEST_TEMPLATE.md").is_file()


def test_zizmor_finds_nothing(tree):
    result = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--persona", "auditor", ".github/workflows"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


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
                assert re.search(r"# v\d+\.\d+\.\d+$", line), line
        # no ${{ }} expression inside a run: script (template injection)
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), (path.name, step.get("name"))


def test_project_ci_runs_on_every_pull_request(baked):
    workflow = yaml.safe_load((baked / ".github" / "workflows" / "ci.yml").read_text())
    triggers = workflow[True]  # PyYAML reads the key "on" as True
    assert "pull_request" in triggers and triggers["pull_request"] is None
    assert {"lint", "test"} <= set(workflow["jobs"])
    assert workflow["concurrency"]["cancel-in-progress"] is True
    install = " ".join(s.get("run", "") for s in workflow["jobs"]["test"]["steps"])
    assert "download.pytorch.org/whl/cpu" in install


def test_template_workflows_are_gated():
    setup = ROOT / ".github" / "workflows" / "template-setup.yml"
    job = yaml.safe_load(setup.read_text())["jobs"]["render"]
    assert "is_template == false" in job["if"]
    template_ci = yaml.safe_load((ROOT / ".github" / "workflows" / "template-ci.yml").read_text())
    assert "is_template" in template_ci["jobs"]["tests"]["if"]
