"""tomato_cli.units: durations, quantities and CF unit strings."""

import math

import pytest

from tomato_cli.units import cf_units, get_ureg, parse_quantity, to_seconds


def test_registry_is_cached():
    assert get_ureg() is get_ureg()


@pytest.mark.parametrize(
    "value, seconds",
    [
        (1, 1.0),
        (0.5, 0.5),
        ("10 s", 10.0),
        ("2 h", 7200.0),
        ("100 ms", 0.1),
        ("1.5 min", 90.0),
        ("10s", 10.0),
        ("3", 3.0),
        ("1e-3 s", 0.001),
    ],
)
def test_to_seconds(value, seconds):
    assert to_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("10 m", "not a time"),
        ("5 kg", "not a time"),
        ("garbage", "cannot parse"),
        ("10 flurbs", "cannot parse"),
        ("", "empty"),
        ("1e999 s", "finite"),
        (float("nan"), "finite"),
        (True, "expected a number"),
        ([1], "expected a number"),
        ("s**9**9**9", "not a valid quantity"),
        ("1 " + "s" * 200, "too long"),
    ],
)
def test_to_seconds_rejects(value, fragment):
    with pytest.raises(ValueError) as err:
        to_seconds(value)
    msg = str(err.value)
    assert fragment in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "value, units, expected",
    [
        ("1 ms", "s", 0.001),
        (5, "s", 5.0),
        ("5", "mA", 5.0),
        ("2 A", "mA", 2000.0),
        ("25 degC", "K", 298.15),
        ("3", None, 3.0),
        (7, None, 7.0),
    ],
)
def test_parse_quantity(value, units, expected):
    assert parse_quantity(value, units) == pytest.approx(expected)


def test_parse_quantity_accepts_pint_quantities():
    assert parse_quantity(get_ureg().Quantity(2, "s"), "ms") == pytest.approx(2000.0)


@pytest.mark.parametrize(
    "value, units",
    [("1 m", "s"), ("1 s", None), ("wrong type", "s"), (None, "s"), (math.inf, "s")],
)
def test_parse_quantity_rejects(value, units):
    with pytest.raises(ValueError) as err:
        parse_quantity(value, units)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "units, cf",
    [
        ("s", "s"),
        ("second", "s"),
        ("degC", "degC"),
        ("degree_Celsius", "degC"),
        ("mA", "mA"),
        ("uA", "uA"),
        ("ohm", "ohm"),
        ("m/s**2", "m s-2"),
        ("percent", "percent"),
        ("degree", "degree"),
        ("B", "B"),
        ("dimensionless", "1"),
        ("", "1"),
        (None, "1"),
        ("not a unit at all", "not a unit at all"),
    ],
)
def test_cf_units(units, cf):
    assert cf_units(units) == cf
