"""Turn a repository created with GitHub's "Use this template" into the rendered project.

GitHub copies the template repository as it is, Jinja tags and all. Run in that copy, this
script bakes the template (the files git tracks there) with the repository's name, owner and
description, replaces the tracked files with the baked project (dotfiles included) and commits
the result on top of the current commit. It is idempotent: once ``cookiecutter.json`` is gone, it
does nothing.

Files it did not create are kept: untracked and ignored files (a ``data/`` folder, a ``.venv/``)
stay where they are and are not committed. It refuses, before changing anything, when tracked
files have uncommitted changes or when a baked file would overwrite an untracked one.

Answers from outside are data, never template code: cookiecutter renders every answer through
Jinja, so each one is passed as a Jinja string literal and ``{{ }}`` in a description stays text.
The description is made one line (GitHub's limit, 350 characters, is also the hook's). The
package name is derived by the template's own pre-generation hook (``package_from_project``), so
a repository called ``torch``, ``numpy``, ``tests`` or ``src`` gets ``torch_challenge`` and so on.

The workflow token that runs it may delete files under ``.github/workflows/`` but may not add or
change any, so the template ships the project's workflow files ready-made at its top level; the
script checks that they are byte-identical to the baked ones before it touches anything.

Usage: python scripts/render_from_template.py --name leaf-doctor [--owner octo-org]
       [--description TEXT] [--package leaf_doctor] [--repo DIR] [--no-commit]
Needs cookiecutter (``pip install cookiecutter``); otherwise the standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

WORKFLOWS = Path(".github") / "workflows"
HOOK = Path("hooks") / "pre_gen_project.py"
COMMIT_MESSAGE = "Render the Kaggle Lightning template for {name}"
SHOWN_PATHS = 5


class RenderError(RuntimeError):
    """The repository cannot be rendered; the message says why and what to do."""


def load_hook(path: Path) -> types.ModuleType:
    """The template's pre-generation hook as a module: the one home of the answer rules.

    Executed from its source so that no bytecode cache is written next to it.
    """
    module = types.ModuleType("pre_gen_project")
    module.__file__ = str(path)
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)
    return module


def one_line(text: str, hook: types.ModuleType) -> str:
    """``text`` as one line the hook accepts: controls and line breaks become single spaces."""
    cleaned = "".join(" " if hook.forbidden_char(char) else char for char in text)
    return re.sub(r"\s+", " ", cleaned).strip()[: hook.TEXT_MAX].rstrip()


def answers(
    name: str,
    owner: str | None,
    description: str | None,
    package: str | None,
    hook: types.ModuleType,
) -> dict[str, str]:
    """The cookiecutter answers for this repository (defaults for everything not given)."""
    context = {"project": name, "package": package or hook.package_from_project(name)}
    if owner:
        context["github_user"] = owner
        context["author"] = owner
        context["email"] = f"{owner}@users.noreply.github.com"
    text = one_line(description or "", hook)
    if text:
        context["description"] = text
    return context


def jinja_literal(text: str) -> str:
    """A Jinja expression that renders to ``text`` exactly, whatever ``text`` holds."""
    return '{{ "' + text.replace("\\", "\\\\").replace('"', '\\"') + '" }}'


def check_answers(template: Path, context: dict[str, str], hook: types.ModuleType) -> None:
    """Refuse answers the hook would refuse, before cookiecutter starts."""
    defaults = json.loads((template / "cookiecutter.json").read_text(encoding="utf-8"))
    found = hook.problems({**defaults, **context})
    if found:
        raise RenderError(
            "; ".join(found) + " (nothing was changed; rename the repository or pass --package)"
        )


def bake(template: Path, context: dict[str, str], output_dir: Path) -> Path:
    """Bake ``template`` with ``context`` (kept literal) into ``output_dir``; return the project."""
    from cookiecutter.exceptions import CookiecutterException
    from cookiecutter.main import cookiecutter

    literal = {key: jinja_literal(value) for key, value in context.items()}
    try:
        return Path(
            cookiecutter(
                str(template), no_input=True, extra_context=literal, output_dir=str(output_dir)
            )
        )
    except CookiecutterException as exc:
        raise RenderError(
            f"cookiecutter refused the answers {context} ({exc}); run the 'Template setup'"
            " workflow again after renaming the repository, or bake locally with cookiecutter"
        ) from None


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` (pathspecs taken literally); return its stdout."""
    command = ["git", "--literal-pathspecs", *args]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise RenderError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def listing(output: str) -> list[str]:
    """Paths from git's ``-z`` output."""
    return [name for name in output.split("\0") if name]


