"""tomato_cli.units: durations, quantities and CF unit strings."""

import time

import pytest

from tomato_cli.units import cf_units, get_ureg, magnitude_in, to_seconds


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
        ("1 (s)**2", "not a valid quantity"),
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
def test_magnitude_in(value, units, expected):
    assert magnitude_in(value, units) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value, units",
    [("1 m", "s"), ("1 s", None), ("wrong type", "s"), (None, "s"), ([1], "s")],
)
def test_magnitude_in_rejects(value, units):
    with pytest.raises(ValueError) as err:
        magnitude_in(value, units)
    assert "\n" not in str(err.value)


PATHOLOGICAL = [
    "1 s**9**9**9",
    "s**9**9**9",
    "1 km**(9**(9**9))",
    "1 s**(9**9)",
    "1 (s**9)**99",
    "1 s^9^9^9",
    "1 s**99999999",
    "1 " + "(" * 40 + "s" + ")**9" * 20,
    "1 s**9e9",
    "1e999999 s",
    "9" * 99 + " s",
    "1 s" + " * s" * 40,
    "1 " + "s" * 10_000,
    "1 s\n**9**9**9",
]


@pytest.mark.parametrize("text", PATHOLOGICAL)
def test_every_parse_has_a_bounded_cost(text):
    """Strings that make pint evaluate huge powers are refused before pint sees them."""
    get_ureg()  # built once, outside the timing
    for parse in (to_seconds, lambda v: magnitude_in(v, "s"), lambda v: magnitude_in(v, None)):
        t0 = time.perf_counter()
        try:
            parse(text)
        except ValueError as exc:
            assert "\n" not in str(exc)
        assert time.perf_counter() - t0 < 0.5, text


@pytest.mark.parametrize(
    "text, units, expected",
    [
        ("1 m**2/s", "cm**2/s", 1e4),
        ("2 kg*m/s**2", "N", 2.0),
        ("3 mA", "A", 0.003),
        ("4 %", "percent", 4.0),
        ("5 J/(g*K)", "J/(kg*K)", 5000.0),
        ("6 s^-1", "Hz", 6.0),
    ],
)
def test_ordinary_unit_expressions_still_parse(text, units, expected):
    assert magnitude_in(text, units) == pytest.approx(expected)


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
