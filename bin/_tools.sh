# Sourced by bin/_ensure.sh and bin/lock: the tools virtualenv .venv-tools,
# installed from requirements-tools.lock with every hash checked (rebuilt when
# the lock changes). pip installs only uv, from the lock's own hashed uv entry;
# uv then installs the rest (about 20 s for its 130 packages instead of 70 s).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
TOOLS_STAMP=".venv-tools/.lock.sha256"
TOOLS_WANT="$(sha256sum requirements-tools.lock | cut -d' ' -f1)"
if [[ ! -x .venv-tools/bin/uv ]] || [[ "$(cat "$TOOLS_STAMP" 2>/dev/null)" != "$TOOLS_WANT" ]]; then
  echo "installing the tools virtualenv (.venv-tools) from requirements-tools.lock" >&2
  rm -rf .venv-tools
  "$PY" -m venv .venv-tools
  UV_LOCK_ENTRY="$(mktemp)"
  # The uv entry: its 'uv==' line and the hash lines continuing it.
  awk '/^uv==/{p=1} p{print} p && !/\\$/{exit}' requirements-tools.lock > "$UV_LOCK_ENTRY"
  .venv-tools/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
    --no-deps -r "$UV_LOCK_ENTRY" >&2
  rm -f "$UV_LOCK_ENTRY"
  .venv-tools/bin/uv pip install -q --require-hashes --compile-bytecode \
    --python .venv-tools/bin/python -r requirements-tools.lock >&2
  echo "$TOOLS_WANT" > "$TOOLS_STAMP"
fi
