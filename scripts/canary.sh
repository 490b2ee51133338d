#!/usr/bin/env bash
# The latest-dependencies canary: a fresh venv with the newest releases pyproject.toml allows
# (uv.lock is not read), then the fast tier. Upstream drift shows here before a lock refresh
# brings it into CI. Prints which installed versions differ from uv.lock. Extra arguments go to
# pytest. Run weekly by .github/workflows/template-canary.yml; locally: bash scripts/canary.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-canary}
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade "pip>=25.1"
"${pip[@]}" install --upgrade --group dev
"$VENV/bin/python" - <<'PY'
import importlib.metadata
import sys

sys.path.insert(0, "tests")
from lockfile import normalise, template_versions  # noqa: E402

locked = template_versions()
installed = {normalise(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
installed.pop("pip", None)  # the installer, not a dependency
new = sorted(f"{name} {version}" for name, version in installed.items() if name not in locked)
moved = sorted(
    f"{name} {'/'.join(sorted(locked[name]))} -> {version}"
    for name, version in installed.items()
    if name in locked and version not in locked[name]
)
print(f"canary: {len(moved)} versions differ from uv.lock: {', '.join(moved) or 'none'}")
print(f"canary: {len(new)} distributions uv.lock does not have: {', '.join(new) or 'none'}")
PY
exec "$VENV/bin/python" -m pytest -m "not slow" "$@"
