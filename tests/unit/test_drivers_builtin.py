"""The example_counter and psutil drivers, and the registry."""

from __future__ import annotations

import pytest

from drivers.example_counter import ExampleCounterDriver
from drivers.psutil_driver import PsutilDriver
from drivers.registry import DriverNotFound, available_drivers, load_driver


def test_counter_count_and_random() -> None:
    comp = ExampleCounterDriver({}).create_component("addr", "1")
    assert comp.capabilities() == {"count", "random"}
    sample = comp.measure("count", 2.7)
    assert sample == {"val": 2, "max": 10.0, "min": 0.0, "param": 1.0, "choice": "red"}
    comp.prepare_task("random", {"min": 5, "max": 6})
    for _ in range(50):
        assert 5.0 <= comp.measure("random", 0.1)["val"] <= 6.0
    assert set(comp.idle_measure()) == {"max", "min", "param", "choice"}
    assert comp.constants() == {"address": "addr", "channel": "1"}


def test_counter_rejects_empty_address() -> None:
    with pytest.raises(ValueError, match="empty address"):
        ExampleCounterDriver({}).create_component("", "1")


def test_psutil_all_info() -> None:
    comp = PsutilDriver({}).create_component("psutil-addr", "10")
    assert comp.capabilities() == {"all_info"}
    sample = comp.measure("all_info", 0.1)
    assert {"cpu_percent", "mem_used", "mem_available", "disk_percent"} <= set(sample)
    assert {"net_bytes_sent", "net_bytes_recv"} <= set(sample)
    for name, value in sample.items():
        assert isinstance(value, int | float), name
        assert comp.units_of(name) is not None, name
    assert comp.units_of("mem_used") == "B"
    assert comp.units_of("cpu_percent") == "percent"
    assert comp.constants()["cpu_count"] >= 1
    PsutilDriver().spec_of(comp).check_task("all_info", {}, 0.1)


def test_registry() -> None:
    assert {"example_counter", "psutil"} <= set(available_drivers())
    assert load_driver("example_counter") is ExampleCounterDriver
    assert load_driver("psutil") is PsutilDriver
    with pytest.raises(DriverNotFound, match="unknown driver 'nope'; installed drivers: .*psutil"):
        load_driver("nope")
