"""Conditions: what is read, how units are checked, and when a watch says one is met."""

from __future__ import annotations

import pytest

from tomato_cli.models.conditions import (
    MAX_TEXT,
    UNDECLARED,
    Bound,
    ConditionWatch,
    bind,
    parse_condition,
    parse_conditions,
)


def units(table: dict[str, str | None]):
    return lambda role, variable: (table[variable],) if variable in table else None


def test_what_a_condition_says() -> None:
    cond = parse_condition("  thermo.T >= 300 degC for 1.5 min ")
    assert (cond.role, cond.variable, cond.op, cond.magnitude) == ("thermo", "T", ">=", 300.0)
    assert cond.units == "degree_Celsius" and cond.hold_s == 90.0
    assert cond.text == "thermo.T >= 300 degC for 1.5 min"
    assert parse_condition("val<-2.5e1").magnitude == -25.0
    assert [c.op for c in parse_conditions(["a > 1", "a >= 1", "a < 1", "a <= 1"])] == [
        ">",
        ">=",
        "<",
        "<=",
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("val == 3", "cannot read condition"),
        ("val > ", "empty string is not a quantity"),
        ("3 < val", "cannot read condition '3 < val': write [role.]variable"),
        ("val > V", "does not start with a number"),
        ("val > 1 s**9**9**9", "is not a valid quantity"),
        ("val > 1 furlongs_per_fortnight", "cannot parse"),
        ("__import__('os').system('ls') > 1", "cannot read condition"),
        ("a.b.c > 1", "cannot read condition"),
        ("val > 1 for 2 V", "is not a time"),
        ("val > 1 for 0 s", "'for' must be more than 0 s"),
        ("val > " + "1" * MAX_TEXT, f"at most {MAX_TEXT} characters"),
        (["val > 1"], "a condition is a string, not list"),
        (None, "a condition is a string, not NoneType"),
    ],
)
def test_what_is_refused(text: object, reason: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_condition(text)
    assert reason in str(err.value)


def test_lists_are_bounded() -> None:
    with pytest.raises(ValueError, match="at most 8 conditions"):
        parse_conditions(["val > 1"] * 9)
    with pytest.raises(ValueError, match="not a dict"):
        parse_conditions({"val": 1})


def test_thresholds_are_converted_to_the_variables_units() -> None:
    table = {"Ewe": "mV", "T": "K", "val": None, "cpu": "percent"}
    assert bind(parse_condition("Ewe > 4.2 V"), "pot", units(table)).threshold == 4200.0
    assert bind(parse_condition("T >= 300 degC"), "pot", units(table)).threshold == 573.15
    assert bind(parse_condition("val >= 80 %"), "pot", units(table)).threshold == 0.8
    assert bind(parse_condition("cpu > 80 %"), "pot", units(table)).threshold == 80.0
    bound = bind(parse_condition("other.val < 3"), "pot", units(table))
    assert (bound.role, bound.units) == ("other", None)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("volts > 3", "'pot' has no variable 'volts'"),
        ("Ewe > 3", "give units: pot.Ewe is in mV"),
        ("Ewe > 3 s", "second cannot be compared with pot.Ewe, which is in mV"),
        ("val > 3 V", "volt cannot be compared with pot.val, which has no units"),
    ],
)
def test_what_does_not_fit_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as err:
        bind(parse_condition(text), "pot", units({"Ewe": "mV", "val": None}))
    assert reason in str(err.value)


def test_a_job_condition_names_its_role() -> None:
    with pytest.raises(ValueError, match="name the variable's role"):
        bind(parse_condition("val > 3"), None, units({"val": None}))


def test_a_variable_its_driver_does_not_declare_is_checked_against_the_datas_units() -> None:
    bound = bind(parse_condition("I < 10 mA"), "old", lambda r, v: (UNDECLARED,))
    assert bound.units == "milliampere"
    assert bound.in_units("A").threshold == pytest.approx(0.01)
    with pytest.raises(ValueError, match="cannot be compared"):
        bound.in_units("V")
    bare = bind(parse_condition("I < 10"), "old", lambda r, v: (UNDECLARED,))
    assert bare.in_units("mA").threshold == 10.0 and bare.in_units("mA").units == "mA"


def test_a_watch_fires_on_the_first_sample_that_meets_a_condition() -> None:
    watch = ConditionWatch([Bound("val >= 3", "c", "val", ">=", 3.0, None)])
    values = [1, 2, float("nan"), 3, 4]
    met = [watch.check(float(i), {"val": v}) for i, v in enumerate(values)]
    assert met[:3] == [None, None, None]
    assert (met[3].value, met[3].uts, met[3].describe()) == (
        3.0,
        3.0,
        "condition 'val >= 3' met: c.val = 3",
    )


