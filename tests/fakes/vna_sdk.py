"""A fake of the PicoVNA SDK's compiled module ``_vna_python``, below tomato-picovna.

tomato-picovna imports ``vna.vna`` (SWIG proxies, on PyPI) from the directory its
``dllpath`` setting names; those proxies call the SDK's compiled ``_vna_python``. Copied
into ``<dllpath>/linux_x64/python3XX/_vna_python.py``, this module stands in for it: one
connected VNA per serial number starting with ``VNA`` (others are not found), 300 kHz to
8.5 GHz, a temperature of 38 degC, and a simulated device under test whose reflection is
``S11 = f/fmax - 0.5j`` and transmission ``S21 = 1 - f/fmax + 0j``.
Names the proxies only reference (constants, destructors, unused methods) resolve through
the module's ``__getattr__``: a constant is an int; any other name the fake lacks is an
``AttributeError`` that names it.
"""

from __future__ import annotations

import zlib
from types import SimpleNamespace
from typing import Any

MIN_HZ, MAX_HZ = 300e3, 8.5e9
_CLASSES: dict[str, type] = {}


def _proxy(name: str, this: Any) -> Any:
    obj = _CLASSES[name].__new__(_CLASSES[name])
    obj.this = this
    return obj


def Device_open(serial: str) -> Any:  # noqa: N802 - the SDK's name
    if not str(serial).startswith("VNA"):
        raise _CLASSES["DeviceNotFoundException"](f"no VNA with serial {serial!r} is connected")
    return _proxy("Device", SimpleNamespace(serial=serial, calibration=None))


def Device_getInfo(dev: Any) -> Any:  # noqa: N802
    return SimpleNamespace(
        serial=dev.this.serial,
        model="PicoVNA 108 (fake)",
        numPorts=2,
        minSweepFrequencyHz=MIN_HZ,
        maxSweepFrequencyHz=MAX_HZ,
    )


def Device_getTemperature(dev: Any) -> float:  # noqa: N802
    return 38.0


def Device_loadFactoryCalibration(dev: Any) -> None:  # noqa: N802
    dev.this.calibration = "factory"


def Device_applyCalibrationFromFile(dev: Any, path: str) -> None:  # noqa: N802
    dev.this.calibration = path


def Device_startMeasurement(dev: Any, config: Any) -> Any:  # noqa: N802
    points = []
    for point in config.this.points:
        f = point.frequencyHz
        s11, s21 = complex(f / MAX_HZ, -0.5), complex(1 - f / MAX_HZ, 0)
        points.append(SimpleNamespace(measurementFrequencyHz=f, s11=s11, s12=s21, s21=s21, s22=s11))
    return SimpleNamespace(getAllPoints=lambda: points)


def new_MeasurementConfiguration(*args: Any) -> Any:  # noqa: N802
    return SimpleNamespace(points=[])


def MeasurementConfiguration_addPoint(config: Any, point: Any) -> None:  # noqa: N802
    config.this.points.append(point.this)


def MeasurementConfiguration_getPoints(config: Any, *args: Any) -> list[Any]:  # noqa: N802
    return list(config.this.points)


def MeasurementConfiguration_numPoints(config: Any) -> int:  # noqa: N802
    return len(config.this.points)


def new_MeasurementPoint() -> Any:  # noqa: N802
    return SimpleNamespace(frequencyHz=0.0, powerLeveldBm=0.0, bandwidthHz=0.0)


def __getattr__(name: str) -> Any:
    head, _, last = name.rpartition("_")
    if name.endswith("_swigregister"):
        return lambda cls: _CLASSES.setdefault(head, cls)
    if name.endswith("_swiginit"):
        return lambda obj, this: setattr(obj, "this", this)
    if name.startswith(("new_", "delete_")):
        return lambda *args: SimpleNamespace(args=args)
    if last in ("get", "set") and "_" in head:
        field = head.split("_", 1)[1]
        if last == "get":
            return lambda obj: getattr(obj.this, field)
        return lambda obj, value: setattr(obj.this, field, value)
    member = name.split("_", 1)[-1]
    if member[:1].isupper() or member[:1].isdigit():
        return zlib.crc32(name.encode()) % 1000  # an enum member: Enum_MEMBER, Enum_Member
    raise AttributeError(f"the fake PicoVNA SDK has no {name!r}")
