#!/usr/bin/env bash
# Refresh both locks after editing a pyproject.toml, keeping every version that still fits:
#   uv.lock                                       this repository's environment (bootstrap.sh)
#   {{cookiecutter.__project_dir}}/requirements.lock  what a baked project's `make install` and
#                                                 CI install (its `make lock` writes it)
# The baked lock is constrained to uv.lock's versions, so the slow tier installs nothing twice.
# `bash scripts/lock.sh --upgrade` moves both to the newest releases pyproject.toml allows.
set -euo pipefail
cd "$(dirname "$0")/.."
upgrade=()
case "${1:-}" in
    "") ;;
    --upgrade) upgrade=(--upgrade) ;;
    *) echo "usage: bash scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac
uv=$(bash scripts/uv.sh)
"$uv" lock --quiet "${upgrade[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$uv" export --frozen --all-groups --no-emit-project --no-hashes --no-header --no-annotate \
    --quiet -o "$work/constraints.txt"
cookiecutter=$(grep -m1 '^cookiecutter==' "$work/constraints.txt" | cut -d' ' -f1)
"$uv" tool run --quiet --from "$cookiecutter" cookiecutter --no-input -o "$work/out" .
baked=("$work"/out/*)
# The bake holds the current lock, so `make lock` keeps every version that still fits.
template_lock="{{cookiecutter.__project_dir}}/requirements.lock"
lock_args="--constraint $work/constraints.txt ${upgrade[*]}"
make --no-print-directory -C "${baked[0]}" lock UV="$uv" LOCK_ARGS="$lock_args" >/dev/null
# The lock's "via" notes name neither the temporary constraints file nor the default project
# (the lock is shipped unrendered to projects of any name).
grep -vE '^ +#.* -c [^ ]*/constraints\.txt$' "${baked[0]}/requirements.lock" |
    sed -E 's/^( +#( via)? +)[^ ]+ \(pyproject\.toml\)$/\1pyproject.toml/' >"$template_lock"
echo "lock: wrote uv.lock and $template_lock"
