"""requirements.lock matches pyproject.toml: what `make install` and CI install is what the
project asks for, at exact versions, every file's hash recorded. After editing the dependencies
in pyproject.toml, `make lock` refreshes the lock (and keeps every version that still fits)."""

import re
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# A pin: "name==version ; marker \" then its "--hash=sha256:..." lines.
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)"
    r"(?:\s*;\s*(?P<marker>[^\\\n]+?))?\s*\\\n"
    r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64}\s*\\?\n?)+)",
    re.M,
)
LOCKED_EXTRAS = ("dev",)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(text: str, environment: dict[str, str]) -> dict[str, Version]:
    """Name -> the version the lock installs in ``environment`` (markers evaluated)."""
    versions = {}
    for pin in PIN.finditer(text):
        marker = pin["marker"]
        if marker is None or Requirement(f"x ; {marker}").marker.evaluate(environment):
            versions[normalise(pin["name"])] = Version(pin["version"])
    return versions


def mismatches(pyproject: dict, lock_text: str, environment: dict[str, str]) -> list[str]:
    """Requirements of pyproject.toml (dependencies + the locked extras) the lock does not meet."""
    project = pyproject["project"]
    wanted = list(project["dependencies"])
    for extra in LOCKED_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    versions = locked_versions(lock_text, environment)
    problems = []
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        version = versions.get(normalise(requirement.name))
        if version is None:
            problems.append(f"{requirement.name} is not in requirements.lock")
        elif not SpecifierSet(str(requirement.specifier)).contains(version, prereleases=True):
            problems.append(f"requirements.lock pins {requirement.name} {version}, not {line}")
    return problems


def test_the_lock_meets_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    problems = mismatches(pyproject, LOCK.read_text(encoding="utf-8"), default_environment())
    assert problems == [], f"{'; '.join(problems)}: run `make lock` and commit requirements.lock"


def test_every_pin_has_a_hash():
    text = LOCK.read_text(encoding="utf-8")
    pinned = re.findall(r"^[A-Za-z0-9][^\s=]*==", text, re.M)
    assert len(pinned) > 20 and len(PIN.findall(text)) == len(pinned)


def test_a_changed_pyproject_is_caught():
    """The checks above can fail: a raised bound, a new dependency; markers are evaluated."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    text = LOCK.read_text(encoding="utf-8")
    environment = default_environment()
    numpy = locked_versions(text, environment)["numpy"]
    pyproject["project"]["dependencies"] += [f"numpy>{numpy}", "not-a-locked-package>=1"]
    assert mismatches(pyproject, text, environment) == [
        f"requirements.lock pins numpy {numpy}, not numpy>{numpy}",
        "not-a-locked-package is not in requirements.lock",
    ]
    linux = dict(environment, sys_platform="linux", platform_system="Linux")
    windows = dict(environment, sys_platform="win32", platform_system="Windows")
    assert "colorama" in locked_versions(text, windows)
    assert "colorama" not in locked_versions(text, linux)
