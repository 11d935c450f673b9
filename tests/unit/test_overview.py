"""The pipelines overview: its table, its key, and when it is worth an update."""

from __future__ import annotations

from tomato_cli.models import parse_payload
from tomato_cli.orchestration.overview import (
    COALESCE_S,
    PROGRESS_EVERY_S,
    PipelineRow,
    overview_key,
    overview_markdown,
    update_due,
)

IDLE = PipelineRow("pip-2", None, False)
BUSY = PipelineRow("pip-1", "s|1", True, 5, "r", 0.42, "fr-5")


def test_markdown_lists_every_pipeline_with_its_job_and_progress() -> None:
    md = overview_markdown([BUSY, IDLE], "http://ui", "12:00:00")
    lines = md.splitlines()
    assert lines[0] == "**2 pipelines, 1 running a job** (updated 12:00:00)"
    assert lines[2] == "| pipeline | sample | ready | job | status | progress |"
    assert lines[4] == (
        "| pip-1 | s\\|1 | yes | [job 5](http://ui/runs/flow-run/fr-5) | r | ▰▰▰▰▱▱▱▱▱▱ 42 % |"
    )
    assert lines[5] == "| pip-2 |  | no |  |  |  |"


def test_key_is_a_valid_artifact_key() -> None:
    assert overview_key("tomato") == "tomato-pipelines"
    assert overview_key("tomato-Lab_PC.example-1234") == "tomato-lab-pc-example-1234-pipelines"


def test_changes_are_coalesced_and_progress_alone_waits_longer() -> None:
    rows = [BUSY, IDLE]
    assert update_due(None, rows, 0.0)  # nothing shown yet
    assert not update_due(rows, list(rows), 100.0)  # nothing changed
    loaded = [BUSY, PipelineRow("pip-2", "s2", False)]
    assert not update_due(rows, loaded, COALESCE_S / 2)  # a burst: wait a little
    assert update_due(rows, loaded, COALESCE_S)
    later = [PipelineRow("pip-1", "s|1", True, 5, "r", 0.43, "fr-5"), IDLE]
    assert not update_due(rows, later, PROGRESS_EVERY_S / 2)
    assert update_due(rows, later, PROGRESS_EVERY_S)
    same_percent = [PipelineRow("pip-1", "s|1", True, 5, "r", 0.4201, "fr-5"), IDLE]
    assert not update_due(rows, same_percent, 1000.0)  # nothing that shows changed


def test_planned_duration_is_the_longest_role() -> None:
    payload = parse_payload(
        {
            "version": "2.2",
            "sample": {"identifier": "s"},
            "method": [
                {
                    "component_role": "a",
                    "technique_name": "t",
                    "max_duration": 10,
                    "sampling_interval": 1,
                },
                {
                    "component_role": "a",
                    "technique_name": "t",
                    "max_duration": 5,
                    "sampling_interval": 1,
                },
                {
                    "component_role": "b",
                    "technique_name": "t",
                    "max_duration": 12,
                    "sampling_interval": 1,
                },
            ],
        },
        "payload",
    )
    assert payload.planned_duration() == 15
