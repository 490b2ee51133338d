#!/usr/bin/env bash
# Print the path of a uv at the version pyproject.toml requires ([tool.uv] required-version),
# installing it with pip into .venv-uv/ when neither $UV nor the uv on PATH is that version.
# Used by scripts/bootstrap.sh (to check uv.lock) and scripts/lock.sh (to write the locks).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
version=$(sed -n 's/^required-version = "==\([0-9.]*\)"$/\1/p' pyproject.toml)
if [ -z "$version" ]; then
    echo "error: pyproject.toml has no [tool.uv] required-version = \"==X.Y.Z\"" >&2
    exit 1
fi
for candidate in "${UV:-}" "$(command -v uv || true)" .venv-uv/bin/uv; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] &&
        [ "$("$candidate" --version 2>/dev/null | cut -d' ' -f2)" = "$version" ]; then
        case "$candidate" in /*) echo "$candidate" ;; *) echo "$PWD/$candidate" ;; esac
        exit 0
    fi
done
echo "uv: installing uv $version into .venv-uv/" >&2
rm -rf .venv-uv
"$PYTHON" -m venv .venv-uv
.venv-uv/bin/python -m pip --disable-pip-version-check -q install "uv==$version" >&2
echo "$PWD/.venv-uv/bin/uv"
