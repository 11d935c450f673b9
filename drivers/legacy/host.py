"""The driver host of a tomato 2.x driver package, run inside the legacy environment.

Run as ``python -m drivers.legacy.host --module tomato_jumo --driver jumo --port PORT
[--settings JSON] [--logfile PATH]`` (the daemon does, through :mod:`drivers.origins`);
``--check`` only imports the package and prints what it is. It answers the same commands as
:mod:`drivers.host`, translating each into the driver's DriverInterface 2.1 calls:

- tasks run in the driver's own task thread (``task_start`` queues a 2.x ``Task``); when a
  task ends, by itself or by ``task_stop``, the driver's ``task_stop`` is called, so threads
  it runs for the task (such as a temperature ramp) stop with it;
- idle measurements run every ``idle_measurement_interval`` (the driver's, or the driver
  settings'), and the last one is the ``idle`` part of the component status;
- a ``RuntimeError`` while registering (a 2.x driver's way of saying "try again") is retried
  up to three times; any other exception, and a ``sys.exit`` inside the driver, fails only
  that call, with the driver's message;
- calls into the driver are made one at a time, as tomato 2.2's driver loop made them.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
import time
from typing import Any

from drivers.base import ComponentBase, DriverBase
from drivers.declarations import Attr, TaskError, known_attr
from drivers.host import argument_parser, serve, setup_logging
from drivers.host_commands import DriverHost, component_key
from drivers.legacy.convert import datasets_to_block, latest, plain, to_attr, to_driver
from drivers.sampler import sample_count
from tomato_cli.rpc import RpcError
from tomato_cli.units import to_seconds

log = logging.getLogger("drivers.legacy")

INTERFACE_VERSION = "2.1"
REGISTER_TRIES = 3
REGISTER_RETRY_S = 0.5


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


class LegacyDriverHost(DriverHost):
    """:class:`DriverHost` commands answered by a 2.x driver."""

    driver: LegacyDriver
    components: dict[str, LegacyComponent]  # type: ignore[assignment]
    tasks: dict[str, LegacyTask]  # type: ignore[assignment]

    def __init__(self, driver: LegacyDriver, name: str = ""):
        super().__init__(driver, name=name)
        self._idle = threading.Thread(target=self._idle_loop, name="idle", daemon=True)
        self._idle.start()

    def cmd_register(self, components: list[dict[str, Any]]) -> dict[str, Any]:
        keys, failures = [], []
        with self.state_lock:
            for item in components:
                try:
                    address, channel = str(item["address"]), str(item["channel"])
                except (KeyError, TypeError):
                    raise RpcError(f"component needs 'address' and 'channel': {item!r}") from None
                key = component_key(address, channel)
                keys.append(key)
                if key in self.components and (address, channel) in self.driver.interface.devmap:
                    continue
                error = self._register(address, channel)
                if error:
                    failures.append(f"{key}: {error}")
                    continue
                self.components[key] = LegacyComponent(self.driver, address, channel)
                self.locks[key] = self.driver.lock
                log.info("registered component %s", key)
            if failures:
                raise RpcError(f"driver {self.name!r} cannot register " + "; ".join(failures))
            return {k: self._offer(self.components[k]) for k in keys}

    def _register(self, address: str, channel: str) -> str | None:
        """None once registered, else why not (a 2.x RuntimeError is retried)."""
        msg = ""
        for attempt in range(1, REGISTER_TRIES + 1):
            try:
                reply = self.driver.call("cmp_register", address=address, channel=channel)
            except LegacyCallError as exc:
                return str(exc)
            if reply.success:
                return None
            msg = str(reply.msg).splitlines()[0]
            log.warning("register %s,%s: %s (try %d)", address, channel, msg, attempt)
            if attempt < REGISTER_TRIES:
                time.sleep(REGISTER_RETRY_S)
        return f"{msg} (tried {REGISTER_TRIES} times)"

    def cmd_deregister(self, keys: list[str]) -> list[str]:
        removed = []
        with self.state_lock:
            for key in keys:
                comp = self.components.pop(key, None)
                if comp is None:
                    continue
                if (runner := self.tasks.pop(key, None)) is not None:
                    runner.stop()
                try:
                    self.driver.expect("cmp_teardown", key=comp.ident)
                except LegacyCallError as exc:
                    log.warning("teardown of %s failed: %s", key, exc)
                self.locks.pop(key, None)
                removed.append(key)
        return removed

    def cmd_task_start(
        self,
        key: str,
        technique_name: str,
        max_duration: Any,
        sampling_interval: Any,
        task_params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        comp = self._component(key)
        params = task_params or {}
        comp.check_task(technique_name, params, sampling_interval)
        interval, duration = to_seconds(sampling_interval), to_seconds(max_duration)
        if duration < 0:
            raise TaskError(f"max_duration must not be negative, got {max_duration!r}")
        with self.state_lock, self.driver.lock:
            old = self.tasks.get(key)
            if old is not None and old.running:
                raise RpcError(f"a task ({old.technique}) is already running on {key!r}")
            values = comp.driver_values(params)
            if not comp.device().thread.is_alive():
                comp.reset()  # a crashed task left no thread to run the next one
            task = self.driver.task_class(
                component_role=key,
                technique_name=technique_name,
                max_duration=duration,
                sampling_interval=interval,
                task_params=values,
            )
            runner = LegacyTask(comp, technique_name, duration, interval)
            self.driver.expect("task_start", key=comp.ident, task=task)
            self.tasks[key] = runner
        log.info("task_start %s %s %g s every %g s", key, technique_name, duration, interval)
        return runner.status()

    def cmd_task_status(self, key: str) -> dict[str, Any]:
        runner = self._sampler(key)
        return super().cmd_task_status(key) if runner is None else runner.status()

    def cmd_task_data(self, key: str) -> dict[str, Any]:
        comp = self._component(key)
        runner = self.tasks.get(key)
        if runner is None:
            return {"uts": [], "data": {}, "units": {}}
        block, rest = datasets_to_block(runner.collect())
        if rest:
            with comp.driver.lock:
                runner.pending[:0] = rest  # the next call takes them
        comp.data_units.update(block["units"])
        runner.samples += len(block["uts"])
        return block

    def cmd_task_stop(self, key: str) -> dict[str, Any]:
        runner = self._sampler(key)
        if runner is None:
            return self.cmd_task_status(key)
        runner.stop()
        log.info("task_stop %s", key)
        return runner.status()

    def _idle_loop(self) -> None:
        interval = self.driver.idle_interval()
        if interval is None:
            return
        last = -interval
        while not self.stopping.wait(0.1):
            if time.monotonic() - last < interval:
                continue
            last = time.monotonic()
            for key, comp in list(self.components.items()):
                runner = self.tasks.get(key)
                if runner is not None and runner.running:
                    continue
                try:
                    self.driver.call("cmp_measure", key=comp.ident)
                except LegacyCallError:
                    pass


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


def main(argv: list[str] | None = None) -> int:
    """Run the host of a tomato 2.x driver until ``shutdown``, SIGTERM or SIGINT."""
    parser = argument_parser("python -m drivers.legacy.host")
    parser.add_argument("--module", required=True, help="the 2.x driver module (tomato_<name>)")
    parser.add_argument("--check", action="store_true", help="load, describe as JSON, exit")
    args = parser.parse_args(argv)
    setup_logging(args)
    logging.getLogger().addHandler(ERRORS)
    try:
        settings = json.loads(args.settings)
        if not isinstance(settings, dict):
            raise ValueError("driver settings are not a JSON object")
        cls = load_interface(args.module)
        if args.check:
            print(
                json.dumps(
                    {
                        "driver": args.driver,
                        "module": args.module,
                        "interface": INTERFACE_VERSION,
                        "idle_measurement_interval": cls.idle_measurement_interval,
                    }
                )
            )
            return 0
        driver = LegacyDriver(args.driver, cls(settings=settings), settings)
    except (Exception, SystemExit) as exc:
        log.error("cannot start driver %r: %s", args.driver, describe(exc))
        print(
            f"cannot start driver {args.driver!r}: {describe(exc)}".splitlines()[0], file=sys.stderr
        )
        return 2
    return serve(LegacyDriverHost(driver, name=args.driver), args.port)


if __name__ == "__main__":
    sys.exit(main())
