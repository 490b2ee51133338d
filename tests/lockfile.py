"""Read the locks: which distributions (and versions) a baked project and this repository install.

Tests that depend on the environment read these files, not what happens to be installed, so they
change only when a lock is refreshed (``bash scripts/lock.sh``), never because of a new release.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAKED_LOCK = ROOT / "{{cookiecutter.__project_dir}}" / "requirements.lock"
TEMPLATE_LOCK = ROOT / "uv.lock"

# "name==version ; marker \" at the start of a line of a pip requirements lock.
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$", re.M)


def normalise(name: str) -> str:
    """PEP 503 form of a distribution name (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path = BAKED_LOCK) -> list[tuple[str, str, str]]:
    """(normalised name, version, marker or "") of every pin in a pip requirements lock."""
    return [
        (normalise(name), version, (marker or "").strip())
        for name, version, marker in PIN.findall(lock.read_text(encoding="utf-8"))
    ]


def baked_distributions() -> set[str]:
    """Every distribution a baked project's lock can install, on any platform or Python."""
    return {name for name, _, _ in pins()}


def template_versions() -> dict[str, set[str]]:
    """Distribution name -> the versions uv.lock holds for it (several when it forks by Python)."""
    import tomllib

    versions: dict[str, set[str]] = {}
    for package in tomllib.loads(TEMPLATE_LOCK.read_text(encoding="utf-8"))["package"]:
        if "version" in package:
            versions.setdefault(normalise(package["name"]), set()).add(package["version"])
    return versions
