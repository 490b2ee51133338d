#!/usr/bin/env bash
# Create .venv with PyTorch (CPU is enough) and the template's dev tools; later calls reuse it.
# Override the interpreter with PYTHON=..., the PyTorch pair with TORCH_SPEC="torch==X torchvision==Y".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

key=$(cat pyproject.toml scripts/bootstrap.sh | "$PYTHON" -c "import hashlib, sys; print(hashlib.sha1(sys.stdin.buffer.read() + sys.argv[1].encode()).hexdigest()[:12])" "$TORCH_SPEC")
stamp="$VENV/.bootstrapped-$key"
if [ -f "$stamp" ]; then
    exit 0
fi
echo "bootstrap: creating $VENV (PyTorch: $TORCH_SPEC)"
"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade "pip>=25.1"
# PyTorch first, so the resolver keeps this exact pair for everything installed after it.
# shellcheck disable=SC2086
"${pip[@]}" install $TORCH_SPEC
"${pip[@]}" install --group dev

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
rm -f "$VENV"/.bootstrapped-*
touch "$stamp"
echo "bootstrap: $VENV ready"
