"""One daemon per tool for the whole compat session: ours and tomato 2.2's.

Ours runs on the settings file that tomato 2.2's ``tomato init`` wrote, started (and
driven) from a driver developer's checkout with its own ``drivers/`` and ``flows/``
packages, which must never be imported by our processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.tomato22 import WHY_NOT
from tests.compat.world import World, write_devices
from tests.reference import REFERENCE

TRAP = "raise ImportError('this is the user checkout, not tomato-prefect')\n"


def _counter(name: str, address: str, channels: list[str]) -> dict:
    return {"name": name, "driver": "example_counter", "address": address, "channels": channels}


def our_devices() -> dict:
    """Pipelines for every runnable reference payload: roles counter, worker (dgbowl-schemas'
    0.x payloads), counter-1 + counter-2, counter + psutil."""
    psutil_pips = [
        {
            "name": f"pip-psutil-{i}",
            "devices": [
                {"role": "counter", "device": "dev-counter-c", "channel": str(i)},
                {"role": "psutil", "device": "dev-psutil", "channel": str(10 + i)},
            ],
        }
        for i in range(1, 5)
    ]
    multi_pips = [
        {
            "name": f"pip-multidev-{i}",
            "devices": [
                {"role": "counter-1", "device": "dev-multi-1", "channel": str(i)},
                {"role": "counter-2", "device": "dev-multi-2", "channel": str(i)},
            ],
        }
        for i in range(1, 4)
    ]
    four = ["1", "2", "3", "4"]
    return {
        "devices": [
            _counter("dev-counter", "counter-addr", [str(i) for i in range(1, 12)]),
            _counter("dev-worker", "worker-addr", [str(i) for i in range(1, 6)]),
            _counter("dev-multi-1", "multi-addr-1", ["1", "2", "3"]),
            _counter("dev-multi-2", "multi-addr-2", ["1", "2", "3"]),
            _counter("dev-counter-c", "counter-addr-c", four),
            {
                "name": "dev-psutil",
                "driver": "psutil",
                "address": "psutil-addr",
                "channels": [str(10 + i) for i in range(1, 5)],
            },
        ],
        "pipelines": [
            {
                "name": "pip-counter-*",
                "devices": [{"role": "counter", "device": "dev-counter", "channel": "each"}],
            },
            {
                "name": "pip-worker-*",
                "devices": [{"role": "worker", "device": "dev-worker", "channel": "each"}],
            },
            *multi_pips,
            *psutil_pips,
        ],
    }


@pytest.fixture(scope="session")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A driver developer's folder with packages named like ours."""
    root = tmp_path_factory.mktemp("driver-checkout")
    for pkg in ("drivers", "flows", "tomato_cli"):
        (root / pkg).mkdir()
        (root / pkg / "__init__.py").write_text(TRAP)
    return root


@pytest.fixture(scope="session")
def worlds(tmp_path_factory: pytest.TempPathFactory, checkout: Path) -> Iterator[dict[str, World]]:
    """Both daemons, started together; torn down (every process killed) at the end."""
    if WHY_NOT is not None:
        pytest.skip(WHY_NOT)
    ours = World("ours", tmp_path_factory.mktemp("ours"))
    theirs = World("theirs", tmp_path_factory.mktemp("theirs"))
    try:
        for world in (ours, theirs):
            settings = world.init22()
            if world is ours:  # two repositories for RO-Crates; 2.2 has no rocrate installed
                text = settings.read_text().replace(
                    "# default.endpoint = 'https://example.endpoint/'",
                    "default.endpoint = 'https://example.endpoint/'\n"
                    "concat-datalab.endpoint = 'https://example.org/datalab'",
                )
                settings.write_text(text)
        write_devices(ours, our_devices())
        (theirs.app / "devices.yml").write_text(
            (REFERENCE / "devices" / "devices_counter.json").read_text()
        )
        ours.started = ours.start(cwd=checkout)
        theirs.started = theirs.start()
        assert ours.started.code == 0, ours.started.out + ours.started.err
        assert theirs.started.code == 0, theirs.started.out + theirs.started.err
        ours.wait_usable()
        theirs.wait_usable()
        yield {"ours": ours, "theirs": theirs}
    finally:
        ours.stop()
        theirs.stop()
