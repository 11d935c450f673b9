"""Drivers: the component/driver interface, built-in drivers and the driver host."""

from drivers.base import Attr, AttrError, ComponentBase, DriverBase, TaskError

__all__ = ["Attr", "AttrError", "ComponentBase", "DriverBase", "TaskError"]
