"""The example_counter and psutil drivers, and the registry."""

from __future__ import annotations

import pytest

from drivers.base import AttrError
from drivers.example_counter import ExampleCounterDriver
from drivers.psutil_driver import PsutilDriver
from drivers.registry import DriverNotFound, available_drivers, load_driver


def test_counter_count_and_random() -> None:
    comp = ExampleCounterDriver({}).create_component("addr", "1")
    assert comp.capabilities() == {"count", "random"}
    sample = comp.measure("count", 2.7)
    assert sample == {"val": 2, "max": 10.0, "min": 0.0, "param": 1.0, "choice": "green"}
    comp.prepare_task("random", {"min": 5, "max": 6})
    for _ in range(50):
        assert 5.0 <= comp.measure("random", 0.1)["val"] <= 6.0
    assert set(comp.idle_measure()) == {"max", "min", "param", "choice"}
    assert comp.constants() == {
        "address": "addr",
        "channel": "1",
        "example_meta": "example string",
    }
    assert not any(attr.status for attr in comp.attrs().values())  # as tomato-example-counter


def test_counter_rejects_empty_address() -> None:
    with pytest.raises(ValueError, match="empty address"):
        ExampleCounterDriver({}).create_component("", "1")


@pytest.mark.parametrize(
    ("technique", "names"),
    [
        ("mem_info", {"mem_total", "mem_avail", "mem_usage"}),
        ("cpu_info", {"cpu_count", "cpu_freq", "cpu_usage"}),
        ("all_info", {"mem_total", "mem_avail", "mem_usage", "cpu_count", "cpu_freq", "cpu_usage"}),
    ],
)
def test_psutil_techniques_as_tomato_psutil(technique: str, names: set[str]) -> None:
    comp = PsutilDriver({}).create_component("psutil-addr", "10")
    assert comp.capabilities() == {"mem_info", "cpu_info", "all_info"}
    sample = comp.measure(technique, 0.1)
    assert set(sample) == names
    for name, value in sample.items():
        assert isinstance(value, int | float), name
    assert isinstance(sample.get("mem_total", 0), int)
    PsutilDriver().spec_of(comp).check_task(technique, {}, 0.1)


def test_psutil_attrs_as_tomato_psutil() -> None:
    comp = PsutilDriver({}).create_component("psutil-addr", "10")
    units = {name: attr.units for name, attr in comp.attrs().items()}
    assert units == {
        "mem_total": "bytes",
        "mem_avail": "bytes",
        "mem_usage": "percent",
        "cpu_count": None,
        "cpu_freq": "MHz",
        "cpu_usage": "percent",
    }
    assert {n for n, a in comp.attrs().items() if a.status} == {"mem_usage", "cpu_usage"}
    assert not any(attr.rw for attr in comp.attrs().values())
    assert comp.get_attr("cpu_count") >= 1
    assert 0 < comp.get_attr("mem_usage") <= 100
    with pytest.raises(AttrError, match="read-only"):
        comp.set_attr("cpu_usage", 5)


def test_registry() -> None:
    assert {"example_counter", "psutil"} <= set(available_drivers())
    assert load_driver("example_counter") is ExampleCounterDriver
    assert load_driver("psutil") is PsutilDriver
    with pytest.raises(DriverNotFound, match="unknown driver 'nope'; installed drivers: .*psutil"):
        load_driver("nope")
