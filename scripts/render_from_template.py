"""Turn a repository created with GitHub's "Use this template" into the rendered project.

GitHub copies the template repository as it is, Jinja tags and all. Run in that copy, this
script bakes the template (the copy itself) with the repository's name, owner and description,
replaces the working tree with the baked project (dotfiles included) and commits the result on
top of the current commit. It is idempotent: once ``cookiecutter.json`` is gone, it does nothing.

The workflow token that runs it may delete files under ``.github/workflows/`` but may not add or
change any, so the template ships the project's workflow files ready-made at its top level; the
script checks that they are byte-identical to the baked ones before it touches anything.

Usage: python scripts/render_from_template.py --name leaf-doctor [--owner octo-org]
       [--description TEXT] [--package leaf_doctor] [--repo DIR] [--no-commit]
Needs cookiecutter (``pip install cookiecutter``); otherwise the standard library only.
"""

from __future__ import annotations

import argparse
import keyword
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WORKFLOWS = Path(".github") / "workflows"
COMMIT_MESSAGE = "Render the Kaggle Lightning template for {name}"


class RenderError(RuntimeError):
    """The repository cannot be rendered; the message says why and what to do."""


def package_name(repo_name: str) -> str:
    """A valid lowercase import name from a repository name (``Leaf-Doctor`` -> ``leaf_doctor``)."""
    name = re.sub(r"[^a-z0-9]+", "_", repo_name.lower()).strip("_")
    if not name:
        return "challenge"
    if name[0].isdigit():
        name = f"kaggle_{name}"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in sys.stdlib_module_names:
        name = f"{name}_challenge"
    return name


def answers(name: str, owner: str | None, description: str | None, package: str | None) -> dict:
    """The cookiecutter answers for this repository (defaults for everything not given)."""
    context = {"project": name, "package": package or package_name(name)}
    if owner:
        context["github_user"] = owner
        context["author"] = owner
        context["email"] = f"{owner}@users.noreply.github.com"
    if description and description.strip():
        context["description"] = description.strip()
    return context


def bake(template: Path, context: dict, output_dir: Path) -> Path:
    """Bake ``template`` with ``context`` into ``output_dir``; return the project folder."""
    from cookiecutter.exceptions import CookiecutterException
    from cookiecutter.main import cookiecutter

    try:
        return Path(
            cookiecutter(
                str(template), no_input=True, extra_context=context, output_dir=str(output_dir)
            )
        )
    except CookiecutterException as exc:
        raise RenderError(
            f"cookiecutter refused the answers {context} ({exc}); run the 'Template setup'"
            " workflow again after renaming the repository, or bake locally with cookiecutter"
        ) from None


def check_workflows(repo: Path, baked: Path) -> None:
    """The baked workflow files must already be in the repository, byte for byte."""
    for file in sorted((baked / WORKFLOWS).glob("*")):
        shipped = repo / WORKFLOWS / file.name
        if not shipped.is_file() or shipped.read_bytes() != file.read_bytes():
            raise RenderError(
                f"{WORKFLOWS / file.name} of the baked project differs from the one the template"
                " ships at its top level; a workflow token cannot add or change workflow files,"
                " so the template must ship it byte-identical (nothing was changed)"
            )


def replace_tree(repo: Path, baked: Path) -> None:
    """Make the working tree of ``repo`` (``.git`` aside) exactly the baked project."""
    for entry in repo.iterdir():
        if entry.name == ".git":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    shutil.copytree(baked, repo, dirs_exist_ok=True, symlinks=True)


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; return its stdout."""
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise RenderError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def render(repo: Path, context: dict, commit: bool = True) -> bool:
    """Render ``repo`` in place; return False when it was rendered already."""
    if not (repo / "cookiecutter.json").is_file():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        shutil.copytree(repo, template, ignore=shutil.ignore_patterns(".git"), symlinks=True)
        baked = bake(template, context, Path(tmp) / "out")
        check_workflows(repo, baked)
        replace_tree(repo, baked)
    if commit:
        git(repo, "add", "--all")
        git(repo, "commit", "--quiet", "-m", COMMIT_MESSAGE.format(name=context["project"]))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="repository name (the project name)")
    parser.add_argument("--owner", help="repository owner (GitHub user or organisation)")
    parser.add_argument("--description", help="repository description")
    parser.add_argument("--package", help="import name (default: derived from --name)")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the git working tree")
    parser.add_argument("--no-commit", action="store_true", help="render but do not commit")
    args = parser.parse_args(argv)
    context = answers(args.name, args.owner, args.description, args.package)
    try:
        rendered = render(args.repo.resolve(), context, commit=not args.no_commit)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if rendered:
        print(f"rendered {context['project']} (package {context['package']})")
    else:
        print("cookiecutter.json is gone: the repository is rendered already, nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
