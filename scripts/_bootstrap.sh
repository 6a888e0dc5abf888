# Sourced by the scripts/ entry points: makes sure .venv exists and holds the
# project's dependencies (reinstalls when setup.cfg changes), then sets PY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON_BIN" -m venv "$VENV"
fi
STAMP="$VENV/.installed-$(sha256sum "$ROOT/setup.cfg" | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]" >&2
    rm -f "$VENV"/.installed-* && touch "$STAMP"
fi
PY="$VENV/bin/python"
cd "$ROOT"
