"""Pydantic models of tomato's files and objects."""

from tomato_cli.models.component import Component
from tomato_cli.models.devices import (
    DevicesConfig,
    PipelineDef,
    default_devices,
    dump_devices,
    expand_pipelines,
    load_devices,
)
from tomato_cli.models.errors import ConfigError, PayloadError
from tomato_cli.models.job import FINAL_STATUSES, Job, JobStatus
from tomato_cli.models.payload import Payload, Task, load_payload, parse_payload
from tomato_cli.models.settings import Settings, default_settings, load_settings, write_settings

__all__ = [
    "Component",
    "ConfigError",
    "DevicesConfig",
    "FINAL_STATUSES",
    "Job",
    "JobStatus",
    "Payload",
    "PayloadError",
    "PipelineDef",
    "Settings",
    "Task",
    "default_devices",
    "default_settings",
    "dump_devices",
    "expand_pipelines",
    "load_devices",
    "load_payload",
    "load_settings",
    "parse_payload",
    "write_settings",
]
