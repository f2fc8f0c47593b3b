# Sourced by bin/run and bin/test: install what a fresh machine lacks.
# - PostgreSQL 15 server binaries from the distro when absent;
# - .venv-tools from requirements-tools.lock (bin/_tools.sh);
# - a virtualenv in .venv from requirements-dev.lock, every hash checked
#   (re-installed when the lock changes). Relock with bin/lock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PG_BIN="${EINVOICE_PG_BIN:-/usr/lib/postgresql/15/bin}"
if [[ ! -x "$PG_BIN/initdb" ]]; then
  echo "PostgreSQL 15 server not found in $PG_BIN: installing it from the distro" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "error: need root to apt-get install postgresql-15 (or set EINVOICE_PG_BIN)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql-15 >&2
  # The distro package starts its own cluster on 5432; we never use it.
  (command -v pg_ctlcluster >/dev/null && pg_ctlcluster 15 main stop) >/dev/null 2>&1 || true
fi
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
  echo "error: running as root but the unprivileged 'postgres' user is missing" >&2
  exit 1
fi

source "$ROOT/bin/_tools.sh"

STAMP=".venv/.requirements.sha256"
WANT="$(sha256sum requirements-dev.lock | cut -d' ' -f1)"
if [[ ! -x .venv/bin/python ]] || [[ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]]; then
  echo "installing the virtualenv (.venv) from requirements-dev.lock (hashes required)" >&2
  "$PY" -m venv .venv
  .venv-tools/bin/uv pip install -q --require-hashes --compile-bytecode \
    --python .venv/bin/python -r requirements-dev.lock >&2
  echo "$WANT" > "$STAMP"
fi
export EINVOICE_PG_BIN="$PG_BIN"
