"""Validate the cookiecutter answers before anything is written.

Every problem is reported as one line ``ERROR: <what> <why> <what is allowed>`` on stderr and the
hook exits 1; cookiecutter then removes the half-made project directory, so nothing is left behind.
Only the standard library is used: the hook runs in whatever Python runs cookiecutter.

This file is also the one home of the package-name rules: ``scripts/render_from_template.py``
imports it (unrendered, it is plain Python) to derive a package name from a repository name with
``package_from_project``, so every name the script derives passes ``check_package``.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import unicodedata

# Cookiecutter renders the answers into this raw string as JSON: whatever quotes or backslashes
# an answer holds, it stays data, and the unrendered file is still valid, lint-clean Python.
ANSWERS_JSON = r"""{{ cookiecutter | jsonify }}"""

PACKAGE_MAX = 64
PACKAGE_SUFFIX = "_challenge"
PACKAGE_FALLBACK = "challenge"
PACKAGE_ALLOWED = (
    f"use lowercase letters, digits and '_', starting with a letter, {PACKAGE_MAX} characters"
    " at most"
)

# Import names of the project's dependencies (run time, tests and dev tools, with what they pull
# in). A package of the same name would shadow them. Compared in lowercase: PIL and pil are one
# folder on case-insensitive file systems.
DEPENDENCY_MODULES = {
    # run time, direct
    "torch",
    "torchvision",
    "pytorch_lightning",
    "lightning",
    "lightning_fabric",
    "jsonargparse",
    "iterstrat",
    "sklearn",
    "numpy",
    "pil",
    "rich",
    "yaml",
    "timm",
    "imagehash",
    # the `tune` extra, and what it pulls in
    "optuna",
    "alembic",
    "sqlalchemy",
    "mako",
    "colorlog",
    # run time, pulled in
    "hf",
    "hf_xet",
    "httpcore2",
    "httpx2",
    "huggingface_hub",
    "pywt",
    "safetensors",
    "truststore",
    "cloudpickle",
    "cuda",
    "docstring_parser",
    "filelock",
    "fsspec",
    "functorch",
    "jinja2",
    "joblib",
    "lightning_utilities",
    "markdown_it",
    "markupsafe",
    "mdurl",
    "mpmath",
    "narwhals",
    "networkx",
    "nvidia",
    "packaging",
    "pygments",
    "scipy",
    "sympy",
    "threadpoolctl",
    "torchaudio",
    "torchgen",
    "torchmetrics",
    "tqdm",
    "triton",
    "typeshed_client",
    "typing_extensions",
    # notebooks, plots, the logger and PostgreSQL extras, and what they pull in
    "absl",
    "annotated_doc",
    "annotated_types",
    "anyio",
    "asttokens",
    "attr",
    "attrs",
    "cachetools",
    "certifi",
    "cffi",
    "charset_normalizer",
    "comm",
    "contourpy",
    "cryptography",
    "cycler",
    "databricks",
    "dateutil",
    "debugpy",
    "dotenv",
    "executing",
    "fastapi",
    "fastjsonschema",
    "fonttools",
    "git",
    "gitdb",
    "google",
    "grpc",
    "h11",
    "idna",
    "importlib_metadata",
    "ipykernel",
    "ipykernel_launcher",
    "ipython",
    "ipython_pygments_lexers",
    "jedi",
    "jsonschema",
    "jsonschema_specifications",
    "jupyter",
    "jupyter_client",
    "jupyter_core",
    "kiwisolver",
    "markdown",
    "matplotlib",
    "matplotlib_inline",
    "mlflow",
    "mpl_toolkits",
    "nbclient",
    "nbformat",
    "nest_asyncio2",
    "opentelemetry",
    "parso",
    "pexpect",
    "prompt_toolkit",
    "psutil",
    "psycopg",
    "psycopg_binary",
    "ptyprocess",
    "pure_eval",
    "pyasn1",
    "pyasn1_modules",
    "pycparser",
    "pydantic",
    "pydantic_core",
    "pylab",
    "pyparsing",
    "referencing",
    "requests",
    "rpds",
    "sentry_sdk",
    "setproctitle",
    "smmap",
    "sqlparse",
    "stack_data",
    "starlette",
    "tensorboard",
    "tensorboard_data_server",
    "tornado",
    "traitlets",
    "typing_inspection",
    "tzdata",
    "urllib3",
    "uvicorn",
    "wandb",
    "wcwidth",
    "werkzeug",
    "zipp",
    "zmq",
    # tests and dev tools, with what they pull in
    "pytest",
    "_pytest",
    "py",
    "pluggy",
    "iniconfig",
    "black",
    "blackd",
    "blib2to3",
    "click",
    "mypy_extensions",
    "pathspec",
    "platformdirs",
    "pytokens",
    "flake8",
    "pycodestyle",
    "pyflakes",
    "mccabe",
    "pre_commit",
    "cfgv",
    "distlib",
    "identify",
    "nodeenv",
    "virtualenv",
    "python_discovery",
    "setuptools",
    "pkg_resources",
    "pip",
    "wheel",
    "cookiecutter",
    # the mlflow extra's HTTP stack and the typing tools, as the lock has them
    "aiohappyeyeballs",
    "aiohttp",
    "aiosignal",
    "frozenlist",
    "lazy_importer",
    "multidict",
    "multipart",
    "propcache",
    "python_multipart",
    "yarl",
    "mypy",
    "mypyc",
    "librt",
    "ast_serialize",
}
# Standard-library modules of Pythons newer or older than the one running the hook.
STDLIB_EXTRA = {"tomllib", "annotationlib", "compression", "distutils", "imp", "asyncore"}
# The package name is also the command the project installs; these would replace the commands of
# the project's environment (the interpreter, pip, the venv's activate script, the tools).
COMMANDS = {
    "python",
    "python3",
    "pythonw",
    "pip",
    "pip3",
    "activate",
    "f2py",
    "isympy",
    "pygmentize",
    "torchrun",
    "debugpy",
    "dotenv",
    "fastapi",
    "fonttools",
    "idna",
    "ipython",
    "ipython3",
    "jsonschema",
    "jupyter",
    "markdown_py",
    "mlflow",
    "normalizer",
    "pyftmerge",
    "pyftsubset",
    "sqlformat",
    "tensorboard",
    "ttx",
    "uvicorn",
    "wandb",
    "wb",
    "torchfrtrace",
    "proton",
    # mypy's
    "dmypy",
    "stubgen",
    "stubtest",
}
# Folders of the generated project, or names its tooling gives a meaning to.
PROJECT_FOLDERS = {
    "tests",
    "test",
    "src",
    "conftest",
    "benchmarks",
    "configs",
    "notebooks",
    "docs",
}

PACKAGE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# GitHub keeps only ASCII letters, digits, '-', '_' and '.' in repository names (100 at most).
PROJECT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
PROJECT_MAX = 100
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
GITHUB_USER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
TEXT_MAX = 350
# Unicode categories no one-line text may hold: controls (tab and line breaks included), line
# and paragraph separators, and lone surrogates (they cannot be written as UTF-8).
FORBIDDEN_CATEGORIES = {"Cc", "Zl", "Zp", "Cs"}


def package_problem(name: str) -> str | None:
    """Return why ``name`` cannot be the import name of the generated package, or None."""
    lowered = name.lower()
    if not PACKAGE_RE.match(name):
        return "is not a lowercase Python identifier"
    if len(name) > PACKAGE_MAX:
        return f"is {len(name)} characters long"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "is a Python keyword"
    if name in sys.stdlib_module_names or name in STDLIB_EXTRA:
        return "shadows the standard-library module of that name"
    if lowered in DEPENDENCY_MODULES:
        return "shadows a module the project depends on"
    if lowered in COMMANDS:
        return "would replace the command of that name in the project's environment"
    if lowered in PROJECT_FOLDERS:
        return "is the name of a folder of the project"
    return None


def check_package(name: str) -> str | None:
    """Return the error line's text when ``name`` cannot be the package's import name, or None."""
    problem = package_problem(name)
    if problem is None:
        return None
    suggestion = package_from_project(name)
    return f"package {name!r} {problem}; {PACKAGE_ALLOWED} (e.g. {suggestion})"


def package_from_project(project: str) -> str:
    """The import name for a repository name (``Leaf-Doctor`` -> ``leaf_doctor``; always valid).

    ``torch`` becomes ``torch_challenge``, ``2021-fgvc8`` becomes ``kaggle_2021_fgvc8``, and a
    name with no letter or digit becomes ``challenge``.
    """
    name = re.sub(r"[^a-z0-9]+", "_", project.lower()).strip("_")
    if not name:
        return PACKAGE_FALLBACK
    if name[0].isdigit():
        name = f"kaggle_{name}"
    name = name[:PACKAGE_MAX].rstrip("_")
    if package_problem(name) is not None:
        name = name[: PACKAGE_MAX - len(PACKAGE_SUFFIX)].rstrip("_") + PACKAGE_SUFFIX
    return name


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
    if len(name) > PROJECT_MAX:
        return f"project {name!r} is longer than GitHub's {PROJECT_MAX} characters; {allowed}"
    if not PROJECT_RE.match(name):
        return f"project {name!r} has characters GitHub refuses in repository names; {allowed}"
    if not re.search(r"[A-Za-z0-9]", name):
        return f"project {name!r} has no letter or digit; {allowed}"
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


def forbidden_char(char: str) -> bool:
    """True for a character one-line text may not hold (controls, line breaks, surrogates)."""
    return unicodedata.category(char) in FORBIDDEN_CATEGORIES


def check_text(field: str, value: str) -> str | None:
    """Return why a free-text answer cannot go into README, LICENSE and pyproject.toml, or None.

    Any other Unicode is fine (emoji, quotes, backslashes, text that looks like Jinja): the
    template escapes it where it lands.
    """
    allowed = f"use one line of printable text, {TEXT_MAX} characters at most (as GitHub's)"
    if not value.strip():
        return f"{field} is empty; {allowed}"
    if any(forbidden_char(char) for char in value):
        return f"{field} {value!r} contains a line break or control character; {allowed}"
    if len(value) > TEXT_MAX:
        return f"{field} is {len(value)} characters long; {allowed}"
    return None


def problems(answers: dict) -> list[str]:
    """Every reason the answers cannot be baked, one line each (empty when they are fine)."""
    found = [
        check_project(answers["project"]),
        check_package(answers["package"]),
        check_email(answers["email"]),
        check_competition(answers["competition"]),
        check_github_user(answers["github_user"]),
        check_text("author", answers["author"]),
        check_text("description", answers["description"]),
    ]
    return [problem for problem in found if problem]


def main() -> int:
    """Run every check; print each failure as one ``ERROR:`` line and return the exit code."""
    found = problems(json.loads(ANSWERS_JSON))
    for problem in found:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
