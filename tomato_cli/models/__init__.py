"""Pydantic models of tomato's files and objects: settings, devices, payloads, jobs."""

from tomato_cli.models.component import Component
from tomato_cli.models.devices import (
    Device,
    DevicesConfig,
    PipelineDef,
    PipelineEntry,
    PipelineSpec,
    default_devices,
    dump_devices,
    expand_pipelines,
    load_devices,
)
from tomato_cli.models.errors import ConfigError, PayloadError
from tomato_cli.models.job import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    WAITING_STATUSES,
    Job,
    JobStatus,
)
from tomato_cli.models.payload import (
    Output,
    Payload,
    PayloadSettings,
    Sample,
    Snapshot,
    Task,
    User,
    load_payload,
    parse_payload,
)
from tomato_cli.models.settings import (
    SETTINGS_FILE,
    DaemonSettings,
    DevicesSettings,
    JobsSettings,
    PrefectSettings,
    Settings,
    default_settings,
    load_settings,
    write_settings,
)
from tomato_cli.models.upgrade import upgrade as upgrade_payload

__all__ = [
    "FINAL_STATUSES",
    "LIVE_STATUSES",
    "WAITING_STATUSES",
    "SETTINGS_FILE",
    "Component",
    "ConfigError",
    "DaemonSettings",
    "Device",
    "DevicesConfig",
    "DevicesSettings",
    "Job",
    "JobStatus",
    "JobsSettings",
    "Output",
    "Payload",
    "PayloadError",
    "PayloadSettings",
    "PipelineDef",
    "PipelineEntry",
    "PipelineSpec",
    "PrefectSettings",
    "Sample",
    "Settings",
    "Snapshot",
    "Task",
    "User",
    "default_devices",
    "default_settings",
    "dump_devices",
    "expand_pipelines",
    "load_devices",
    "load_payload",
    "load_settings",
    "parse_payload",
    "upgrade_payload",
    "write_settings",
]
