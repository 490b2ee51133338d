"""Simulate GitHub's "Use this template": copy, render with the setup script, push, compare.

The local bare remote gets a pre-receive hook that refuses any push adding or changing a file
under .github/workflows/, which is the rule the workflow token lives under on GitHub.
"""

from __future__ import annotations

import filecmp
import keyword
import os
import random
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import (
    ROOT,
    bake_files,
    copy_as_new_repository,
    git,
    repository_files,
    setup_script,
    tomllib,
)

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
OWNER = "octo-org"


@pytest.fixture
def new_repo(tmp_path: Path) -> tuple[Path, Path]:
    """(working clone, bare remote) of a repository just created from the template."""
    work = copy_as_new_repository(tmp_path / "leaf-doctor", "Initial commit")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
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


def _render(work: Path, *args: str) -> int:
    return setup_script.main(["--repo", str(work), *args])


def test_rendered_repository_equals_a_direct_bake(new_repo, tmp_path):
    """Jinja-looking text, emoji and line breaks in the description stay data, in valid TOML."""
    work, _ = new_repo
    pwned = tmp_path / "pwned"
    injection = f"{{{{ cycler.__init__.__globals__.os.popen('touch {pwned}').read() }}}}"
    description = f'Apple 🍎 leaf "diseases" \\ {injection}\n\tsecond  line '
    args = ["--name", "leaf-doctor", "--owner", OWNER, "--description", description]
    assert _render(work, *args) == 0
    git(work, "push", "-q", "origin", "HEAD:main")  # the token's rule holds
    assert not pwned.exists(), "the description was evaluated as Jinja"
    expected_description = f'Apple 🍎 leaf "diseases" \\ {injection} second line'
    meta = tomllib.loads((work / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["name"] == "leaf-doctor"
    assert meta["description"] == expected_description
    assert meta["authors"] == [{"name": OWNER, "email": f"{OWNER}@users.noreply.github.com"}]
    assert meta["urls"]["Repository"] == f"https://github.com/{OWNER}/leaf-doctor"
    assert meta["scripts"] == {"leaf_doctor": "leaf_doctor.cli:main"}
    readme = (work / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# leaf-doctor\n\n{expected_description}\n")

    # The same answers, typed by hand, baked directly ({% raw %}: keep the braces literal).
    direct = _direct_bake(
        tmp_path,
        {
            "project": "leaf-doctor",
            "package": "leaf_doctor",
            "github_user": OWNER,
            "author": OWNER,
            "email": f"{OWNER}@users.noreply.github.com",
            "description": "{% raw %}" + expected_description + "{% endraw %}",
        },
    )
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


def test_untracked_and_ignored_files_are_kept_and_not_committed(new_repo, capsys):
    work, _ = new_repo
    mine = {
        "data/train.csv": "image,labels\n",
        "data/train_images/a.jpg": "not really a jpeg",
        ".venv/bin/python": "#!/bin/sh\n",  # ignored by the template's .gitignore
        "notes.txt": "my notes",  # neither tracked nor ignored
        "tests/my_scratch.py": "x = 1\n",  # inside a folder the template tracks
    }
    for name, text in mine.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    assert _render(work, "--name", "leaf-doctor") == 0
    assert {name: (work / name).read_text() for name in mine if (work / name).exists()} == mine
    assert "kept untracked and ignored files, not committed" in capsys.readouterr().out
    committed = set(git(work, "ls-tree", "-r", "--name-only", "HEAD").split("\n")) - {""}
    assert committed.isdisjoint(mine)
    assert "src/leaf_doctor/cli/__init__.py" in committed and "cookiecutter.json" not in committed
    assert not (work / "cookiecutter.json").exists() and not (work / "hooks").exists()


def test_an_untracked_file_in_the_way_stops_before_anything_changes(new_repo, capsys):
    work, _ = new_repo
    (work / "LICENSE").write_text("my own license")  # the rendered project has a LICENSE
    head = git(work, "rev-parse", "HEAD")
    assert _render(work, "--name", "leaf-doctor") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: untracked files are where") and "LICENSE" in err
    assert (work / "LICENSE").read_text() == "my own license"
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "status", "--porcelain") == "?? LICENSE\n"


def test_uncommitted_changes_stop_before_anything_changes(new_repo, capsys):
    work, _ = new_repo
    readme = work / "README.md"
    readme.write_text(readme.read_text() + "my edit\n")
    head = git(work, "rev-parse", "HEAD")
    assert _render(work, "--name", "leaf-doctor") == 1
    assert "uncommitted changes" in capsys.readouterr().err
    assert readme.read_text().endswith("my edit\n")
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "status", "--porcelain") == " M README.md\n"


def test_second_run_is_a_no_op(new_repo, capsys):
    work, _ = new_repo
    assert _render(work, "--name", "leaf-doctor") == 0
    head = git(work, "rev-parse", "HEAD")
    assert _render(work, "--name", "leaf-doctor") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert git(work, "rev-parse", "HEAD") == head


def test_a_changed_workflow_stops_before_anything_changes(new_repo, capsys):
    work, _ = new_repo
    ci = work / ".github" / "workflows" / "ci.yml"
    ci.write_text(ci.read_text() + "# drift\n")
    git(work, "commit", "-q", "-am", "drift")
    head = git(work, "rev-parse", "HEAD")
    assert _render(work, "--name", "leaf-doctor") == 1
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


def test_a_package_the_hook_refuses_fails_cleanly(new_repo, capsys):
    work, _ = new_repo
    head = git(work, "rev-parse", "HEAD")
    assert _render(work, "--name", "leaf-doctor", "--package", "torch") == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: package 'torch' shadows a module") and "nothing was changed" in err
    )
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
        ("torch", "torch_challenge"),
        ("NumPy", "numpy_challenge"),
        ("tests", "tests_challenge"),
        ("src", "src_challenge"),
        ("python", "python_challenge"),
        ("PIL", "pil_challenge"),
        ("a" * 100, "a" * 64),
        ("Torch" * 20, ("torch" * 20)[:64]),
    ],
)
def test_package_name_from_repository_name(hook, repo_name, package):
    assert setup_script.answers(repo_name, None, None, None, hook)["package"] == package


