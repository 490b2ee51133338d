#!/usr/bin/env bash
# The whole test suite of the template: fast tier (bakes, hooks, tooling) and slow tier (installs
# baked projects in a venv and runs their black, flake8, pre-commit config check and pytest).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`. One pytest-xdist worker
# per core: the baked suites run side by side (tests/conftest.py puts the default project's slow
# tier on one worker and the fast tiers on the other).
# The 15 slowest tests are listed at the end, so a CI log shows where the time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -n auto --dist loadgroup --durations 15 "$@"
