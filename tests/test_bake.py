"""Bake the template with every option value and check what users get, file by file."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import (
    DEFAULT_PACKAGE,
    DEFAULT_PROJECT,
    ROOT,
    TEMPLATE_DIR,
    bake_files,
    repository_files,
    run_cookiecutter,
    setup_script,
    text_files,
    tomllib,
)
from lockfile import BAKED_LOCK, baked_distributions

# Files a project must have (a file missing from the template fails here). Files added to the
# template are expected in the bake without being listed: see template_files().
CORE_FILES = {
    ".github/ISSUE_TEMPLATE/bug_report.yml",
    ".github/ISSUE_TEMPLATE/config.yml",
    ".github/ISSUE_TEMPLATE/feature_request.yml",
    ".github/PULL_REQUEST_TEMPLATE.md",
    ".github/dependabot.yml",
    ".github/workflows/ci.yml",
    ".flake8",
    ".gitignore",
    ".pre-commit-config.yaml",
    "README.md",
    "AGENTS.md",
    "pyproject.toml",
    "configs/baseline.yaml",
    "configs/cpu_debug.yaml",
    "src/{pkg}/__init__.py",
    "src/{pkg}/backbones.py",
    "src/{pkg}/data.py",
    "src/{pkg}/folds.py",
    "src/{pkg}/images.py",
    "src/{pkg}/labels.py",
    "src/{pkg}/layout.py",
    "src/{pkg}/metrics.py",
    "src/{pkg}/models.py",
    "src/{pkg}/thresholds.py",
    "src/{pkg}/transforms.py",
    "src/{pkg}/py.typed",
    "src/{pkg}/cli/__init__.py",
    "src/{pkg}/cli/__main__.py",
    "src/{pkg}/prep/cache.py",
    "src/{pkg}/prep/sample_data.py",
    "src/{pkg}/predict/submission.py",
    "src/{pkg}/utils/errors.py",
    "src/{pkg}/utils/hardware.py",
    "benchmarks/bench_data.py",
    "benchmarks/bench_train.py",
    "tests/conftest.py",
    "tests/helpers.py",
    "tests/test_cache.py",
    "tests/test_cli.py",
    "tests/test_data.py",
    "tests/test_metrics.py",
    "tests/test_models.py",
    "tests/test_sample_data.py",
    "tests/data/train.csv",
    "tests/data/sample_submission.csv",
}
SAMPLE_IMAGES = {
    p.relative_to(TEMPLATE_DIR).as_posix() for p in (TEMPLATE_DIR / "tests" / "data").rglob("*.jpg")
}
OPTIONS = json.loads((ROOT / "cookiecutter.json").read_text())


def template_files(package: str) -> set[str]:
    """The template folder's files (as git would commit them), named as in a bake."""
    prefix = TEMPLATE_DIR.name + "/"
    return {
        name[len(prefix) :].replace("{{cookiecutter.package}}", package)
        for name in repository_files(ROOT)
        if name.startswith(prefix)
    }


def expected_files(package: str, license_: str) -> set[str]:
    """What a bake must hold: every template file, the core ones certainly, LICENSE by choice."""
    core = {name.format(pkg=package) for name in CORE_FILES} | SAMPLE_IMAGES | {"LICENSE"}
    files = template_files(package)
    assert core <= files, f"missing from the template: {sorted(core - files)}"
    return files - {"LICENSE"} if license_ == "none" else files


def test_defaults(bake):
    project = bake()
    assert project.name == DEFAULT_PROJECT
    assert bake_files(project) == expected_files(DEFAULT_PACKAGE, "MIT")
    assert len(SAMPLE_IMAGES) == 172


def test_sample_images_are_copied_byte_for_byte(bake):
    project = bake()
    for name in sorted(SAMPLE_IMAGES):
        assert (project / name).read_bytes() == (TEMPLATE_DIR / name).read_bytes()


