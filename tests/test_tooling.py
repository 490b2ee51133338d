"""The template repository's own tooling is lint-clean and its scripts are wired together."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT, tomllib


def test_black_and_flake8_on_the_tooling():
    for tool in (["black", "--check", "--quiet", "."], ["flake8"]):
        result = subprocess.run(
            [sys.executable, "-m", *tool], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("bash scripts/")]
    assert commands[:2] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_the_version_is_written_once_and_the_changelog_covers_it():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    headings = re.findall(r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert version in headings and headings[0] in ("Unreleased", version), headings
    baked = ROOT / "{{cookiecutter.__project_dir}}"
    assert 'dynamic = ["version"]' in (baked / "pyproject.toml").read_text()
    init = next((baked / "src").glob("*/__init__.py")).read_text()
    assert re.search(r'^__version__ = "\d+\.\d+\.\d+"$', init, re.M)
