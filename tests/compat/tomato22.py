"""The original tomato 2.2 from PyPI, in a venv of its own (bench/setup_tomato22.sh)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "bench" / ".venv-tomato22"
BIN = VENV / "bin"
PYTHON = BIN / "python"


def _usable() -> str | None:
    """Why tomato 2.2 cannot be used here, or None."""
    if not PYTHON.is_file():
        return f"tomato 2.2 venv {VENV} is missing (bench/setup_tomato22.sh makes it)"
    probe = subprocess.run(
        [str(PYTHON), "-c", "import importlib.metadata as m; print(m.version('tomato'))"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "2.2":
        return f"{VENV} has no tomato 2.2: {probe.stdout.strip()} {probe.stderr.strip()[-200:]}"
    return None


WHY_NOT = _usable()
needs_tomato22 = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))


def run22(code: str, data: Any = None, cwd: Path | None = None) -> Any:
    """Run ``code`` with tomato 2.2's python; ``data`` is its stdin as JSON, and it prints
    its answer as JSON."""
    proc = subprocess.run(
        [str(PYTHON), "-c", code],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert proc.returncode == 0, f"tomato 2.2's python failed: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
