"""The settings file `tomato init` writes: its ``[repositories]`` table is tomato 2.2's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tomato_cli.cli import tomato
from tomato_cli.models import load_settings

# what tomato 2.2's `tomato init` writes there (its settings-2.2.toml), line for line
REPOSITORIES_22 = [
    "[repositories]",
    "# default.endpoint = 'https://example.endpoint/'",
    "# default.api_key = 'abcd23abcd23'",
]


def _init(tmp_path: Path, monkeypatch, *extra: str) -> Path:
    folders = ["-A", str(tmp_path / "app"), "-D", str(tmp_path / "data")]
    argv = ["tomato", "init", *folders, "-L", str(tmp_path / "log"), *extra]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        tomato.main()
    assert exit_.value.code == 0
    return tmp_path / "app" / "settings.toml"


def _section(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"[{name}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    return [line for line in lines[start:end] if line.strip()]


def test_init_writes_22s_commented_repository(tmp_path: Path, monkeypatch) -> None:
    path = _init(tmp_path, monkeypatch)
    text = path.read_text()
    assert _section(text, "repositories") == REPOSITORIES_22
    settings = load_settings(path)
    assert settings.repositories == {} and settings.unused == []

    # uncommented, as tomato 2.2's own test suite does it: the repository "default" exists
    path.write_text(text.replace("# default.endpoint", "default.endpoint"))
    settings = load_settings(path)
    assert settings.repositories == {"default": {"endpoint": "https://example.endpoint/"}}
    assert settings.unused == []


def test_a_repository_taken_over_is_written_without_the_example(
    tmp_path: Path, monkeypatch
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "settings.toml").write_text(
        f"datadir = '{old}/data'\nlogdir = '{old}/log'\n\n[jobs]\nstorage = '{old}/data/Jobs'\n\n"
        f"[devices]\nconfig = '{old}/devices.yml'\n\n"
        "[repositories]\nlab.endpoint = 'https://lab.example/'\n"
    )
    (old / "devices.yml").write_text("devices: []\npipelines: []\n")
    path = _init(tmp_path, monkeypatch, "--from", str(old))
    settings = load_settings(path)
    assert settings.repositories == {"lab": {"endpoint": "https://lab.example/"}}
    assert "example.endpoint" not in path.read_text()