def _repository_names() -> list[str]:
    """Many names GitHub allows, and every name the rules give a meaning to, in variants."""
    rng = random.Random(20240915)
    alphabet = string.ascii_letters + string.digits + "-_."
    names = ["".join(rng.choices(alphabet, k=rng.randint(1, 100))) for _ in range(2000)]
    names += ["".join(rng.choices("_-.0123456789", k=rng.randint(1, 8))) for _ in range(200)]
    hook = setup_script.load_hook(ROOT / "hooks" / "pre_gen_project.py")
    special = [
        *hook.DEPENDENCY_MODULES,
        *hook.COMMANDS,
        *hook.PROJECT_FOLDERS,
        *hook.STDLIB_EXTRA,
        *sys.stdlib_module_names,
        *keyword.kwlist,
        *keyword.softkwlist,
    ]
    for name in special:
        names += [name, name.upper(), f"{name}-", f"-{name}", f"{name}.py", f"1{name}", name * 30]
    return names


def test_every_derived_package_passes_the_hook(hook):
    """One implementation of the rules: whatever the repository name, the hook accepts it."""
    names = _repository_names()
    refused = {}
    for name in names:
        package = setup_script.answers(name, None, None, None, hook)["package"]
        if hook.check_package(package) is not None:
            refused[name] = package
    assert len(names) > 3000 and refused == {}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Apple leaf diseases", "Apple leaf diseases"),
        ("  two\nlines\r\n\tand\x00 controls\x85\u2028 ", "two lines and controls"),
        ("🍎 " * 200, ("🍎 " * 175).strip()),
        ("\n\t ", None),
        (None, None),
    ],
)
def test_description_becomes_one_line_the_hook_accepts(hook, given, expected):
    context = setup_script.answers("leaf-doctor", OWNER, given, None, hook)
    assert context.get("description") == expected
    if expected is not None:
        assert hook.check_text("description", context["description"]) is None


