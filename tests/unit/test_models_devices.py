"""tomato_cli.models.devices: loading, checking and expanding devices files."""

import copy
import json
from pathlib import Path

import pytest

from tests.reference import REFERENCE
from tests.unit.messages import assert_one_line
from tomato_cli.models import (
    ConfigError,
    DevicesConfig,
    default_devices,
    dump_devices,
    expand_pipelines,
    load_devices,
)

REF = REFERENCE / "devices"
DEVICE_FILES = sorted(REF.glob("*.json"))

GOOD = {
    "devices": [
        {
            "name": "dev-a",
            "driver": "example_counter",
            "address": "addr-a",
            "channels": ["1", "2"],
            "pollrate": 1,
        },
        {"name": "dev-b", "driver": "psutil", "address": "addr-b", "channels": [10]},
    ],
    "pipelines": [
        {"name": "pip-1", "devices": [{"role": "counter", "device": "dev-a", "channel": "1"}]},
        {
            "name": "pip-w-*",
            "devices": [
                {"role": "counter", "device": "dev-a", "channel": "each"},
                {"role": "psutil", "device": "dev-b", "channel": 10},
            ],
        },
    ],
}


def write(tmp_path: Path, data, name: str = "devices.json") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def changed(edit) -> dict:
    data = copy.deepcopy(GOOD)
    edit(data)
    return data


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.name)
def test_reference_devices_files_load(path):
    cfg = load_devices(path, known_drivers={"example_counter", "psutil"})
    pipelines = expand_pipelines(cfg)
    assert pipelines
    for pip in pipelines:
        assert pip.components and all(c.capabilities == [] for c in pip.components)


def test_reference_counter_wildcard_expands():
    pips = expand_pipelines(load_devices(REF / "devices_counter.json"))
    assert [p.name for p in pips] == [f"pip-counter-{i}" for i in range(1, 5)]
    comp = pips[2].components[0]
    assert comp.name == "example_counter:(example-addr,3)"
    assert (comp.device, comp.role, comp.key) == ("dev-counter", "counter", "example-addr,3")


def test_wildcard_keeps_fixed_entries(tmp_path):
    cfg = load_devices(write(tmp_path, GOOD))
    pips = {p.name: p for p in expand_pipelines(cfg)}
    assert list(pips) == ["pip-1", "pip-w-1", "pip-w-2"]
    roles = {c.role: c for c in pips["pip-w-2"].components}
    assert roles["counter"].channel == "2"
    assert roles["psutil"].name == "psutil:(addr-b,10)"
    assert cfg.devices[1].channels == ["10"] and cfg.devices[1].pollrate == 1


def test_yaml_file(tmp_path):
    cfg = load_devices(write(tmp_path, dump_devices(DevicesConfig(**GOOD)), "devices.yml"))
    assert cfg == DevicesConfig(**GOOD)


def test_default_devices_round_trip(tmp_path):
    cfg = default_devices()
    assert cfg.devices[0].name == "dev-counter" and cfg.devices[0].channels == ["1", "2", "3", "4"]
    loaded = load_devices(write(tmp_path, dump_devices(cfg), "devices.yml"), {"example_counter"})
    assert loaded == cfg
    assert [p.name for p in expand_pipelines(loaded)] == [f"pip-counter-{i}" for i in range(1, 5)]


def _dup_device(d):
    d["devices"].append(dict(d["devices"][0], address="other"))


def _dup_pipeline(d):
    d["pipelines"].append(copy.deepcopy(d["pipelines"][0]))


def _expanded_clash(d):
    d["pipelines"][0]["name"] = "pip-w-2"


def _dup_role(d):
    d["pipelines"][0]["devices"].append({"role": "counter", "device": "dev-a", "channel": "2"})


def _dup_component(d):
    d["pipelines"][0]["devices"].append({"role": "other", "device": "dev-a", "channel": "1"})


def _wild_dup_component(d):
    d["pipelines"][1]["devices"].append({"role": "fixed", "device": "dev-a", "channel": "1"})


