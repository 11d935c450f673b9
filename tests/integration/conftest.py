from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DATA, Tomato, kill_leftovers, running


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomato]:
    """One daemon with its embedded Prefect server, shared by the job tests."""
    with running(tmp_path_factory.mktemp("lab"), DATA / "devices_lab.yml") as tomato:
        yield tomato


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Tomato]:
    """A daemon world of its own (not started); everything of it is killed afterwards."""
    tomato = Tomato(tmp_path)
    yield tomato
    tomato.run("tomato", "stop", "--cancel-jobs", timeout=240)
    kill_leftovers(tmp_path)