@pytest.mark.parametrize(
    ("repo_name", "distribution"), [("tests", "tests"), ("torch", "torch-challenge")]
)
def test_repository_named_like_a_refused_package_renders(tmp_path, repo_name, distribution):
    work = copy_as_new_repository(tmp_path / repo_name, "Initial commit")
    assert _render(work, "--name", repo_name) == 0
    package = f"{repo_name}_challenge"
    assert (work / "src" / package / "cli" / "__init__.py").is_file()
    meta = tomllib.loads((work / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["scripts"] == {package: f"{package}.cli:main"}
    assert meta["name"] == distribution


def test_top_level_workflow_is_the_baked_one():
    shipped = ROOT / ".github" / "workflows" / "ci.yml"
    template = ROOT / "{{cookiecutter.__project_dir}}" / ".github" / "workflows" / "ci.yml"
    assert shipped.read_bytes() == template.read_bytes()
    assert "cookiecutter" not in template.read_text().replace("cookiecutter.json", "")


# --- The setup workflow itself, its shell steps run against the local remote -------------------

SETUP = ROOT / ".github" / "workflows" / "template-setup.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _event(remote: Path) -> dict[str, str]:
    """The values the workflow's expressions read, for the push to main that created the repo."""
    return {
        "github.event.repository.name": "leaf-doctor",
        "github.event.repository.description": "Apple leaf diseases",
        "github.event.repository.default_branch": "main",
        "github.repository_owner": OWNER,
        "github.token": "t0ken",
        "github.ref_name": "main",
        "github.sha": git(remote, "rev-parse", "main").strip(),
    }


def _substitute(value: str, event: dict[str, str]) -> str:
    return EXPRESSION.sub(lambda match: event[match[1]], value)


def _checkout(step: dict, remote: Path, dest: Path, event: dict[str, str]) -> Path:
    """What actions/checkout does with the step's ``ref`` (default: the commit that triggered)."""
    ref = _substitute(step.get("with", {}).get("ref", "${{ github.sha }}"), event)
    git(dest.parent, "clone", "-q", str(remote), str(dest))
    if ref == event["github.sha"]:
        git(dest, "checkout", "-q", "--detach", ref)
    else:
        git(dest, "checkout", "-q", ref)
    return dest


def _run_setup_workflow(remote: Path, dest: Path, event: dict[str, str]) -> None:
    """Run the render job's steps: checkout as configured, then its shell steps, for real."""
    steps = yaml.safe_load(SETUP.read_text())["jobs"]["render"]["steps"]
    _checkout(steps[0], remote, dest, event)
    push_url = f"https://x-access-token:{event['github.token']}@github.com/{OWNER}/leaf-doctor.git"
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        GITHUB_REPOSITORY=f"{OWNER}/leaf-doctor",
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0=f"url.{remote}.insteadOf",
        GIT_CONFIG_VALUE_0=push_url,
    )
    for step in steps:
        if "run" not in step or "pip install" in step["run"]:
            continue
        step_env = {key: _substitute(value, event) for key, value in step.get("env", {}).items()}
        result = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=dest,
            env={**env, **step_env},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, (step["name"], result.stdout + result.stderr)


def test_setup_workflow_renders_once_and_a_rerun_is_a_no_op(new_repo, tmp_path):
    _, remote = new_repo
    event = _event(remote)
    _run_setup_workflow(remote, tmp_path / "run1", event)
    rendered = git(remote, "rev-parse", "main")
    files = git(remote, "ls-tree", "-r", "--name-only", "main")
    assert "cookiecutter.json" not in files and "src/leaf_doctor/cli/__init__.py" in files
    _run_setup_workflow(remote, tmp_path / "rerun", event)  # "Re-run jobs": the same event
    assert git(remote, "rev-parse", "main") == rendered
