"""tomato_cli.models.job and component: the reference output's tomato_Job / tomato_Component."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.reference import REFERENCE
from tomato_cli.models import FINAL_STATUSES, Component, Job, Payload, parse_payload

REF_NC = REFERENCE / "results.ref.nc"


@pytest.fixture(scope="module")
def ref_attrs() -> tuple[str, str]:
    import xarray as xr

    with xr.open_datatree(REF_NC) as dt:
        return dt.attrs["tomato_Job"], dt["counter"].attrs["tomato_Component"]


def test_reference_job_validates(ref_attrs):
    job = Job.model_validate_json(ref_attrs[0])
    assert job.id == 1 and job.status == "c" and job.is_final
    assert job.payload.sample.identifier == "counter_1_0.1"
    assert job.payload.user.identifier == "kraus"
    assert job.payload.method[0].sampling_interval == 0.1
    assert job.submitted_at == datetime(2026, 1, 12, 9, 17, 23, 905153, tzinfo=UTC)
    assert job.pipeline is None and job.flow_run_id is None and job.error is None
    again = Job.model_validate_json(job.model_dump_json())
    assert again == job
    original = json.loads(ref_attrs[0])
    dumped = json.loads(job.model_dump_json())
    assert dumped["payload"] == original["payload"]


def test_reference_component_round_trips(ref_attrs):
    comp = Component.model_validate_json(ref_attrs[1])
    assert comp.name == "example_counter:(example-addr,1)"
    assert comp.key == "example-addr,1"
    assert comp.capabilities == ["count", "random"]
    assert json.loads(comp.model_dump_json()) == json.loads(ref_attrs[1])


def test_component_make():
    comp = Component.make("psutil", "dev-psutil", "psutil-addr", "10", "psutil")
    assert comp.name == "psutil:(psutil-addr,10)" and comp.capabilities == []


def test_job_with_our_fields_and_old_payload():
    old = {
        "version": "0.2",
        "sample": {"name": "s"},
        "method": [{"device": "counter", "technique": "count", "time": 1, "delay": 0.1}],
    }
    job = Job(id=3, payload=old, status="q", pipeline="pip-1", flow_run_id="abc")
    assert isinstance(job.payload, Payload) and job.payload == parse_payload(old)
    assert not job.is_final
    assert Job.model_validate_json(job.model_dump_json()) == job


@pytest.mark.parametrize("status", ["x", "done", ""])
def test_job_rejects_unknown_status(status):
    task = {"component_role": "r", "technique_name": "t", "max_duration": 1, "sampling_interval": 1}
    payload = parse_payload({"sample": {"identifier": "s"}, "method": [task]})
    with pytest.raises(ValueError, match="status"):
        Job(id=1, payload=payload, status=status)


def test_final_statuses():
    assert set(FINAL_STATUSES) == {"c", "ce", "cd"}


def test_final_word_is_never_seen_half_written(tmp_path: Path) -> None:
    """The daemon polls final.json while the job writes it: a read sees all or nothing."""
    import threading

    from tomato_cli.models.job import read_final, write_final

    assert read_final(tmp_path) is None
    stop = threading.Event()
    seen: list[dict | None] = []

    def reader() -> None:
        while not stop.is_set():
            if (tmp_path / "final.json").exists():
                seen.append(read_final(tmp_path))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            write_final(tmp_path, "ce" if i % 2 else "c", "x" * 5000 if i % 2 else None)
    finally:
        stop.set()
        thread.join()
    assert seen, "the reader never ran"
    assert all(s is not None and s["status"] in ("c", "ce") for s in seen)
    assert read_final(tmp_path) == {"status": "ce", "error": "x" * 5000}
    assert not list(tmp_path.glob("*.partial"))
    (tmp_path / "final.json").write_text('{"status": "r"}')
    assert read_final(tmp_path) is None  # not a final status
