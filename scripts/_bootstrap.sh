# Sourced by the scripts/ entry points: makes sure .venv exists and holds the
# dependencies declared in setup.cfg (reinstalled when it changes), then sets PY.
# The project runs from the repository root (`python -m ...`), so it is not installed
# itself: the repository's top level is fixed and has no pyproject.toml or setup.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "First run: creating $VENV for this project's dependencies (once)." >&2
    "$PYTHON_BIN" -m venv "$VENV"
fi
STAMP="$VENV/.installed-$(sha256sum "$ROOT/setup.cfg" | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
    REQUIREMENTS="$(mktemp)"
    "$VENV/bin/python" "$ROOT/scripts/requirements.py" "$REQUIREMENTS"
    # Say what is happening: the first install takes a minute or two without output.
    echo "Installing the dependencies declared in setup.cfg (new or changed) into $VENV," \
         "a minute or two the first time: $(sed -E 's/[][ <>=!~;,].*//' "$REQUIREMENTS" | paste -sd' ')" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    rm -f "$REQUIREMENTS" "$VENV"/.installed-* && touch "$STAMP"
fi
# Keep local artefacts out of git without a top-level .gitignore (the top level is fixed).
EXCLUDE="$ROOT/.git/info/exclude"
if [ -d "$ROOT/.git" ]; then
    mkdir -p "$ROOT/.git/info"
    for pattern in '/.venv/' '/var/' '__pycache__/' '.pytest_cache/' '.hypothesis/' \
                   '/tests/browser/node_modules/' '/tests/browser/artifacts/'; do
        grep -qxF "$pattern" "$EXCLUDE" 2>/dev/null || printf '%s\n' "$pattern" >>"$EXCLUDE"
    done
fi
PY="$VENV/bin/python"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