def shown(paths: list[str]) -> str:
    """The first few ``paths``, for a message."""
    more = f" and {len(paths) - SHOWN_PATHS} more" if len(paths) > SHOWN_PATHS else ""
    return ", ".join(paths[:SHOWN_PATHS]) + more


def tracked_files(repo: Path) -> list[str]:
    """The files git tracks in ``repo``; refuse unless it is a clean working tree's top level."""
    top = git(repo, "rev-parse", "--show-toplevel").strip()
    if Path(top).resolve() != repo.resolve():
        raise RenderError(f"{repo} is not the top folder of its git working tree ({top} is)")
    changed = listing(git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=no"))
    if changed:
        raise RenderError(
            "tracked files have uncommitted changes; commit or stash them first (nothing was"
            f" changed): {shown([entry[3:] for entry in changed])}"
        )
    return listing(git(repo, "ls-files", "-z"))


def untracked_paths(repo: Path) -> list[str]:
    """Untracked and ignored files and folders of ``repo`` (folders once, with a trailing /)."""
    return listing(git(repo, "ls-files", "-z", "--others", "--directory"))


def copy_files(source: Path, names: list[str], dest: Path) -> None:
    """Copy the files ``names`` (relative paths) from ``source`` to ``dest``."""
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, dest / name, follow_symlinks=False)


def baked_files(baked: Path) -> list[str]:
    """Every file of the baked project, as POSIX paths relative to it."""
    return sorted(p.relative_to(baked).as_posix() for p in baked.rglob("*") if not p.is_dir())


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


def check_collisions(repo: Path, tracked: set[str], new: list[str]) -> None:
    """Refuse when writing the baked files would overwrite or write through an untracked path."""
    blocked = set()
    for name in new:
        parts = Path(name).parts
        for depth in range(1, len(parts) + 1):
            relative = "/".join(parts[:depth])
            path = repo / relative
            last = depth == len(parts)
            in_the_way = os.path.lexists(path) and (last or path.is_symlink() or not path.is_dir())
            if in_the_way and relative not in tracked:
                blocked.add(relative)
    if blocked:
        raise RenderError(
            "untracked files are where the rendered project puts its own; move them away first"
            f" (nothing was changed): {shown(sorted(blocked))}"
        )


def remove_tracked(repo: Path, tracked: list[str]) -> None:
    """Delete the tracked files, then the folders this leaves empty (untracked files stay)."""
    folders: set[Path] = set()
    for name in tracked:
        path = repo / name
        if os.path.lexists(path):
            path.unlink()
        folders.update(parent for parent in Path(name).parents if parent != Path("."))
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            (repo / folder).rmdir()
        except OSError:
            pass  # not empty: it holds untracked or ignored files, which are kept


def commit(repo: Path, new: list[str], name: str) -> None:
    """Commit the deletions and exactly the baked files (nothing the user left untracked)."""
    git(repo, "add", "--update")
    git(repo, "add", "--force", "--", *new)
    git(repo, "commit", "--quiet", "-m", COMMIT_MESSAGE.format(name=name))


def render(
    repo: Path,
    name: str,
    owner: str | None = None,
    description: str | None = None,
    package: str | None = None,
    commit_result: bool = True,
) -> dict[str, str] | None:
    """Render ``repo`` in place; return the answers used, or None when it was rendered already."""
    if not (repo / "cookiecutter.json").is_file():
        return None
    tracked = tracked_files(repo)
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        copy_files(repo, tracked, template)
        hook = load_hook(template / HOOK)
        context = answers(name, owner, description, package, hook)
        check_answers(template, context, hook)
        baked = bake(template, context, Path(tmp) / "out")
        check_workflows(repo, baked)
        new = baked_files(baked)
        check_collisions(repo, set(tracked), new)
        remove_tracked(repo, tracked)
        copy_files(baked, new, repo)
    if commit_result:
        commit(repo, new, context["project"])
    return context


def main(argv: list[str] | None = None) -> int:
    """Command line: render the repository; print what was done, or one ``error:`` line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="repository name (the project name)")
    parser.add_argument("--owner", help="repository owner (GitHub user or organisation)")
    parser.add_argument("--description", help="repository description")
    parser.add_argument("--package", help="import name (default: derived from --name)")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the git working tree")
    parser.add_argument("--no-commit", action="store_true", help="render but do not commit")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    try:
        kept = untracked_paths(repo) if (repo / "cookiecutter.json").is_file() else []
        context = render(
            repo, args.name, args.owner, args.description, args.package, not args.no_commit
        )
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if context is None:
        print("cookiecutter.json is gone: the repository is rendered already, nothing to do")
        return 0
    print(f"rendered {context['project']} (package {context['package']})")
    if kept:
        print(f"kept untracked and ignored files, not committed: {shown(kept)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
