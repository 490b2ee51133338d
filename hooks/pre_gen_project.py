"""Validate the cookiecutter answers before anything is written.

Every problem is reported as one line ``ERROR: <what> <why> <what is allowed>`` on stderr and the
hook exits 1; cookiecutter then removes the half-made project directory, so nothing is left behind.
Only the standard library is used: the hook runs in whatever Python runs cookiecutter.
"""

import json
import keyword
import re
import sys

# Cookiecutter renders the answers into this raw string as JSON: whatever quotes or backslashes
# an answer holds, it stays data, and the unrendered file is still valid, lint-clean Python.
ANSWERS = json.loads(r"""{{ cookiecutter | jsonify }}""")
PACKAGE = ANSWERS["package"]
PROJECT = ANSWERS["project"]
EMAIL = ANSWERS["email"]
COMPETITION = ANSWERS["competition"]
GITHUB_USER = ANSWERS["github_user"]
AUTHOR = ANSWERS["author"]
DESCRIPTION = ANSWERS["description"]

# Names a generated package must not take: they would shadow what it imports or how it is tested.
RESERVED_PACKAGES = {
    "torch",
    "torchvision",
    "torchaudio",
    "torchmetrics",
    "pytorch_lightning",
    "lightning",
    "lightning_utilities",
    "jsonargparse",
    "numpy",
    "PIL",
    "sklearn",
    "iterstrat",
    "rich",
    "yaml",
    "pytest",
    "tests",
    "test",
    "src",
    "setuptools",
    "pip",
    "cookiecutter",
}

PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# GitHub keeps only ASCII letters, digits, '-', '_' and '.' in repository names (100 at most).
PROJECT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
GITHUB_USER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")


def check_package(name: str) -> str | None:
    """Return why ``name`` cannot be the import name of the generated package, or None."""
    allowed = "use lowercase letters, digits and '_', starting with a letter (e.g. leaf_doctor)"
    if not PACKAGE_RE.match(name):
        return f"package {name!r} is not a lowercase Python identifier; {allowed}"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"package {name!r} is a Python keyword; {allowed}"
    if name in sys.stdlib_module_names:
        return f"package {name!r} shadows the standard-library module of that name; {allowed}"
    if name in RESERVED_PACKAGES:
        return f"package {name!r} shadows a dependency or the tests folder; {allowed}"
    return None


def check_project(name: str) -> str | None:
    """Return why ``name`` cannot be the repository / folder name, or None."""
    allowed = (
        "use letters, digits, '-', '_' and '.', not starting with '-' or '.' (e.g. leaf-doctor)"
    )
    if not name.strip():
        return f"project is empty; {allowed}"
    if "/" in name or "\\" in name:
        return f"project {name!r} contains a path separator; {allowed}"
    if name[0] in "-.":
        return f"project {name!r} starts with {name[0]!r}; {allowed}"
    if ".." in name:
        return f"project {name!r} contains '..'; {allowed}"
    if len(name) > 100:
        return f"project {name!r} is longer than GitHub's 100 characters; {allowed}"
    if not PROJECT_RE.match(name):
        return f"project {name!r} has characters GitHub refuses in repository names; {allowed}"
    return None


def check_email(address: str) -> str | None:
    """Return why ``address`` is not a plausible e-mail address, or None."""
    if not EMAIL_RE.match(address):
        return f"email {address!r} is not an e-mail address; use the form name@example.com"
    return None


def check_competition(slug: str) -> str | None:
    """Return why ``slug`` is not a Kaggle competition slug, or None."""
    if not SLUG_RE.match(slug):
        return (
            f"competition {slug!r} is not a Kaggle slug; use lowercase letters, digits and '-'"
            " as in kaggle.com/competitions/<slug>"
        )
    return None


def check_github_user(user: str) -> str | None:
    """Return why ``user`` is not a GitHub user or organisation name, or None."""
    if not GITHUB_USER_RE.match(user):
        return (
            f"github_user {user!r} is not a GitHub name; use letters, digits and single '-'"
            " between them, 39 characters at most"
        )
    return None


def check_text(field: str, value: str) -> str | None:
    """Return why a free-text answer cannot go into README, LICENSE and pyproject.toml, or None."""
    allowed = "use one line of printable text, 350 characters at most (as GitHub descriptions)"
    if not value.strip():
        return f"{field} is empty; {allowed}"
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        return f"{field} {value!r} contains a line break or control character; {allowed}"
    if len(value) > 350:
        return f"{field} is {len(value)} characters long; {allowed}"
    return None


def main() -> int:
    """Run every check; print each failure as one ``ERROR:`` line and return the exit code."""
    problems = [
        check_project(PROJECT),
        check_package(PACKAGE),
        check_email(EMAIL),
        check_competition(COMPETITION),
        check_github_user(GITHUB_USER),
        check_text("author", AUTHOR),
        check_text("description", DESCRIPTION),
    ]
    problems = [p for p in problems if p]
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
