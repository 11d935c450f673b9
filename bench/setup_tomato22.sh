#!/usr/bin/env bash
# Create bench/.venv-tomato22 with the original tomato 2.2 and its example counter and trig
# drivers from PyPI, next to our own .venv. Safe to run again: it only installs what is missing.
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
VENV="$BENCH/.venv-tomato22"
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('tomato') == '2.2'; m.version('tomato-example-counter'); m.version('tomato-example-trig')" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q "tomato==2.2" tomato-example-counter tomato-example-trig
fi
"$VENV/bin/python" -c "import importlib.metadata as m; print('tomato', m.version('tomato'), '+ tomato-example-counter', m.version('tomato-example-counter'), '+ tomato-example-trig', m.version('tomato-example-trig'), 'in', '$VENV')"