def _set(path, value):
    def edit(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _drop(path):
    def edit(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


REJECTIONS = [
    ("malformed-json", '{"devices": [', "malformed"),
    ("malformed-yaml", "devices: [\n  - name: a\n bad: {", "malformed YAML"),
    ("not-mapping", "[1, 2]", "mapping"),
    ("empty", "", "empty"),
    ("non-utf8", b"devices: []\nx: \xff\xfe\n", "UTF-8"),
    ("missing-field", changed(_drop(("devices", 0, "channels"))), "devices[0] ('dev-a').channels"),
    ("missing-driver", changed(_drop(("devices", 1, "driver"))), "devices[1] ('dev-b').driver"),
    ("bad-pollrate", changed(_set(("devices", 0, "pollrate"), 0)), "pollrate"),
    ("unknown-key", changed(_set(("devices", 0, "colour"), "red")), "devices[0] ('dev-a').colour"),
    ("dup-device", changed(_dup_device), "device 'dev-a' is defined twice"),
    ("dup-pipeline", changed(_dup_pipeline), "pipeline 'pip-1' is defined twice"),
    ("expanded-dup-pipeline", changed(_expanded_clash), "pipeline 'pip-w-2' is defined twice"),
    ("dup-role", changed(_dup_role), "pipeline 'pip-1' uses role 'counter' twice"),
    (
        "unknown-device",
        changed(_set(("pipelines", 0, "devices", 0, "device"), "nope")),
        "pipeline 'pip-1' uses device 'nope', which is not defined",
    ),
    (
        "unknown-channel",
        changed(_set(("pipelines", 0, "devices", 0, "channel"), "9")),
        "pipeline 'pip-1' uses channel '9' of device 'dev-a'",
    ),
    ("unknown-driver", changed(_set(("devices", 0, "driver"), "nodrv")), "unknown driver 'nodrv'"),
    (
        "wildcard-without-each",
        changed(_set(("pipelines", 0, "name"), "pip-x-*")),
        "wildcard pipeline 'pip-x-*' needs exactly one entry with channel 'each'",
    ),
    (
        "each-without-wildcard",
        changed(_set(("pipelines", 1, "name"), "pip-w")),
        "pipeline 'pip-w' uses channel 'each'",
    ),
    ("dup-component", changed(_dup_component), "uses channel '1' of device 'dev-a' twice"),
    (
        "wildcard-dup-component",
        changed(_wild_dup_component),
        "pipeline 'pip-w-1' uses channel '1' of device 'dev-a' twice",
    ),
    (
        "shared-channel",
        changed(lambda d: d["devices"].append(dict(d["devices"][0], name="dev-c"))),
        "device 'dev-c' and device 'dev-a' both define channel '1'",
    ),
    (
        "dup-channel",
        changed(_set(("devices", 0, "channels"), ["1", 1])),
        "device 'dev-a' lists channel '1' twice",
    ),
    (
        "role-with-slash",
        changed(_set(("pipelines", 0, "devices", 0, "role"), "a/b")),
        "pipelines[0] ('pip-1').devices[0].role: role 'a/b' must not contain '/'",
    ),
]


@pytest.mark.parametrize(
    "data, fragment", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejections(tmp_path, data, fragment):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_devices(path, known_drivers={"example_counter", "psutil"})
    assert_one_line(str(err.value), f"devices file {path}: ", fragment)


def test_unknown_driver_only_checked_when_drivers_known(tmp_path):
    data = changed(_set(("devices", 0, "driver"), "nodrv"))
    assert load_devices(write(tmp_path, data)).devices[0].driver == "nodrv"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="devices file .*nope.yml: cannot be read"):
        load_devices(tmp_path / "nope.yml")


def test_too_large(tmp_path):
    path = tmp_path / "devices.yml"
    path.write_text("# " + "x" * (10 << 20) + "\n")
    with pytest.raises(ConfigError, match="more than the limit"):
        load_devices(path)
