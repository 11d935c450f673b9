"""Instrument descriptions: the shipped ones load, mistakes give one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drivers.scpi.description import (
    BUILTIN_DIR,
    DescriptionError,
    available,
    find_description,
    load_description,
)

SIM_FILE = BUILTIN_DIR / "sim" / "lab.yaml"


def test_shipped_descriptions_load() -> None:
    assert {"potentiostat", "temperature_controller"} <= set(available())
    pstat = load_description("potentiostat")
    assert pstat.techniques["constant_current"].sample == ["current", "voltage"]
    attrs = pstat.attrs_of()
    assert attrs["source_current"].rw and attrs["source_current"].units == "A"
    assert not attrs["current"].rw
    tc = load_description("temperature_controller")
    assert tc.attrs["setpoint"].units == "degC"


@pytest.mark.parametrize("name", ["potentiostat", "temperature_controller"])
def test_every_command_is_in_the_pyvisa_sim_file(name: str) -> None:
    """The pyvisa-sim definitions answer every query the description sends."""
    desc = load_description(name)
    sim = yaml.safe_load(SIM_FILE.read_text())["devices"][name]
    (channels,) = sim["channels"].values()
    queries = {d["q"] for d in channels.get("dialogues", [])}
    queries |= {p["getter"]["q"] for p in channels["properties"].values()}
    for attr, spec in desc.attrs.items():
        if spec.query:
            assert spec.query.replace("{ch}", "{ch_id}") in queries, attr
        if spec.set:
            assert attr in channels["properties"], attr
    assert [str(i) for i in channels["ids"]] == desc.channels.ids


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "inst.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {
    "name": "x",
    "attrs": {
        "level": {"query": "LEV{ch}?", "set": "LEV{ch} {value}", "minimum": 0, "maximum": 5},
        "reading": {"query": "READ{ch}?", "units": "V"},
    },
    "techniques": {"hold": {"sample": ["reading"], "before": {"level": 1}}},
}


def test_a_path_works_and_search_dirs_come_first(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE)
    assert load_description(str(path)).name == "x"
    (tmp_path / "potentiostat.yaml").write_text(yaml.safe_dump(BASE))
    assert find_description("potentiostat", [tmp_path]) == tmp_path / "potentiostat.yaml"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"attrs": {"a": {"type": "float"}}}, "needs a query, a set command, or both"),
        ({"attrs": {"a": {"set": "A {ch}"}}}, "has no {value}"),
        (
            {"techniques": {"hold": {"sample": ["level", "nope"]}}},
            "samples 'nope', which has no query",
        ),
        (
            {"techniques": {"hold": {"sample": ["reading"], "before": {"reading": 1}}}},
            "sets 'reading', which is not settable",
        ),
        (
            {"techniques": {"hold": {"sample": ["reading"], "before": {"level": 9}}}},
            "above the maximum",
        ),
        ({"colour": "red"}, "colour"),
    ],
)
def test_mistakes_are_one_line(tmp_path: Path, change: dict, reason: str) -> None:
    data = {**BASE, **change}
    if "attrs" in change:
        data["attrs"] = {**BASE["attrs"], **change["attrs"]}
    with pytest.raises(DescriptionError) as info:
        load_description(str(_write(tmp_path, data)))
    assert reason in str(info.value) and "\n" not in str(info.value)


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(DescriptionError, match="unknown instrument description 'nope'.*potentio"):
        load_description("nope")


def test_trace_instruments_load_and_the_sim_answers_their_queries() -> None:
    sims = yaml.safe_load(SIM_FILE.read_text())["devices"]
    for name in ("network_analyser", "oscilloscope"):
        desc = load_description(name)
        sim = sims[name]
        queries = {d["q"] for d in sim.get("dialogues", [])}
        queries |= {p["getter"]["q"] for p in sim.get("properties", {}).values()}
        for channel in sim.get("channels", {}).values():
            queries |= {d["q"] for d in channel.get("dialogues", [])}
            queries |= {p["getter"]["q"] for p in channel["properties"].values()}
        sent = [s.query for s in [*desc.attrs.values(), *desc.traces.values()] if s.query]
        for query in sent:
            assert query.replace("{ch}", "{ch_id}") in queries, (name, query)
    vna = load_description("network_analyser").measured_of()
    assert vna["s21"].units == "dB" and vna["s21"].dims == ("frequency",)
    assert vna["frequency"].units == "Hz" and vna["frequency"].is_coordinate_of("frequency")


TRACED = {
    **BASE,
    "axes": {"x": {"units": "Hz", "linspace": {"start": 0, "stop": "level"}}},
    "traces": {"spectrum": {"query": "SPEC{ch}?", "axis": "x", "units": "V"}},
    "techniques": {"scan": {"sample": ["spectrum", "reading"]}},
}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"traces": {"spectrum": {"query": "S?", "axis": "y"}}}, "unknown axis 'y'; axes: x"),
        ({"axes": {"x": {"units": "Hz"}}}, "needs exactly one of linspace, step or query"),
        (
            {"axes": {"x": {"query": "X?", "step": {"step": 1}}}},
            "needs exactly one of linspace, step or query",
        ),
        (
            {"axes": {"x": {"linspace": {"start": 0, "stop": "nope"}}}},
            "axes.x reads 'nope', which is not an attr with a query",
        ),
        (
            {"traces": {"spectrum": {"query": "S?", "axis": "x", "scale": "gain"}}},
            "traces.spectrum reads 'gain', which is not an attr with a query",
        ),
        (
            {"traces": {"reading": {"query": "S?", "axis": "x"}}},
            "names used twice among attrs, axes and traces: ['reading']",
        ),
        (
            {
                "axes": {"uts": {"query": "X?"}},
                "traces": {"spectrum": {"query": "S?", "axis": "uts"}},
            },
            "trace or axis name 'uts' is not an identifier",
        ),
    ],
)
def test_trace_mistakes_are_one_line(tmp_path: Path, change: dict, reason: str) -> None:
    load_description(str(_write(tmp_path, TRACED)))  # the base is fine
    with pytest.raises(DescriptionError) as info:
        load_description(str(_write(tmp_path, {**TRACED, **change})))
    assert reason in str(info.value) and "\n" not in str(info.value)
