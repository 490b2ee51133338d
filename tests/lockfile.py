"""Read the locks: which distributions (and versions) a baked project and this repository install.

Tests that depend on the environment read these files, not what happens to be installed, so they
change only when a lock is refreshed (``bash scripts/lock.sh``), never because of a new release.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAKED_LOCK = ROOT / "{{cookiecutter.__project_dir}}" / "requirements.lock"
TEMPLATE_LOCK = ROOT / "uv.lock"


def _baked_lock_test():
    """The baked project's tests/test_lock.py, the one definition of a lock line (``PIN``) and of
    name normalisation; it holds no template variables, so it imports unrendered."""
    path = BAKED_LOCK.parent / "tests" / "test_lock.py"
    spec = importlib.util.spec_from_file_location("baked_test_lock", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_BAKED = _baked_lock_test()
normalise = _BAKED.normalise


def pins(lock: Path = BAKED_LOCK) -> list[tuple[str, str, str]]:
    """(normalised name, version, marker or "") of every pin in a pip requirements lock."""
    return [
        (normalise(pin["name"]), pin["version"], (pin["marker"] or "").strip())
        for pin in _BAKED.PIN.finditer(lock.read_text(encoding="utf-8"))
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
