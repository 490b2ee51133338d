#!/usr/bin/env bash
# The whole test suite of the template: fast tier (bakes, hooks, tooling) and slow tier (installs
# baked projects in a venv and runs their black, flake8, pre-commit config check and pytest).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
