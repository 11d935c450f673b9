"""The driver supervisor: one driver host process per driver type, watched and restarted."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.declarations import ComponentSpec
from drivers.origins import DriverCatalog
from drivers.registry import DriverNotFound
from tomato_cli.daemon.state import DriverRecord, StateStore
from tomato_cli.models import Component
from tomato_cli.processes import alive, kill
from tomato_cli.rpc import Reply, Unreachable, call, free_port

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 3.0
HANG_PINGS = 2  # consecutive unanswered pings before a driver counts as hung
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class DriverHostProcess:
    """One driver host process, as the supervisor sees it."""

    name: str
    port: int
    pid: int | None = None
    proc: subprocess.Popen | None = None
    state: str = "starting"  # starting, running, restarting, stopped, failed
    restarts: int = 0
    missed_pings: int = 0
    next_start: float = 0.0
    error: str | None = None
    components: dict[str, Component] = field(default_factory=dict)
    specs: dict[str, ComponentSpec] = field(default_factory=dict)  # by component key

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "pid": self.pid,
            "state": self.state,
            "restarts": self.restarts,
            "error": self.error,
            "components": sorted(self.components),
        }


class DriverSupervisor:
    """Starts, registers, watches and restarts the driver hosts (one per driver type)."""

    def __init__(self, store: StateStore, settings: dict[str, dict[str, Any]], logdir: Path):
        self.store = store
        self.settings = settings  # the settings file's [drivers] section
        self.logdir = logdir
        self.hosts: dict[str, DriverHostProcess] = {}
        self.catalog = DriverCatalog(None)  # which drivers exist; set by the daemon
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # lifecycle
    def configure(self, components: list[Component]) -> None:
        """Make the running drivers match the given components (start, register, stop)."""
        wanted: dict[str, dict[str, Component]] = {}
        for comp in components:
            wanted.setdefault(comp.driver, {})[comp.key] = comp
        with self.lock:
            for name in list(self.hosts):
                if name not in wanted:
                    self._stop_driver(self.hosts.pop(name))
                    self.store.delete_driver(name)
            records = self.store.driver_records()
            for name, comps in wanted.items():
                drv = self.hosts.get(name)
                if drv is None:
                    drv = self._adopt_or_start(name, records.get(name))
                    self.hosts[name] = drv
                removed = set(drv.components) - set(comps)
                drv.components = comps
                if drv.state == "running":
                    if removed:
                        self._call(drv, "deregister", keys=sorted(removed))
                    self.register(drv)

    def start_watching(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="driver-watch", daemon=True)
        self._thread.start()

    def stop_all(self) -> None:
        self._stop.set()
        with self.lock:
            for drv in self.hosts.values():
                self._stop_driver(drv)
            for name in list(self.hosts):
                self.store.delete_driver(name)

    # queries
    def port_of(self, driver: str) -> int | None:
        drv = self.hosts.get(driver)
        return drv.port if drv and drv.state == "running" else None

    def spec_of(self, comp: Component) -> ComponentSpec | None:
        """What the component offers, as its driver host said at registration."""
        drv = self.hosts.get(comp.driver)
        return drv.specs.get(comp.key) if drv else None

    def capabilities_of(self, comp: Component) -> list[str]:
        spec = self.spec_of(comp)
        return sorted(spec.techniques) if spec else []

    def call(self, driver: str, cmd: str, timeout: float = 10.0, **args: Any) -> Reply:
        drv = self.hosts.get(driver)
        if drv is None:
            raise Unreachable(f"driver {driver}", "not configured")
        return call(drv.port, cmd, timeout=timeout, **args)

    def public(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{**d.public(), **self.catalog.about(d.name)} for d in self.hosts.values()]

    # internals
    def _adopt_or_start(self, name: str, rec: DriverRecord | None) -> DriverHostProcess:
        if rec is not None and alive(rec.pid):
            drv = DriverHostProcess(name=name, port=rec.port, pid=rec.pid, restarts=rec.restarts)
            try:
                reply = call(rec.port, "hello", timeout=PING_TIMEOUT_S)
                if reply.success and reply.data.get("driver") == name:
                    drv.state = "running"
                    log.info("adopted running driver %s (pid %s, port %s)", name, rec.pid, rec.port)
                    return drv
            except Unreachable:
                pass
            kill(rec.pid)
        drv = DriverHostProcess(name=name, port=free_port(), restarts=rec.restarts if rec else 0)
        self._spawn(drv)
        return drv

    def _spawn(self, drv: DriverHostProcess) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        try:
            host = self.catalog.host_command(
                drv.name,
                drv.port,
                self.settings.get(drv.name, {}),
                self.logdir / f"driver-{drv.name}.log",
            )
        except DriverNotFound as exc:
            drv.state, drv.error = "failed", str(exc)
            drv.next_start = time.monotonic() + self._backoff(drv)
            log.error("driver %s cannot start: %s", drv.name, exc)
            return
        drv.proc = subprocess.Popen(
            host.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.logdir / f"driver-{drv.name}.err", "ab"),
            start_new_session=True,
            env=host.env,
            cwd=host.cwd,
        )
        drv.pid = drv.proc.pid
        drv.state = "starting"
        drv.missed_pings = 0
        self.store.save_driver(DriverRecord(drv.name, drv.port, drv.pid, drv.restarts))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if drv.proc.poll() is not None:
                drv.state, drv.error = "failed", f"exited with code {drv.proc.returncode}"
                drv.next_start = time.monotonic() + self._backoff(drv)
                log.error("driver %s failed to start: %s", drv.name, drv.error)
                return
            try:
                if call(drv.port, "hello", timeout=1.0).success:
                    drv.state = "running"
                    self.register(drv)
                    log.info("driver %s running (pid %s, port %s)", drv.name, drv.pid, drv.port)
                    return
            except Unreachable:
                time.sleep(0.05)
        drv.state, drv.error = "failed", "did not answer within 30 s"
        kill(drv.pid)

    def register(self, drv: DriverHostProcess) -> None:
        comps = [
            {
                "address": c.address,
                "channel": c.channel,
                **({"options": c.options} if c.options else {}),
            }
            for c in drv.components.values()
        ]
        reply = self._call(drv, "register", components=comps)
        if reply is not None and reply.success:
            drv.specs = _interned({k: v["spec"] for k, v in reply.data.items()})
            drv.error = None
        elif reply is not None:
            drv.error = reply.msg
            log.error("driver %s refused its components: %s", drv.name, reply.msg)

    def _call(self, drv: DriverHostProcess, cmd: str, **args: Any) -> Reply | None:
        try:
            return call(drv.port, cmd, timeout=10.0, **args)
        except Unreachable as exc:
            drv.error = str(exc)
            return None

    def _backoff(self, drv: DriverHostProcess) -> float:
        return BACKOFF_S[min(drv.restarts, len(BACKOFF_S) - 1)]

    def _stop_driver(self, drv: DriverHostProcess) -> None:
        if drv.state == "running":
            try:
                call(drv.port, "shutdown", timeout=2.0)
            except Unreachable:
                pass
        deadline = time.monotonic() + 3
        while alive(drv.pid) and time.monotonic() < deadline:
            if drv.proc is not None:
                drv.proc.poll()
            time.sleep(0.05)
        if alive(drv.pid):
            kill(drv.pid)
        drv.state = "stopped"

    def _restart(self, drv: DriverHostProcess, why: str) -> None:
        log.error("driver %s %s; restarting (restart %d)", drv.name, why, drv.restarts + 1)
        kill(drv.pid)
        drv.restarts += 1
        drv.error = why
        drv.state = "restarting"
        drv.next_start = time.monotonic() + self._backoff(drv)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            with self.lock:
                for drv in list(self.hosts.values()):
                    self._check(drv)

    def _check(self, drv: DriverHostProcess) -> None:
        if drv.state in ("restarting", "failed"):
            if time.monotonic() >= drv.next_start:
                drv.port = free_port()
                self._spawn(drv)
            return
        if drv.state != "running":
            return
        if drv.proc is not None and drv.proc.poll() is not None:
            self._restart(drv, f"exited with code {drv.proc.returncode}")
            return
        if not alive(drv.pid):
            self._restart(drv, "process is gone")
            return
        try:
            ok = call(drv.port, "hello", timeout=PING_TIMEOUT_S).success
        except Unreachable:
            ok = False
        drv.missed_pings = 0 if ok else drv.missed_pings + 1
        if drv.missed_pings >= HANG_PINGS:
            self._restart(drv, f"did not answer for {HANG_PINGS * PING_TIMEOUT_S:.0f} s (hung)")


def _interned(descriptions: dict[str, dict[str, Any]]) -> dict[str, ComponentSpec]:
    """Specs by component key; identical ones are one object (a 160-channel device has
    one spec), so that checks can skip repeats cheaply."""
    seen: dict[str, ComponentSpec] = {}
    out = {}
    for key, desc in descriptions.items():
        text = json.dumps(desc, sort_keys=True)
        if text not in seen:
            seen[text] = ComponentSpec.from_description(desc)
        out[key] = seen[text]
    return out
