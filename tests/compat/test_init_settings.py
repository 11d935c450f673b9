"""The settings file of our `tomato init` next to the one tomato 2.2's `tomato init` writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.compat.tomato22 import BIN as THEIRS_BIN
from tests.compat.tomato22 import needs_tomato22
from tests.integration.harness import BIN as OURS_BIN
from tomato_cli.models import load_settings

pytestmark = [needs_tomato22]


def _init(bin_dir: Path, root: Path) -> str:
    folders = ["-A", root / "app", "-D", root / "data", "-L", root / "log"]
    proc = subprocess.run(
        [str(bin_dir / "tomato"), "init", *map(str, folders)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (root / "app" / "settings.toml").read_text()


def _section(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"[{name}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    return [line for line in lines[start:end] if line.strip()]


def test_repositories_as_22_writes_them(tmp_path: Path) -> None:
    theirs = _init(THEIRS_BIN, tmp_path / "theirs")
    ours = _init(OURS_BIN, tmp_path / "ours")
    assert _section(ours, "repositories") == _section(theirs, "repositories")
    # what 2.2's test suite does to its settings file for RO-Crates works on ours
    commented = "# default.endpoint = 'https://example.endpoint/'"
    assert commented in theirs and commented in ours
    path = tmp_path / "ours" / "app" / "settings.toml"
    path.write_text(ours.replace(commented, commented.removeprefix("# ")))
    assert load_settings(path).repositories == {
        "default": {"endpoint": "https://example.endpoint/"}
    }