def test_a_held_condition_fires_once_it_held_on_every_sample_for_its_time() -> None:
    watch = ConditionWatch([Bound("v > 5 for 2 s", "c", "v", ">", 5.0, None, 2.0)])
    # above 5 at t = 0..1.5, below at 2, above again from 2.5: fires at 4.5, not before
    samples = [(0.5 * i, 9 if i != 4 else 1) for i in range(12)]
    fired = [(t, watch.check(t, {"v": v})) for t, v in samples]
    first = next(t for t, met in fired if met is not None)
    assert first == 4.5
    uts = [t for t, _ in samples]
    block = ConditionWatch([Bound("v > 5 for 2 s", "c", "v", ">", 5.0, None, 2.0)])
    met = block.check_block(uts, {"v": [v for _, v in samples], "other": [0] * 12})
    assert met is not None and met.uts == 4.5
    missing = ConditionWatch([Bound("v > 5", "c", "v", ">", 5.0, None)])
    assert missing.check_block([0.0, 1.0], {"w": [9, 9]}) is None


def _payload(version: str, **step: object) -> dict:
    task = {"component_role": "c", "technique_name": "count", "max_duration": 5}
    return {
        "version": version,
        "sample": {"identifier": "s"},
        "method": [{**task, "sampling_interval": 1, **step}],
    }


def test_a_payload_without_conditions_is_written_as_tomato_22_writes_it() -> None:
    from tomato_cli.models import parse_payload

    dumped = parse_payload(_payload("2.2")).model_dump(mode="json")
    assert "end_when" not in dumped and "stop_when" not in dumped["method"][0]
    ours = parse_payload(_payload("tomato-prefect-1", stop_when="val > 1"), "p")
    again = parse_payload(ours.model_dump(mode="json"))
    assert again.version == "tomato-prefect-1" and again.method[0].stop_when == ["val > 1"]
    assert again.has_conditions and not parse_payload(_payload("2.1")).has_conditions


def test_conditions_need_our_payload_version() -> None:
    from tomato_cli.models import PayloadError, parse_payload

    with pytest.raises(PayloadError, match=r"method\[0\].stop_when is new in tomato-prefect"):
        parse_payload(_payload("2.2", stop_when="val > 1"))
    with pytest.raises(PayloadError, match="end_when is new in tomato-prefect"):
        parse_payload({**_payload("2.2"), "end_when": ["c.val > 1"]})
    with pytest.raises(PayloadError, match="the job has no role 'x'"):
        parse_payload(_payload("tomato-prefect-1", stop_when="x.val > 1"))


def test_what_an_until_says() -> None:
    from tomato_cli.models.repeats import parse_until

    until = parse_until("integral(cell.I, discharge) < 80 % of first")
    assert (until.func, until.role, until.variable, until.step) == (
        "integral",
        "cell",
        "I",
        "discharge",
    )
    assert until.of_first and until.magnitude == pytest.approx(0.8)
    assert parse_until("max(T) >= 300 degC").units == "degree_Celsius"
    for bad, reason in [
        ("mean(T) > 3", "cannot read until"),
        ("max(T) > V", "does not start with a number"),
        ("max(T) > 1 s**9**9**9", "not a valid quantity"),
        ("max(T) > " + "1" * MAX_TEXT, "at most"),
    ]:
        with pytest.raises(ValueError) as err:
            parse_until(bad)
        assert reason in str(err.value), bad


def test_an_until_is_bound_to_the_units_of_what_it_computes() -> None:
    from tomato_cli.models.repeats import bind_until, parse_until

    steps = {"charge": (0, "cell"), "discharge": (1, "cell")}
    table = units({"I": "mA", "val": None})
    capacity = bind_until(parse_until("integral(I, discharge) < 1 mA*h"), steps, table)
    assert capacity.steps == (1,) and capacity.threshold == pytest.approx(3600.0)
    assert capacity.units == "(mA) * s"
    every = bind_until(parse_until("max(I) > 2 A"), steps, table)
    assert every.steps == (0, 1) and every.threshold == 2000.0
    relative = bind_until(parse_until("integral(val) < 80 % of first"), steps, table)
    assert relative.fraction == pytest.approx(0.8) and relative.threshold is None
    assert relative.holds(79.0, 100.0) and not relative.holds(81.0, 100.0)
    with pytest.raises(ValueError, match="give units: cell.val is in s"):
        bind_until(parse_until("integral(val) < 3"), steps, table)
    with pytest.raises(ValueError, match="runs on 'cell'"):
        bind_until(parse_until("max(other.I, charge) > 1 A"), steps, table)


def test_a_repeat_quantity_counts_only_its_steps_samples() -> None:
    from tomato_cli.models.repeats import BoundUntil, RepeatQuantity

    def quantity(func: str) -> RepeatQuantity:
        until = BoundUntil("t", func, "c", "v", (1,), ">", 0.0, None, None)
        q = RepeatQuantity(until)
        q.add(0, [0.0, 1.0], [100, 100])  # another step: not counted
        q.add(1, [10.0, 11.0], [1.0, 3.0])
        q.add(1, [12.0], [float("nan")])  # not a value
        q.add(1, [13.0], [2.0])
        return q

    assert quantity("last").value() == 2.0
    assert quantity("min").value() == 1.0 and quantity("max").value() == 3.0
    # trapezoids: (11-10)*(1+3)/2 + (13-11)*(3+2)/2
    assert quantity("integral").value() == pytest.approx(2.0 + 5.0)
    empty = RepeatQuantity(BoundUntil("t", "max", "c", "v", (1,), ">", 0.0, None, None))
    assert empty.value() is None
