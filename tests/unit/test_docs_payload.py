"""The payload example of docs/usage.md is valid and shows every field a user can set.

The example and its devices file are read out of the page itself, so the page cannot
drift from the payload model: a field added to the model, renamed or dropped, or a task
the built-in drivers would refuse, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from drivers.registry import load_driver
from tomato_cli.models import Payload, PayloadError, expand_pipelines, load_devices, load_payload
from tomato_cli.models.payload import bind_conditions
from tomato_cli.models.submit import complete_payload

USAGE = Path(__file__).resolve().parents[2] / "docs" / "usage.md"
SECTION = "### A payload with every field"


def _section() -> str:
    text = USAGE.read_text()
    assert SECTION in text, f"{USAGE} has no section {SECTION!r}"
    rest = text.split(SECTION, 1)[1]
    return re.split(r"\n#{2,3} ", rest, maxsplit=1)[0]


def _yaml_blocks() -> tuple[str, str]:
    """(devices file, payload) as written on the page."""
    blocks = re.findall(r"```yaml\n(.*?)```", _section(), flags=re.S)
    devices = [b for b in blocks if b.startswith("devices:")]
    payloads = [b for b in blocks if "method:" in b]
    assert len(devices) == 1 and len(payloads) == 1, blocks
    return devices[0], payloads[0]


def _files(tmp_path: Path) -> tuple[Path, Path]:
    devices, payload = _yaml_blocks()
    (tmp_path / "devices.yml").write_text(devices)
    (tmp_path / "payload.yml").write_text(payload)
    return tmp_path / "devices.yml", tmp_path / "payload.yml"


def _models(annotation: Any, path: str) -> list[tuple[type[BaseModel], str]]:
    """The models an annotation holds, with the dotted path of their fields."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, f"{path}.")]
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list:
        return [m for arg in args for m in _models(arg, f"{path}[]")]
    return [m for arg in args for m in _models(arg, path)]  # X | None


def _fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field a payload may hold, dotted (``settings.output.path``, ``method[].task_name``)."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        out.add(f"{prefix}{name}")
        for sub, sub_prefix in _models(info.annotation, f"{prefix}{name}"):
            out |= _fields(sub, sub_prefix)
    return out


def _keys(data: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            out.add(f"{prefix}{key}")
            if key != "task_params":  # the driver's attributes, not payload fields
                out |= _keys(value, f"{prefix}{key}.")
    elif isinstance(data, list):
        for item in data:
            out |= _keys(item, prefix.removesuffix(".") + "[].")
    return out


def test_the_example_shows_every_field_of_the_payload_model() -> None:
    _, payload = _yaml_blocks()
    shown = _keys(yaml.safe_load(payload))
    missing = sorted(_fields(Payload) - shown)
    assert not missing, f"docs/usage.md's payload example lacks {missing}"
    for field in ("settings.unlock_when_done", "method[].polling_interval"):
        assert field in shown


def test_the_example_is_accepted(tmp_path: Path) -> None:
    devices_path, payload_path = _files(tmp_path)
    payload = load_payload(payload_path)  # the loader of `ketchup submit`
    done = complete_payload(payload, tmp_path, {"default": {}})
    assert done.settings.unlock_when_done is True
    assert done.settings.output.path == "runs" and done.settings.output.prefix == "cat-042"
    assert done.settings.snapshot.interval == 600.0
    assert done.user.identifier == "jdoe"
    assert done.sample.model_extra == {"batch": "B7"}
    steps = {s.task_name or s.technique_name: s for s in done.method}
    assert steps["count"].start_with_task_name == "warm-up"
    assert steps["count"].stop_with_task_name == "measure"
    assert steps["noisy"].polling_interval == 2.0
    assert done.planned_duration() == 3600.0 + 3 * 300.0  # "noisy" repeats 3 times

    # every step against the driver of its role in the example's devices file, with the
    # checks the daemon makes at submit (technique, task parameters, sampling interval)
    cfg = load_devices(devices_path)
    devices = {d.name: d for d in cfg.devices}
    (pipeline,) = expand_pipelines(cfg)
    roles = {comp.role: comp for comp in pipeline.components}
    assert set(payload.techniques_by_role()) == set(roles)
    specs = {}
    for step in done.method:
        comp = roles[step.component_role]
        driver = load_driver(comp.driver)()
        options = devices[comp.device].options
        spec = driver.spec_of(driver.create_component(comp.address, comp.channel, options))
        spec.check_task(step.technique_name, step.task_params, step.sampling_interval)
        specs[step.component_role] = spec
    # its conditions name variables of those drivers, in units that fit theirs
    bound = bind_conditions(done, lambda role, variable: specs[role].units_of(variable))
    assert [b.text for b in bound.of_step(3)] == ["val > 95 for 3 s"]
    assert bound.of_repeat(0).steps == (3,)
    assert [(b.variable, b.units, b.threshold) for b in bound.of_job()] == [
        ("mem_usage", "percent", 98.0)
    ]


def test_a_misspelt_field_in_the_example_would_be_refused(tmp_path: Path) -> None:
    """The check above means something: the model refuses keys it does not know."""
    _, payload_path = _files(tmp_path)
    text = payload_path.read_text().replace("unlock_when_done:", "unlock_when_don:")
    payload_path.write_text(text)
    with pytest.raises(PayloadError, match="unlock_when_don"):
        load_payload(payload_path)


@pytest.mark.parametrize("page", ["README.md", "docs/usage.md", "docs/migrating.md"])
def test_every_payload_on_the_pages_is_accepted(page: str, tmp_path: Path) -> None:
    """Every YAML block with a ``method`` on the page loads as `ketchup submit` loads it."""
    text = (USAGE.parents[1] / page).read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "method:" in b]
    if page == "README.md":
        assert blocks, "README.md shows a payload"
    for i, block in enumerate(blocks):
        path = tmp_path / f"payload-{i}.yml"
        path.write_text(block)
        payload = load_payload(path)
        assert payload.method


@pytest.mark.parametrize("page", ["README.md", "docs/usage.md", "docs/migrating.md"])
def test_every_devices_file_on_the_pages_loads(page: str, tmp_path: Path) -> None:
    """Every YAML block that starts with ``devices:`` is a devices file tomato accepts."""
    text = (USAGE.parents[1] / page).read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    for i, block in enumerate(b for b in blocks if b.startswith("devices:")):
        path = tmp_path / f"devices-{i}.yml"
        path.write_text(block)
        assert expand_pipelines(load_devices(path, {"example_counter", "psutil"}))
