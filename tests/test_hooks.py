"""The pre-generation hook: its checks, unit by unit, and a few bakes that must leave nothing.

Bad answers stop the bake with one clear ``ERROR:`` line per problem. The checks are tested by
importing the (unrendered) hook; a handful of real ``cookiecutter`` runs show that a refusal
leaves nothing on disk and prints no traceback.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

from conftest import run_cookiecutter, tomllib
from lockfile import BAKED_LOCK, baked_distributions

BAD_PACKAGES = [
    # (package, a words of the reason)
    ("Challenge", "not a lowercase Python identifier"),
    ("1st_place", "not a lowercase Python identifier"),
    ("leaf-doctor", "not a lowercase Python identifier"),
    ("café", "not a lowercase Python identifier"),
    ("", "not a lowercase Python identifier"),
    ("PIL", "not a lowercase Python identifier"),
    ("a" * 65, "65 characters long"),
    ("a" * 300, "300 characters long"),
    ("class", "keyword"),
    ("match", "keyword"),
    ("json", "standard-library"),
    ("os", "standard-library"),
    ("tomllib", "standard-library"),
    ("torch", "shadows a module the project depends on"),
    ("torchvision", "shadows a module the project depends on"),
    ("pytorch_lightning", "shadows a module the project depends on"),
    ("lightning", "shadows a module the project depends on"),
    ("jsonargparse", "shadows a module the project depends on"),
    ("iterstrat", "shadows a module the project depends on"),
    ("sklearn", "shadows a module the project depends on"),
    ("numpy", "shadows a module the project depends on"),
    ("pil", "shadows a module the project depends on"),
    ("rich", "shadows a module the project depends on"),
    ("yaml", "shadows a module the project depends on"),
    ("pytest", "shadows a module the project depends on"),
    ("python", "would replace the command"),
    ("python3", "would replace the command"),
    ("pip", "shadows a module the project depends on"),
    ("activate", "would replace the command"),
    ("torchrun", "would replace the command"),
    ("tests", "folder of the project"),
    ("src", "folder of the project"),
]


@pytest.mark.parametrize(("package", "reason"), BAD_PACKAGES, ids=[p[:20] for p, _ in BAD_PACKAGES])
def test_bad_package_is_refused(hook, package, reason):
    message = hook.check_package(package)
    assert message is not None and message.startswith(f"package {package!r} ")
    assert reason in message
    suggestion = re.search(r"\(e\.g\. (\w+)\)$", message)[1]
    assert hook.check_package(suggestion) is None, message


@pytest.mark.parametrize(
    "package", ["leaf_doctor", "challenge_xyz", "a", "x" * 64, "torch_challenge", "numpy2"]
)
def test_good_package_passes(hook, package):
    assert hook.check_package(package) is None


def test_every_dependency_module_and_command_is_refused(hook):
    """What a baked project imports or installs: a package of that name would break it.

    The distributions come from the baked project's lock; their modules and commands from the
    files of those distributions, installed here at the locked versions by the bootstrap
    (platform-only ones, such as Windows' colorama, are not installed and are left out).
    """
    names = set()
    for name in baked_distributions():
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in distribution.files or []:
            top = file.parts[0]
            if len(file.parts) == 1 and top.endswith(".py"):
                names.add(top[:-3])
            elif len(file.parts) > 1 and top.isidentifier() and top != "__pycache__":
                names.add(top)
        names |= {ep.name for ep in distribution.entry_points if ep.group == "console_scripts"}
    accepted = sorted(name for name in names if hook.check_package(name.lower()) is None)
    assert len(names) > 30
    assert accepted == [], (
        f"modules or commands of what {BAKED_LOCK.name} installs pass the hook: add {accepted}"
        " to DEPENDENCY_MODULES (or COMMANDS) in hooks/pre_gen_project.py"
    )


TEXT_THAT_IS_FINE = [
    'Zoë O\'Brien "the Kaggler" \\ $(rm -rf ~) `id` <b>',
    "Leaves 🍃🍎 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010fffd, 日本語, עברית, family 👨\u200d👩\u200d👧",
    "{{ cookiecutter.project }} {% if x %} {# not a comment #} ${{ github.token }}",
    "\\u00e9 \\ud83d \\N{BULLET} \\x00 \\n",
    "\"\"\" ''' # %s {0} ${HOME}",
    "d" * 350,
]
TEXT_THAT_IS_REFUSED = [
    ("two\nlines", "line break"),
    ("carriage\rreturn", "line break"),
    ("tab\there", "control character"),
    ("nul\0", "control character"),
    ("next line \x85 (C1)", "control character"),
    ("line\u2028separator", "line break"),
    ("paragraph\u2029separator", "line break"),
    ("lone \ud83d surrogate", "control character"),
    ("", "empty"),
    ("   ", "empty"),
    ("d" * 351, "351 characters"),
]


@pytest.mark.parametrize("text", TEXT_THAT_IS_FINE, ids=range(len(TEXT_THAT_IS_FINE)))
def test_any_one_line_unicode_text_passes(hook, text):
    assert hook.check_text("description", text) is None


@pytest.mark.parametrize(
    ("text", "reason"), TEXT_THAT_IS_REFUSED, ids=[r for _, r in TEXT_THAT_IS_REFUSED]
)
def test_text_that_cannot_be_one_line_is_refused(hook, text, reason):
    message = hook.check_text("author", text)
    assert message is not None and message.startswith("author ") and reason in message


BAD_PROJECTS = [
    ("", "empty"),
    ("a/b", "path separator"),
    ("..", "starts with '.'"),
    ("../escape", "path separator"),
    ("a..b", "'..'"),
    ("-rf", "starts with '-'"),
    ("back\\slash", "path separator"),
    ("has space", "characters GitHub refuses"),
    ("semi;colon", "characters GitHub refuses"),
    ("x" * 101, "longer than GitHub's 100"),
    ("___", "no letter or digit"),
]


@pytest.mark.parametrize(("project", "reason"), BAD_PROJECTS, ids=[p[:20] for p, _ in BAD_PROJECTS])
def test_bad_project_is_refused(hook, project, reason):
    message = hook.check_project(project)
    assert message is not None and reason in message


@pytest.mark.parametrize(
    ("check", "value", "reason"),
    [
        ("check_email", "nobody", "not an e-mail address"),
        ("check_email", "a@b", "not an e-mail address"),
        ("check_email", "a b@example.com", "not an e-mail address"),
        ("check_competition", "Plant Pathology", "not a Kaggle slug"),
        ("check_github_user", "-leading", "not a GitHub name"),
        ("check_github_user", "a--b", "not a GitHub name"),
    ],
)
def test_bad_identifiers_are_refused(hook, check, value, reason):
    assert reason in getattr(hook, check)(value)


# End to end: one real bake per kind of refusal, through the cookiecutter command line.
BAD_ANSWERS = [
    # (answer, the field the ERROR line must name, a word of the reason)
    ("package=" + "a" * 300, "package", "300 characters long"),
    ("package=python", "package", "would replace the command"),
    ("package=torch", "package", "shadows a module the project depends on"),
    ("project=" + "x" * 300, "project", "longer than GitHub's 100"),
    ("project=../escape", "project", "path separator"),
    ("email=nobody", "email", "not an e-mail address"),
    ("description=two\nlines", "description", "line break"),
]


@pytest.mark.parametrize(
    ("answer", "field", "reason"), BAD_ANSWERS, ids=[a[:30] for a, _, _ in BAD_ANSWERS]
)
def test_bad_answer_fails_cleanly(tmp_path, answer, field, reason):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "keep.txt").write_text("precious")
    result = run_cookiecutter(out, answer)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"ERROR: {field} ")]
    assert len(errors) == 1, result.stderr
    assert reason in errors[0]
    assert "use " in errors[0]
    assert list(out.iterdir()) == [], "the failed bake left files behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "out"]


def test_several_problems_are_all_reported(tmp_path):
    result = run_cookiecutter(tmp_path, "package=Bad", "email=x", "project=a/b")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    fields = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert {"project", "package", "email"} <= set(fields)
    assert list(tmp_path.iterdir()) == []


def test_unknown_choice_is_refused(tmp_path):
    result = run_cookiecutter(tmp_path, "license=GPL-3.0")
    assert result.returncode != 0
    assert "GPL-3.0" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("answer", "folder", "inside"),
    [
        ("package=leaf_doctor", "kaggle-plant-pathology", "src/leaf_doctor/cli/__init__.py"),
        ("project=Leaf.Doctor_2", "Leaf.Doctor_2", "src/challenge_xyz/cli/__init__.py"),
        ("email=a.b+c@d.co.uk", "kaggle-plant-pathology", "pyproject.toml"),
        ('author=Zoë 🍃 \\"', "kaggle-plant-pathology", "LICENSE"),
    ],
)
def test_good_unusual_answers_pass(tmp_path, answer, folder, inside):
    result = run_cookiecutter(tmp_path, answer)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == [folder]
    assert (tmp_path / folder / inside).is_file()
    key, value = answer.split("=", 1)
    pyproject = tomllib.loads(Path(tmp_path / folder / "pyproject.toml").read_text())["project"]
    given = {
        "project": pyproject["urls"]["Repository"].rsplit("/", 1)[1],
        "package": next(iter(pyproject["scripts"])),
        "email": pyproject["authors"][0]["email"],
        "author": pyproject["authors"][0]["name"],
    }
    assert given[key] == value
