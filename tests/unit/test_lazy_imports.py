"""Plots are drawn with matplotlib, imported only where a plot is made: the CLIs, the daemon
and the job runner start without it (an import costs them about 0.3 s each)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "tomato_cli.cli.ketchup",
    "tomato_cli.cli.tomato",
    "tomato_cli.cli.passata",
    "tomato_cli.daemon.daemon",
    "flows.runner",
    "tomato_cli.plots",  # imports matplotlib inside render() only
]


@pytest.mark.parametrize("module", MODULES)
def test_module_does_not_import_matplotlib(module: str) -> None:
    code = f"import sys, {module}; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", f"{module} imports matplotlib"
