"""The commands of a driver host: one driver instance, its components and their tasks.

:class:`DriverHost` answers the commands the daemon and job runners send (see
:mod:`drivers.host` for the process around it). Components are named by key
``"<address>,<channel>"``. Each running task samples in its own thread (see
:mod:`drivers.sampler` for the schedule and the sample-count rule); samples stay buffered
until ``task_data`` collects them, as one block of scalars and traces per reply (see
:mod:`drivers.samples` for its layout).

``set_attr`` is allowed while a task runs on the component (the change shows up in the
following samples). With ``debug_commands`` it also answers ``debug_crash``,
``debug_segfault`` and ``debug_hang`` (see :mod:`drivers.fault_injection`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from drivers.base import ComponentBase, DriverBase
from drivers.declarations import AttrError, TaskError, check_measured, task_timing
from drivers.fault_injection import fault_commands
from drivers.sampler import DEFAULT_BUFFER_LIMIT, Sampler
from drivers.samples import encode_block, leading_run
from tomato_cli.models.conditions import Bound
from tomato_cli.rpc import Reply, RpcError
from tomato_cli.units import to_seconds

log = logging.getLogger("drivers.host")


def component_key(address: Any, channel: Any) -> str:
    """The key naming a component: ``"<address>,<channel>"``."""
    return f"{address},{channel}"


class DriverHost:
    """Command handler holding one driver instance, its components and tasks."""

    def __init__(self, driver: DriverBase, debug_commands: bool = False, name: str = ""):
        self.driver = driver
        self.name = name or driver.name
        self.debug_commands = debug_commands
        self.components: dict[str, ComponentBase] = {}
        self.locks: dict[str, threading.RLock] = {}
        self.tasks: dict[str, Sampler] = {}
        # every command and every sample passes through this lock; only the fault
        # injection command debug_hang holds it, so that the host looks hung
        self.hang_lock = threading.Lock()
        self.state_lock = threading.RLock()
        self.stopping = threading.Event()
        self.buffer_limit = int(driver.settings.get("buffer_limit", DEFAULT_BUFFER_LIMIT))
        idle = driver.settings.get("idle_measurement_interval")
        # periodic idle measurements (tomato 2.2's setting): status shows the latest one
        self.idle_interval = to_seconds(idle) if idle is not None else None
        self.idle: dict[str, tuple[float, dict[str, Any]]] = {}
        self._idle_due = 0.0
        self._commands: dict[str, Callable[..., Any]] = {
            name: getattr(self, f"cmd_{name}")
            for name in (
                "hello",
                "register",
                "deregister",
                "components",
                "status",
                "attrs",
                "capabilities",
                "constants",
                "get_attr",
                "set_attr",
                "reset",
                "task_start",
                "task_status",
                "task_data",
                "task_stop",
                "shutdown",
            )
        }
        if debug_commands:
            self._commands.update(fault_commands(self.hang_lock))

    # -- dispatch -------------------------------------------------------------------
    def handle(self, cmd: str, args: dict[str, Any]) -> Reply:
        """Run one command; user errors become a failed :class:`Reply`."""
        func = self._commands.get(cmd)
        if func is None:
            return Reply(False, f"unknown command {cmd!r} for driver host {self.name!r}")
        with self.hang_lock:
            pass
        try:
            data = func(**args)
        except TypeError as exc:
            if "argument" in str(exc) and exc.__traceback__ and not exc.__traceback__.tb_next:
                return Reply(False, f"bad arguments for {cmd!r}: {exc}")
            raise
        except (RpcError, AttrError, TaskError, ValueError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            return Reply(False, str(msg).splitlines()[0] if str(msg) else type(exc).__name__)
        return Reply(True, "", data)

    def _component(self, key: str) -> ComponentBase:
        comp = self.components.get(key)
        if comp is None:
            known = ", ".join(sorted(self.components)) or "none"
            raise RpcError(f"unknown component {key!r}; registered: {known}")
        return comp

    def _sampler(self, key: str) -> Sampler | None:
        self._component(key)
        return self.tasks.get(key)

    # -- components -----------------------------------------------------------------
    def cmd_hello(self) -> dict[str, Any]:
        return {"driver": self.name, "pid": os.getpid(), "components": list(self.components)}

    def cmd_register(self, components: list[dict[str, Any]]) -> dict[str, Any]:
        created: dict[str, ComponentBase] = {}
        with self.state_lock:
            for item in components:
                try:
                    address, channel = item["address"], item["channel"]
                except (KeyError, TypeError):
                    raise RpcError(f"component needs 'address' and 'channel': {item!r}") from None
                key = component_key(address, channel)
                options = item.get("options") or {}
                if key in created or not self._needs_component(key, options):
                    continue
                extra = {"options": dict(options)} if options else {}
                created[key] = self.driver.create_component(str(address), str(channel), **extra)
                check_measured(created[key].measured(), f"component {key!r}")
                created[key].options = dict(options)
            for key, comp in created.items():
                replaced = key in self.components
                self.components[key] = comp
                self.locks.setdefault(key, threading.RLock())
                log.info("%s component %s", "re-registered" if replaced else "registered", key)
            keys = [component_key(i["address"], i["channel"]) for i in components]
            return {k: self._offer(self.components[k]) for k in keys}

    def _offer(self, comp: ComponentBase) -> dict[str, Any]:
        """What a registered component offers: its capabilities and its full spec."""
        return {
            "capabilities": sorted(comp.capabilities()),
            "spec": self.driver.spec_of(comp).describe(),
        }

    def _needs_component(self, key: str, options: dict[str, Any]) -> bool:
        """True if ``key`` is new, or idle with different options (then it is replaced)."""
        comp = self.components.get(key)
        if comp is None:
            return True
        if getattr(comp, "options", {}) == options:
            return False
        sampler = self.tasks.get(key)
        return sampler is None or not sampler.running

    def cmd_deregister(self, keys: list[str]) -> list[str]:
        removed = []
        with self.state_lock:
            for key in keys:
                if key in self.components:
                    if (sampler := self.tasks.pop(key, None)) is not None:
                        sampler.stop()
                    del self.components[key]
                    self.locks.pop(key, None)
                    removed.append(key)
                    log.info("deregistered component %s", key)
        return removed

    def cmd_components(self) -> dict[str, Any]:
        return {key: self.cmd_status(key) for key in list(self.components)}

    def cmd_status(self, key: str) -> dict[str, Any]:
        comp = self._component(key)
        sampler = self.tasks.get(key)
        running = sampler is not None and sampler.running
        attrs = comp.attrs()
        shown = [n for n, a in attrs.items() if a.status] or list(attrs)
        with self.locks[key]:
            values = {name: comp.get_attr(name) for name in shown}
            if self.idle_interval is None:
                idle, idle_at = ({} if running else comp.idle_measure()), None
            else:
                idle_at, idle = self.idle.get(key, (None, {}))
        return {
            "key": key,
            "running": running,
            "technique": sampler.technique if running and sampler else None,
            "error": sampler.error if sampler else None,
            "attrs": values,
            "idle": idle,
            "idle_uts": idle_at,
        }

    def idle_sweep(self) -> None:
        """Every ``idle_measurement_interval``: an idle measurement of each idle component."""
        if self.idle_interval is None or time.monotonic() < self._idle_due:
            return
        self._idle_due = time.monotonic() + self.idle_interval
        for key, comp in list(self.components.items()):
            runner = self.tasks.get(key)
            if runner is not None and runner.running:
                continue
            try:
                with self.locks[key]:
                    self.idle[key] = (time.time(), comp.idle_measure())
            except Exception as exc:  # an instrument that fails now may answer later
                log.warning("idle measurement of %s failed: %s", key, exc)

    def cmd_attrs(self, key: str) -> dict[str, Any]:
        return {name: attr.describe() for name, attr in self._component(key).attrs().items()}

    def cmd_capabilities(self, key: str) -> list[str]:
        return sorted(self._component(key).capabilities())

    def cmd_constants(self, key: str) -> dict[str, Any]:
        return self._component(key).constants()

    def cmd_get_attr(self, key: str, attr: str) -> dict[str, Any]:
        comp = self._component(key)
        with self.locks[key]:
            return {"value": comp.get_attr(attr), "units": comp.units_of(attr)}

    def cmd_set_attr(self, key: str, attr: str, value: Any) -> dict[str, Any]:
        comp = self._component(key)
        with self.locks[key]:
            stored = comp.set_attr(attr, value)
        log.info("set %s %s = %r", key, attr, stored)
        return {"value": stored, "units": comp.units_of(attr)}

    def cmd_reset(self, key: str) -> dict[str, Any]:
        comp = self._component(key)
        if (sampler := self.tasks.get(key)) is not None:
            sampler.stop()
        with self.locks[key]:
            comp.reset()
        log.info("reset %s", key)
        return self.cmd_status(key)

    # -- tasks ----------------------------------------------------------------------
    def cmd_task_start(
        self,
        key: str,
        technique_name: str,
        max_duration: Any,
        sampling_interval: Any,
        task_params: dict[str, Any] | None = None,
        stop_when: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Start a task; ``stop_when``: bound conditions on this component's variables
        (:class:`~tomato_cli.models.conditions.Bound` as dicts) that end it early."""
        comp = self._component(key)
        params = task_params or {}
        self.driver.spec_of(comp).check_task(technique_name, params, sampling_interval)
        try:
            conditions = [Bound.from_dict(c) for c in stop_when or []]
        except (KeyError, TypeError) as exc:
            raise RpcError(f"stop_when: not a bound condition ({exc})") from None
        interval, duration = task_timing(max_duration, sampling_interval)
        with self.state_lock:
            old = self.tasks.get(key)
            if old is not None and old.running:
                raise RpcError(f"a task ({old.technique}) is already running on {key!r}")
            with self.locks[key]:
                comp.prepare_task(technique_name, params)
            if old is not None and old.status()["buffered"]:
                log.warning(
                    "%s: new task discards %d uncollected samples", key, old.status()["buffered"]
                )
            sampler = Sampler(
                key,
                comp,
                technique_name,
                duration,
                interval,
                self.hang_lock,
                self.locks[key],
                buffer_limit=self.buffer_limit,
                stop_when=conditions,
            )
            self.tasks[key] = sampler
            sampler.start()
        log.info(
            "task_start %s %s %g s every %g s params=%r",
            key,
            technique_name,
            duration,
            interval,
            params,
        )
        return sampler.status()

    def cmd_task_status(self, key: str) -> dict[str, Any]:
        sampler = self._sampler(key)
        if sampler is None:
            return {
                "running": False,
                "done": False,
                "error": None,
                "started_at": None,
                "samples": 0,
            }
        return sampler.status()

    def cmd_task_data(self, key: str) -> dict[str, Any]:
        """The buffered samples as one block (see :mod:`drivers.samples` for the reply)."""
        sampler = self._sampler(key)
        comp = self.components[key]
        if sampler is None:
            return {"uts": [], "data": {}, "units": {}}
        measured = comp.measured()
        if any(decl.dims for decl in measured.values()):
            uts, rows, left = sampler.take(lambda rows: leading_run(rows, measured))
        else:
            uts, rows, left = sampler.take(len)
        return encode_block(uts, rows, comp, more=left > 0)

    def cmd_task_stop(self, key: str) -> dict[str, Any]:
        sampler = self._sampler(key)
        if sampler is None:
            return self.cmd_task_status(key)
        sampler.stop()
        log.info("task_stop %s", key)
        return sampler.status()

    def stop_all(self) -> None:
        """Stop every running task."""
        for sampler in list(self.tasks.values()):
            sampler.stop()

    def cmd_shutdown(self) -> str:
        log.info("shutdown requested")
        self.stop_all()
        self.stopping.set()
        return "shutting down"
