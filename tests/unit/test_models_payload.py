"""tomato_cli.models.payload: the 2.2 model, upgrades from older versions, rejections."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.reference import REFERENCE
from tests.unit.messages import assert_one_line
from tomato_cli.models import Payload, PayloadError, load_payload, parse_payload, upgrade_payload

REF = REFERENCE / "payloads"
PAYLOAD_FILES = sorted(REF.glob("*.yml"))

GOOD = {
    "version": "2.2",
    "sample": {"identifier": "s1"},
    "method": [
        {
            "component_role": "counter",
            "technique_name": "count",
            "max_duration": 1.0,
            "sampling_interval": 0.1,
            "task_name": "first",
        },
        {
            "component_role": "psutil",
            "technique_name": "all_info",
            "max_duration": "2 min",
            "sampling_interval": "500 ms",
            "start_with_task_name": "first",
        },
    ],
}


def write(tmp_path: Path, data, name: str = "payload.yml") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", PAYLOAD_FILES, ids=lambda p: p.name)
def test_reference_payloads_upgrade(path):
    raw = yaml.safe_load(path.read_text())
    payload = load_payload(path)
    assert payload.version == "2.2"
    assert payload.sample.identifier == path.stem
    assert len(payload.method) == len(raw["method"])
    for task in payload.method:
        assert task.max_duration > 0 and task.sampling_interval > 0
    again = Payload.model_validate_json(payload.model_dump_json())
    assert again == payload


def test_reference_0x_details():
    p = load_payload(REF / "counter_multistep_multidev.yml")
    assert [(t.component_role, t.technique_name) for t in p.method] == [
        ("counter-1", "count"),
        ("counter-1", "count"),
        ("counter-2", "count"),
    ]
    assert [t.max_duration for t in p.method] == [1.0, 1.0, 2.0]
    assert [t.sampling_interval for t in p.method] == [0.2, 0.2, 0.1]
    assert p.settings.verbosity == "DEBUG" and p.user is None
    assert p.techniques_by_role() == {"counter-1": {"count"}, "counter-2": {"count"}}
    assert load_payload(REF / "counter_snapshot.yml").settings.snapshot.frequency == 5.0
    assert load_payload(REF / "counter_output_path.yml").settings.output.path == "newfolder"
    assert load_payload(REF / "counter_output_prefix.yml").settings.output.prefix == "data"


def test_reference_1x_2x_details():
    p = load_payload(REF / "psutil_counter.yml")
    assert p.method[2].task_params == {"min": 50.0, "max": 100.0}
    assert p.techniques_by_role() == {"psutil": {"all_info"}, "counter": {"random"}}
    assert load_payload(REF / "counter_invalid_3.yml").method[0].task_params == {"param": "1 ms"}
    assert load_payload(REF / "counter_invalid_1.yml").settings.unlock_when_done is True
    start = load_payload(REF / "psutil_counter_with_task_start.yml")
    assert start.method[1].task_name == "trigger"
    assert start.method[2].start_with_task_name == "trigger"
    stop = load_payload(REF / "psutil_counter_with_task_stop.yml")
    assert stop.method[2].stop_with_task_name == "trigger"
    rocrate = load_payload(REF / "rocrate_1_0.1.yml")
    assert rocrate.user.identifier == "user.identifier"
    assert rocrate.settings.output.repositories == ["default"]


def test_upgrade_0x_extra_keys_become_params():
    data = {
        "version": 0.1,
        "sample": {"name": "x", "colour": "red"},
        "method": [{"device": "d", "technique": "t", "time": "1 h", "delay": 1, "current": 5}],
        "tomato": {"unlock_when_done": True},
    }
    up = upgrade_payload(data)
    assert up["method"][0] == {
        "component_role": "d",
        "technique_name": "t",
        "max_duration": "1 h",
        "sampling_interval": 1,
        "task_params": {"current": 5},
    }
    assert up["settings"] == {"unlock_when_done": True}
    assert data["version"] == 0.1 and "tomato" in data  # input not modified
    p = parse_payload(data)
    assert p.method[0].max_duration == 3600.0
    assert p.sample.identifier == "x" and p.sample.model_extra == {"colour": "red"}


def test_good_payload_and_durations():
    p = parse_payload(GOOD)
    assert p.method[1].max_duration == 120.0
    assert p.method[1].sampling_interval == 0.5
    assert p.settings.verbosity == "WARNING" and p.settings.output.repositories == ["default"]
    assert Payload.model_validate(p.model_dump()) == p


def test_polling_below_sampling_is_fine():
    data = copy.deepcopy(GOOD)
    data["method"][0]["polling_interval"] = "10 ms"
    assert parse_payload(data).method[0].polling_interval == 0.01


def test_json_payload_file(tmp_path):
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(GOOD))
    assert load_payload(path) == parse_payload(GOOD)


def _edit(path, value=..., drop=False):
    def make():
        data = copy.deepcopy(GOOD)
        node = data
        for key in path[:-1]:
            node = node[key]
        if drop:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return data

    return make()


REJECTIONS = [
    ("malformed-yaml", "method: [\n  - a: b\n c: {", "malformed YAML"),
    ("not-mapping", "- 1\n- 2\n", "must hold a mapping"),
    ("empty", "", "is empty"),
    ("non-utf8", b"version: '2.2'\nsample: \xff\n", "UTF-8"),
    ("unknown-version", _edit(("version",), "3.0"), "unknown payload version '3.0'"),
    ("missing-sample", _edit(("sample",), drop=True), "sample: Field required"),
    ("missing-method", _edit(("method",), drop=True), "method: Field required"),
    ("empty-method", _edit(("method",), []), "method: List should have at least 1 item"),
    (
        "missing-duration",
        _edit(("method", 0, "max_duration"), drop=True),
        "method[0].max_duration: Field required",
    ),
    ("bad-duration", _edit(("method", 0, "max_duration"), "ten"), "method[0].max_duration"),
    ("not-time", _edit(("method", 1, "max_duration"), "10 m"), "method[1].max_duration"),
    ("negative", _edit(("method", 0, "max_duration"), -1), "must be positive"),
    ("too-long", _edit(("method", 0, "max_duration"), "2 year"), "at most one year"),
    ("too-fast", _edit(("method", 0, "sampling_interval"), "10 us"), "at least 0.0001 s"),
    ("zero-polling", _edit(("method", 0, "polling_interval"), 0), "method[0].polling_interval"),
    ("extra-task-field", _edit(("method", 0, "colour"), 1), "method[0].colour: unknown field"),
    ("extra-top-field", _edit(("colour",), 1), "colour: unknown field"),
    ("bad-verbosity", _edit(("settings",), {"verbosity": "LOUD"}), "settings.verbosity"),
    ("bad-snapshot", _edit(("settings",), {"snapshot": {"frequency": "x"}}), "snapshot.frequency"),
    ("dup-task-name", _edit(("method", 1, "task_name"), "first"), "'first' is used twice"),
    (
        "unknown-start",
        _edit(("method", 1, "start_with_task_name"), "nope"),
        "method[1].start_with_task_name: no task has task_name 'nope'",
    ),
    (
        "unknown-stop",
        _edit(("method", 0, "stop_with_task_name"), "nope"),
        "method[0].stop_with_task_name: no task has task_name 'nope'",
    ),
    ("self-start", _edit(("method", 0, "start_with_task_name"), "first"), "cannot wait for itself"),
    ("params-not-dict", _edit(("method", 0, "task_params"), [1]), "method[0].task_params"),
    (
        "old-version-bad-field",
        {"version": "0.2", "sample": {"name": "s"}, "method": [{"device": "d", "technique": "t"}]},
        "method[0].max_duration: Field required (and 1 more) (payload upgraded from version 0.2",
    ),
    (
        "conflicting-rename",
        {"version": "2.1", "sample": {"name": "a", "identifier": "b"}, "method": []},
        "sample: both 'name' and 'identifier' given",
    ),
]


@pytest.mark.parametrize(
    "data, fragment", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejections(tmp_path, data, fragment):
    path = write(tmp_path, data)
    with pytest.raises(PayloadError) as err:
        load_payload(path)
    assert_one_line(str(err.value), f"payload {path}: ", fragment)


def test_missing_file(tmp_path):
    with pytest.raises(PayloadError, match=r"payload .*nope.yml: cannot be read"):
        load_payload(tmp_path / "nope.yml")


def test_too_large(tmp_path):
    path = tmp_path / "payload.yml"
    path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(PayloadError, match="more than the limit"):
        load_payload(path)


def test_parse_payload_source_and_non_mapping():
    with pytest.raises(PayloadError, match="^job 7: must hold a mapping"):
        parse_payload([1], "job 7")  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="^payload: sample: Field required"):
        parse_payload({"method": GOOD["method"]})
