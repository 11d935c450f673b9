"""Attr coercion, ComponentBase, and checking tasks against a component's spec."""

from __future__ import annotations

import json

import pytest

from drivers import Attr, AttrError, TaskError
from drivers.example_counter import CounterComponent, ExampleCounterDriver

SECONDS = Attr(float, units="s", minimum=0.1, maximum=60, rw=True)
COUNT = Attr(int, minimum=0, maximum=10)
COLOUR = Attr(str, options=("red", "green"))
FLAG = Attr(bool)
_COUNTER = ExampleCounterDriver()
COUNTER_SPEC = _COUNTER.spec_of(_COUNTER.create_component("a", "1"))


@pytest.mark.parametrize(
    ("attr", "value", "expected"),
    [
        (SECONDS, 1, 1.0),
        (SECONDS, "2.5", 2.5),
        (SECONDS, "500 ms", 0.5),
        (SECONDS, "1 min", 60.0),
        (COUNT, 3, 3),
        (COUNT, "4", 4),
        (COUNT, 5.0, 5),
        (COLOUR, "green", "green"),
        (FLAG, True, True),
        (FLAG, "false", False),
        (FLAG, 1, True),
    ],
)
def test_coerce_accepts(attr: Attr, value: object, expected: object) -> None:
    result = attr.coerce("x", value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        (SECONDS, "wrong type", "attr 'x': expected float in s, cannot read 'wrong type'"),
        (SECONDS, "1 ms", "attr 'x': '1 ms' is below the minimum 0.1 s"),
        (SECONDS, 0.01, "attr 'x': 0.01 is below the minimum 0.1 s"),
        (SECONDS, "2 min", "attr 'x': '2 min' is above the maximum 60 s"),
        (SECONDS, "3 m", "attr 'x': expected float in s, '3 m' cannot be converted to s"),
        (SECONDS, True, "attr 'x': expected float in s, got bool True"),
        (SECONDS, [1], "attr 'x': expected float in s, got list [1]"),
        (SECONDS, "nan", "attr 'x': 'nan' is not a number"),
        (COUNT, 2.5, "attr 'x': expected int, got 2.5"),
        (COUNT, 11, "attr 'x': 11 is above the maximum 10"),
        (COUNT, "3 s", "attr 'x': expected int, '3 s' has units"),
        (COLOUR, "blue", "attr 'x': 'blue' is not one of 'red', 'green'"),
        (COLOUR, 3, "attr 'x': expected str, got int 3"),
        (FLAG, "maybe", "attr 'x': expected bool, got str 'maybe'"),
    ],
)
def test_coerce_rejects(attr: Attr, value: object, message: str) -> None:
    with pytest.raises(AttrError) as info:
        attr.coerce("x", value)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_describe_is_json() -> None:
    described = json.loads(json.dumps(COLOUR.describe()))
    assert described == {
        "type": "str",
        "units": None,
        "minimum": None,
        "maximum": None,
        "options": ["red", "green"],
        "rw": False,
        "status": False,
    }
    assert SECONDS.describe()["units"] == "s"


def test_set_attr_validates_and_keeps_old_value() -> None:
    comp = CounterComponent("addr", "1", {})
    assert comp.set_attr("param", "2 s") == 2.0
    with pytest.raises(AttrError, match="below the minimum"):
        comp.set_attr("param", "1 ms")
    assert comp.get_attr("param") == 2.0
    with pytest.raises(AttrError, match="unknown attr 'nope'; known: choice, max, min, param"):
        comp.set_attr("nope", 1)
    with pytest.raises(AttrError, match="unknown attr"):
        comp.get_attr("nope")


def test_read_only_attr_rejected() -> None:
    class Comp(CounterComponent):
        attr_defs = {**CounterComponent.attr_defs, "serial": Attr(str)}

    comp = Comp("a", "1", {})
    with pytest.raises(AttrError, match="attr 'serial' is read-only"):
        comp.set_attr("serial", "x")


def test_prepare_task_is_all_or_nothing() -> None:
    comp = CounterComponent("addr", "1", {})
    with pytest.raises(AttrError):
        comp.prepare_task("count", {"max": 20, "param": "wrong type"})
    assert comp.get_attr("max") == 10.0
    with pytest.raises(TaskError, match="unknown technique 'fly'"):
        comp.prepare_task("fly", {})
    comp.prepare_task("random", {"max": 20, "choice": "blue"})
    assert comp.get_attr("max") == 20.0
    assert comp.get_attr("choice") == "blue"
    comp.reset()
    assert comp.get_attr("max") == 10.0


def test_units_of() -> None:
    assert CounterComponent.units_of("param") == "s"
    assert CounterComponent.units_of("val") is None
    assert CounterComponent.units_of("unknown") is None


@pytest.mark.parametrize(
    ("technique", "params", "interval", "message"),
    [
        (
            "unknown",
            {},
            0.1,
            "unknown technique 'unknown' for driver 'example_counter'; available: count, random",
        ),
        (
            "count",
            {"param": "wrong type"},
            0.1,
            "invalid task parameter: attr 'param': expected float in s, cannot read 'wrong type'",
        ),
        (
            "count",
            {"param": "1 ms"},
            0.1,
            "invalid task parameter: attr 'param': '1 ms' is below the minimum 0.1 s",
        ),
        (
            "count",
            {"unknown": "bla"},
            0.1,
            "unknown task parameter 'unknown' for driver 'example_counter'; "
            "known: choice, max, min, param",
        ),
        ("count", {}, 0.0001, "sampling_interval 0.0001 s is below the minimum 0.001 s"),
        ("count", {}, "fast", "invalid sampling_interval: cannot parse 'fast' as a quantity"),
        ("count", [1], 0.1, "task_params must be a mapping"),
    ],
)
def test_validate_task_rejects(
    technique: str, params: object, interval: object, message: str
) -> None:
    with pytest.raises(TaskError) as info:
        COUNTER_SPEC.check_task(technique, params, interval)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_validate_task_accepts() -> None:
    COUNTER_SPEC.check_task("count", {"param": "2 s", "choice": "blue"}, "10 ms")
    COUNTER_SPEC.check_task("random", None, 0.5)


def test_list_attributes_of_tomato_2_drivers_survive_the_round_trip() -> None:
    """A 2.x driver may declare a list attribute (tomato-picovna's sweep_params); the
    daemon checks it from its description."""
    attr = Attr.from_description(Attr(list, rw=True).describe())
    assert attr.type is list
    assert attr.coerce("sweep", [1, 2, 3]) == [1, 2, 3]
    with pytest.raises(AttrError, match="attr 'sweep': expected list, got str 'abc'"):
        attr.coerce("sweep", "abc")
