"""Simulate GitHub's "Use this template": copy, render with the setup script, push, compare.

The local bare remote gets a pre-receive hook that refuses any push adding or changing a file
under .github/workflows/, which is the rule the workflow token lives under on GitHub.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, bake_files, copy_as_new_repository, git, repository_files

sys.path.insert(0, str(ROOT / "scripts"))
import render_from_template as setup_script  # noqa: E402

PRE_RECEIVE = r"""#!/bin/sh
# Refuse pushes that add or modify workflow files (deleting them is allowed), like GITHUB_TOKEN.
added='^[AMRC][0-9]*\s+(.*\s)?\.github/workflows/'
while read old new ref; do
    if git diff --name-status "$old" "$new" 2>/dev/null | grep -E "$added"; then
        echo "refusing to allow a GitHub App to create or update workflow" \
            "without workflows permission" >&2
        exit 1
    fi
done
exit 0
"""


@pytest.fixture
def new_repo(tmp_path: Path) -> tuple[Path, Path]:
    """(working clone, bare remote) of a repository just created from the template."""
    work = copy_as_new_repository(tmp_path / "leaf-doctor", "Initial commit")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "-q", "origin", "main")
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE)
    hook.chmod(0o755)
    return work, remote


def _direct_bake(tmp_path: Path, context: dict) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(
        cookiecutter(
            str(ROOT), no_input=True, extra_context=context, output_dir=str(tmp_path / "direct")
        )
    )


def test_rendered_repository_equals_a_direct_bake(new_repo, tmp_path):
    work, _ = new_repo
    args = ["--name", "leaf-doctor", "--owner", "octo-org", "--repo", str(work)]
    assert setup_script.main([*args, "--description", "Apple leaf diseases"]) == 0
    git(work, "push", "-q", "origin", "HEAD:main")  # the token's rule holds
    context = setup_script.answers("leaf-doctor", "octo-org", "Apple leaf diseases", None)
    assert context["package"] == "leaf_doctor"
    direct = _direct_bake(tmp_path, context)
    files = set(repository_files(work))
    assert files == bake_files(direct)
    mismatch = [
        name for name in files if not filecmp.cmp(work / name, direct / name, shallow=False)
    ]
    assert mismatch == []
    assert not (work / "cookiecutter.json").exists() and not (work / "hooks").exists()
    assert sorted(p.name for p in (work / ".github" / "workflows").iterdir()) == ["ci.yml"]
    log = git(work, "log", "--format=%s").splitlines()
    assert log == ["Render the Kaggle Lightning template for leaf-doctor", "Initial commit"]
    assert git(work, "status", "--porcelain") == ""


def test_second_run_is_a_no_op(new_repo, capsys):
    work, _ = new_repo
    assert setup_script.main(["--name", "leaf-doctor", "--repo", str(work)]) == 0
    head = git(work, "rev-parse", "HEAD")
    assert setup_script.main(["--name", "leaf-doctor", "--repo", str(work)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert git(work, "rev-parse", "HEAD") == head


def test_a_changed_workflow_stops_before_anything_changes(new_repo, capsys):
    work, _ = new_repo
    ci = work / ".github" / "workflows" / "ci.yml"
    ci.write_text(ci.read_text() + "# drift\n")
    git(work, "commit", "-q", "-am", "drift")
    head = git(work, "rev-parse", "HEAD")
    assert setup_script.main(["--name", "leaf-doctor", "--repo", str(work)]) == 1
    assert "byte-identical" in capsys.readouterr().err
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "status", "--porcelain") == ""


def test_the_remote_refuses_workflow_changes(new_repo):
    """The pre-receive hook really enforces the token's rule (so the first test means something)."""
    work, _ = new_repo
    (work / ".github" / "workflows" / "extra.yml").write_text("name: x\n")
    git(work, "add", "--all")
    git(work, "commit", "-q", "-m", "add a workflow")
    push = subprocess.run(
        ["git", "push", "origin", "HEAD:main"], cwd=work, capture_output=True, text=True
    )
    assert push.returncode != 0 and "workflows permission" in push.stderr


def test_a_name_the_hook_refuses_fails_cleanly(new_repo, capsys):
    work, _ = new_repo
    head = git(work, "rev-parse", "HEAD")
    assert (
        setup_script.main(["--name", "leaf-doctor", "--package", "torch", "--repo", str(work)]) == 1
    )
    assert "cookiecutter refused" in capsys.readouterr().err
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "status", "--porcelain") == ""


@pytest.mark.parametrize(
    ("repo_name", "package"),
    [
        ("leaf-doctor", "leaf_doctor"),
        ("Kaggle.PlantPathology-2021", "kaggle_plantpathology_2021"),
        ("2021-fgvc8", "kaggle_2021_fgvc8"),
        ("json", "json_challenge"),
        ("class", "class_challenge"),
        ("---", "challenge"),
    ],
)
def test_package_name_from_repository_name(repo_name, package):
    assert setup_script.package_name(repo_name) == package


def test_top_level_workflow_is_the_baked_one():
    shipped = ROOT / ".github" / "workflows" / "ci.yml"
    template = ROOT / "{{cookiecutter.__project_dir}}" / ".github" / "workflows" / "ci.yml"
    assert shipped.read_bytes() == template.read_bytes()
    assert "cookiecutter" not in template.read_text().replace("cookiecutter.json", "")
