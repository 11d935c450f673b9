"""The ``scpi`` driver: SCPI instruments through pyvisa, described in YAML instead of code."""

from drivers.scpi.connection import Connection, InstrumentError, VisaSettings
from drivers.scpi.description import Description, DescriptionError, load_description
from drivers.scpi.driver import ScpiComponent, ScpiDriver

__all__ = [
    "Connection",
    "Description",
    "DescriptionError",
    "InstrumentError",
    "ScpiComponent",
    "ScpiDriver",
    "VisaSettings",
    "load_description",
]