@pytest.mark.parametrize("license_", OPTIONS["license"])
def test_every_license(bake, license_):
    project = bake(license=license_)
    assert bake_files(project) == expected_files(DEFAULT_PACKAGE, license_)
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    if license_ == "none":
        assert "license" not in meta
        return
    assert meta["license"] == license_
    text = (project / "LICENSE").read_text()
    first = {"MIT": "MIT License", "BSD-3-Clause": "BSD 3-Clause License"}.get(license_)
    assert text.lstrip().startswith(first or "Apache License")
    assert "Kaggler" in text and re.search(r"Copyright (\(c\) )?20\d\d", text)
    assert text.endswith("\n") and not text.endswith("\n\n")


@pytest.mark.parametrize("python_min", OPTIONS["python_min"])
def test_every_python_min(bake, python_min):
    project = bake(python_min=python_min)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={python_min}"
    assert pyproject["tool"]["black"]["target-version"] == [f"py{python_min.replace('.', '')}"]
    declared = [
        int(c.rsplit(".", 1)[1])
        for c in pyproject["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    # The project CI tests the oldest and the newest of these (see test_workflows.py).
    assert declared == list(range(int(python_min[2:]), 14))


def test_package_name_is_substituted_everywhere(bake):
    project = bake(package="leaf_doctor", project="leaf-doctor")
    assert project.name == "leaf-doctor"
    assert bake_files(project) == expected_files("leaf_doctor", "MIT")
    for path, text in text_files(project).items():
        assert DEFAULT_PACKAGE not in text, path
        assert DEFAULT_PROJECT not in text, path
    assert not [p for p in project.rglob("*") if DEFAULT_PACKAGE in p.name]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "leaf-doctor"
    assert pyproject["project"]["scripts"] == {"leaf_doctor": "leaf_doctor.cli:main"}
    assert "from leaf_doctor.cli import main" in (project / "tests/test_cli.py").read_text()


PEP_508_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


@pytest.mark.parametrize(
    ("project", "distribution"),
    [
        ("leaf-", "leaf"),
        ("_leaf_", "leaf"),
        ("Leaf.Doctor_2", "leaf-doctor-2"),
        ("9", "9"),
        ("numpy", "numpy-challenge"),
        ("PyYAML", "pyyaml-challenge"),
        ("scikit_learn", "scikit-learn-challenge"),
    ],
)
def test_any_repository_name_gives_an_installable_distribution_name(bake, project, distribution):
    """GitHub allows 'leaf-' or '_leaf', pip refuses them; a project named like one of its own
    dependencies (numpy) cannot be installed next to it: normalise, and rename those."""
    baked = bake(project=project)
    assert baked.name == project
    meta = tomllib.loads((baked / "pyproject.toml").read_text())["project"]
    assert PEP_508_NAME.match(meta["name"]) and meta["name"] == distribution
    assert meta["urls"]["Repository"].endswith(f"/{project}")


def test_every_dependency_distribution_is_reserved():
    """What a baked project's lock installs, on any platform (CUDA wheel parts aside): a project
    of that name could not be installed next to its own dependencies. Read from the lock, so
    this changes only when the lock is refreshed, never with an upstream release."""
    reserved = set(OPTIONS["_reserved_distributions"])
    locked = {name for name in baked_distributions() if not name.startswith(("nvidia-", "cuda-"))}
    assert len(locked) > 20
    missing = sorted(locked - reserved)
    assert missing == [], (
        f"{BAKED_LOCK.name} installs distributions cookiecutter.json does not reserve: add"
        f" {missing} to _reserved_distributions in cookiecutter.json"
    )


@pytest.mark.parametrize(
    "context",
    [{}, {"package": "leaf_doctor", "license": "none", "python_min": "3.12"}],
    ids=["defaults", "leaf_doctor"],
)
def test_nothing_left_unrendered(bake, context):
    project = bake(**context)
    for path, text in text_files(project).items():
        without_github_expressions = re.sub(r"\$\{\{.*?\}\}", "", text)
        for tag in ("{{", "{%", "{#"):
            assert tag not in without_github_expressions, f"{tag} in {path}"


HOSTILE = {
    "author": 'Zoë O\'Brien "the Kaggler" \\ $(rm -rf ~) `id` <b> 🍃 𝔘𝔫𝔦 \U0010fffd',
    "description": (
        "Leaves 🍎: \"scab\" & 'rust' \\n \\ud83d -- ''' \"\"\" # not a comment; ${HOME} %s {0}"
        " {{ cookiecutter.package }} {% if true %}x{% endif %} {# c #} ${{ github.token }}"
        " family 👨\u200d👩\u200d👧 עברית"
    ),
}


def _check_baked_files_parse(project: Path) -> dict:
    """Every .py, .yml/.yaml and pyproject.toml of ``project`` parses; return its [project]."""
    for path in project.rglob("*.py"):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for path in [*project.rglob("*.yaml"), *project.rglob("*.yml")]:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict) and data, path
        source = (TEMPLATE_DIR / path.relative_to(project)).read_text(encoding="utf-8")
        if "{{" not in source and "{%" not in source:  # copied as is: the same data
            assert data == yaml.safe_load(source), path
    return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_baked_files_parse(bake):
    _check_baked_files_parse(bake())


@pytest.mark.parametrize("license_", ["MIT", "Apache-2.0"])
def test_hostile_text_is_kept_verbatim_and_breaks_nothing(bake, license_):
    """Emoji, non-BMP text, quotes, backslashes and Jinja-looking text, given as data (as the
    render script gives a repository description), come out verbatim in valid files."""
    as_data = {key: setup_script.jinja_literal(value) for key, value in HOSTILE.items()}
    project = bake(license=license_, **as_data)
    meta = _check_baked_files_parse(project)
    assert meta["authors"][0]["name"] == HOSTILE["author"]
    assert meta["description"] == HOSTILE["description"]
    assert HOSTILE["author"] in (project / "LICENSE").read_text(encoding="utf-8")
    assert HOSTILE["description"] in (project / "README.md").read_text(encoding="utf-8")


def test_emoji_from_the_command_line_gives_valid_toml(tmp_path):
    """Typed at the prompt or given on the command line, with no Jinja involved."""
    result = run_cookiecutter(tmp_path, "description=Leaf 🍃 doctor", "author=Zoë 🍎")
    assert result.returncode == 0, result.stderr
    meta = _check_baked_files_parse(tmp_path / DEFAULT_PROJECT)
    assert (meta["description"], meta["authors"][0]["name"]) == ("Leaf 🍃 doctor", "Zoë 🍎")


def test_template_repo_layout():
    """The two halves stay visible: the template, and the tooling that tests and ships it."""
    for name in ("cookiecutter.json", "hooks/pre_gen_project.py", "hooks/post_gen_project.py"):
        assert (ROOT / name).is_file(), name
    assert TEMPLATE_DIR.is_dir()
    assert (ROOT / ".ci" / "run").is_file()
    prompts = OPTIONS["__prompts__"]
    visible = [key for key in OPTIONS if not key.startswith("_")]
    assert sorted(prompts) == sorted(visible)


def test_baked_gitignore_keeps_every_shipped_file(bake, tmp_path):
    """A .gitignore that hides tests/data (say, an unanchored 'data/') loses the sample images."""
    project = bake()
    shipped = bake_files(project)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=project, check=True, capture_output=True, text=True
    ).stdout.split()
    assert set(tracked) == shipped


@pytest.mark.parametrize("license_", ["MIT", "none"])
def test_baked_text_passes_the_hygiene_hooks(bake, license_):
    """What pre-commit's trailing-whitespace and end-of-file-fixer hooks would otherwise rewrite."""
    project = bake(license=license_)
    for path, text in text_files(project).items():
        if not text:
            continue
        assert text.endswith("\n") and not text.endswith("\n\n"), path
        trailing = [n for n, line in enumerate(text.splitlines(), 1) if line != line.rstrip()]
        assert trailing == [], (path, trailing)
