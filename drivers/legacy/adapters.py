"""A tomato 2.x ``DriverInterface`` seen through our driver interface.

:class:`LegacyDriver` and :class:`LegacyComponent` put the 2.x driver's calls behind
:class:`~drivers.base.DriverBase` and :class:`~drivers.base.ComponentBase`, one call at a
time; :class:`LegacyTask` follows a task that runs in the driver's own task thread.
:func:`load_interface` finds and checks the package's ``DriverInterface``. The host that
answers our commands with them is :mod:`drivers.legacy.host`.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from typing import Any

from drivers.base import ComponentBase, DriverBase
from drivers.declarations import Attr, known_attr
from drivers.legacy.convert import latest, plain, to_attr, to_driver
from drivers.sampler import sample_count

log = logging.getLogger("drivers.legacy")

INTERFACE_VERSION = "2.1"


class LegacyCallError(ValueError):
    """A call into the 2.x driver failed; the message is one line naming the cause."""


def describe(exc: BaseException | object) -> str:
    """``"<Type>: <message>"`` of an exception (or of what ``sys.exit`` was given)."""
    if isinstance(exc, SystemExit):
        return describe(exc.code) if exc.code is not None else "SystemExit"
    if isinstance(exc, BaseException):
        text = str(exc).strip()
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return str(exc)


class TaskThreadErrors(logging.Handler):
    """Remembers the last error a 2.x task thread logged before it died, by thread id.

    The 2.x task thread catches an exception from the driver's ``do_task``, logs it as
    critical and ends; this is where its message can be had.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: dict[int, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None and record.thread is not None:
            self.errors[record.thread] = describe(record.exc_info[1]).splitlines()[0]


class LegacyDriver(DriverBase):
    """One 2.x ``DriverInterface`` instance, called one call at a time."""

    def __init__(self, name: str, interface: Any, settings: dict[str, Any]):
        super().__init__(settings)
        self.name = name
        self.interface = interface
        self.lock = threading.RLock()
        self.task_class = _task_class(type(interface))

    def call(self, method: str, **kwargs: Any) -> Any:
        """The reply to ``method``; exceptions and exits become :class:`LegacyCallError`."""
        with self.lock:
            try:
                return getattr(self.interface, method)(**kwargs)
            except (Exception, SystemExit) as exc:
                log.warning("driver %s: %s failed: %s", self.name, method, describe(exc))
                raise LegacyCallError(f"{describe(exc)}".splitlines()[0]) from None

    def expect(self, method: str, **kwargs: Any) -> Any:
        """The data of a successful reply; a failed one raises :class:`LegacyCallError`."""
        reply = self.call(method, **kwargs)
        if not reply.success:
            raise LegacyCallError(str(reply.msg).splitlines()[0] if reply.msg else method)
        return reply.data

    def idle_interval(self) -> float | None:
        """Seconds between idle measurements (settings first, as in tomato 2.2), or None."""
        value = self.settings.get(
            "idle_measurement_interval",
            getattr(self.interface, "idle_measurement_interval", None),
        )
        return float(value) if value else None

    def close(self) -> None:
        """Stop every task and reset every component (2.x's ``reset`` at driver exit)."""
        try:
            self.call("reset")
        except LegacyCallError:
            pass


class LegacyComponent(ComponentBase):
    """A registered component of a 2.x driver: everything is asked of the driver."""

    declares_measured = False  # a 2.x driver's quantities are known from its data

    def __init__(self, driver: LegacyDriver, address: str, channel: str):
        self.address, self.channel = address, channel
        self.settings = driver.settings
        self.driver = driver
        self.ident = (address, channel)
        self.options: dict[str, Any] = {}
        self.data_units: dict[str, str | None] = {}

    def device(self) -> Any:
        return self.driver.interface.devmap[self.ident]

    def legacy_attrs(self) -> dict[str, Any]:
        return dict(self.driver.expect("cmp_attrs", key=self.ident))

    def attrs(self) -> dict[str, Attr]:  # type: ignore[override]
        return {name: to_attr(a) for name, a in self.legacy_attrs().items()}

    def capabilities(self) -> set[str]:  # type: ignore[override]
        return set(self.driver.expect("cmp_capabilities", key=self.ident))

    def units_of(self, name: str) -> str | None:  # type: ignore[override]
        attr = self.attrs().get(name)
        return attr.units if attr is not None else self.data_units.get(name)

    def constants(self) -> dict[str, Any]:
        found = plain(self.driver.expect("cmp_constants", key=self.ident) or {})
        return {"address": self.address, "channel": self.channel, **found}

    def get_attr(self, name: str) -> Any:
        attr = known_attr(self.attrs(), name)
        return plain(self.driver.expect("cmp_get_attr", attr=name, key=self.ident), attr.units)

    def set_attr(self, name: str, value: Any) -> Any:
        checked = self.check_attr(name, value)
        legacy = self.legacy_attrs()[name]
        stored = self.driver.expect(
            "cmp_set_attr", attr=name, val=to_driver(checked, legacy), key=self.ident
        )
        return plain(stored, legacy.units) if stored is not None else checked

    def driver_values(self, params: dict[str, Any]) -> dict[str, Any]:
        """Task parameters checked against the attrs, as the 2.x driver takes them."""
        legacy = self.legacy_attrs()
        return {
            name: to_driver(self.check_attr(name, value), legacy[name])
            for name, value in params.items()
        }

    def check_task(self, technique: str, params: dict[str, Any], interval: Any) -> None:
        self.driver.spec_of(self).check_task(technique, params, interval)

    def idle_measure(self) -> dict[str, Any]:
        reply = self.driver.call("cmp_last_data", key=self.ident)
        return latest(reply.data) if reply.success else {}

    def reset(self) -> None:
        self.driver.expect("cmp_reset", key=self.ident)


class LegacyTask:
    """A task running in a 2.x component's own task thread."""

    def __init__(self, comp: LegacyComponent, technique: str, duration: float, interval: float):
        self.comp = comp
        self.technique = technique
        self.total = sample_count(duration, interval)
        self.thread = comp.device().thread  # the 2.x thread that will run this task
        self.started_at = time.time()
        self.pending: list[Any] = []  # data the driver handed over at task_stop
        self.samples = 0
        self.stopped = False
        self.ended = False
        self.error: str | None = None

    @property
    def running(self) -> bool:
        if self.ended:
            return False
        device = self.comp.device()
        if self.thread.is_alive() and (device.running or device.task_list.unfinished_tasks):
            return True
        self._end()
        return False

    def _end(self) -> None:
        """The task ended: note an error, stop the driver's task threads, keep the rest."""
        with self.comp.driver.lock:
            if self.ended:
                return
            self.ended = True
            if not self.thread.is_alive() and not self.stopped:
                errors = ERRORS.errors.get(self.thread.ident or -1)
                self.error = errors or "the driver's task thread stopped (see the driver log)"
            try:
                reply = self.comp.driver.call("task_stop", key=self.comp.ident)
                if reply.success and reply.data is not None:
                    self.pending.append(reply.data)
            except LegacyCallError as exc:
                self.error = self.error or str(exc)

    def stop(self) -> None:
        if not self.ended:
            self.stopped = True
            self._end()

    def collect(self) -> list[Any]:
        """Every dataset not yet handed out, oldest first."""
        with self.comp.driver.lock:
            found, self.pending = self.pending, []
            reply = self.comp.driver.call("task_data", key=self.comp.ident)
        if reply.success and reply.data is not None:
            found.append(reply.data)
        return found

    def status(self) -> dict[str, Any]:
        running = self.running
        return {
            "running": running,
            "done": not running,
            "error": self.error,
            "started_at": self.started_at,
            "samples": self.samples,
            "technique": self.technique,
            "expected": self.total,
            "stopped": self.stopped,
            "missed": 0,
            "dropped": 0,
            "buffered": len(self.pending),
        }


ERRORS = TaskThreadErrors()


def _task_class(cls: type) -> type:
    """The ``Task`` model the driver's interface expects (found beside its base class)."""
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        task = getattr(module, "Task", None)
        if isinstance(task, type) and hasattr(task, "model_fields"):
            return task
    raise TypeError(f"{cls.__module__}.{cls.__name__} is not a tomato 2.x DriverInterface")


def load_interface(module: str) -> type:
    """The ``DriverInterface`` class of a tomato 2.x driver package; checks its version."""
    mod = importlib.import_module(module)
    cls = getattr(mod, "DriverInterface", None)
    if not isinstance(cls, type):
        raise TypeError(f"module {module!r} has no DriverInterface: not a tomato 2.x driver")
    version = str(getattr(cls, "version", "?"))
    if version != INTERFACE_VERSION:
        raise TypeError(
            f"module {module!r} speaks DriverInterface {version}; "
            f"only {INTERFACE_VERSION} is supported"
        )
    _task_class(cls)
    return cls
