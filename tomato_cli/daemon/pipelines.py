"""Pipelines: loading and ejecting samples, the ready flag, and following the devices file."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tomato_cli.daemon.driver_supervisor import DriverSupervisor
from tomato_cli.daemon.state import PipelineState, StateStore
from tomato_cli.models import Component, Settings, expand_pipelines, load_devices
from tomato_cli.rpc import RpcError

if TYPE_CHECKING:
    from drivers.origins import DriverCatalog


def driver_catalog(settings: Settings) -> DriverCatalog:
    """The installed drivers (built-in, entry point, legacy venv) for these settings."""
    from drivers.origins import DriverCatalog

    return DriverCatalog.from_settings(settings)


class Pipelines:
    """The daemon's pipelines: their samples and ready flags, kept in the state store."""

    def __init__(
        self,
        store: StateStore,
        lock: threading.RLock,
        supervisor: DriverSupervisor,
        on_change: Callable[[], None],
    ) -> None:
        self.store = store
        self.lock = lock  # the daemon's decision lock
        self.supervisor = supervisor
        self.on_change = on_change  # the gate and the Prefect sync look again
        self.devices: list[dict[str, Any]] = []  # the devices file's devices, as applied

    def get(self, name: str) -> PipelineState:
        pip = self.store.pipelines().get(name)
        if pip is None:
            raise RpcError(f"pipeline {name!r} does not exist")
        return pip

    def load(self, name: str, sampleid: str) -> PipelineState:
        with self.lock:
            pip = self.get(name)
            if pip.jobid is not None:
                raise RpcError(f"pipeline {name!r} is running job {pip.jobid}")
            if pip.sampleid is not None:
                raise RpcError(
                    f"pipeline {name!r} already holds sample {pip.sampleid!r}; eject it first"
                )
            pip.sampleid = sampleid
            self.store.save_pipeline(pip)
        self.on_change()
        return pip

    def eject(self, name: str) -> PipelineState:
        with self.lock:
            pip = self.get(name)
            if pip.jobid is not None:
                raise RpcError(f"pipeline {name!r} is running job {pip.jobid}")
            pip.sampleid, pip.ready = None, False
            self.store.save_pipeline(pip)
        self.on_change()
        return pip

    def ready(self, name: str) -> PipelineState:
        with self.lock:
            pip = self.get(name)
            pip.ready = True
            self.store.save_pipeline(pip)
        self.on_change()
        return pip

    def unready(self, name: str) -> PipelineState:
        """Mark a ready pipeline not ready, its sample kept: a running job goes on, and no
        new job starts there until it is ready again."""
        with self.lock:
            pip = self.get(name)
            if not pip.ready:
                raise RpcError(f"pipeline {name!r} is not ready")
            pip.ready = False
            self.store.save_pipeline(pip)
        self.on_change()
        return pip

    def apply_devices(self, settings: Settings) -> dict[str, list[str]]:
        """Make pipelines and driver hosts match the devices file.

        Pipelines or components used by a running job are kept as they are. The decision
        lock is held only while the stored pipelines change, not while driver hosts start
        and register (which can take many seconds).
        """
        catalog = driver_catalog(settings)
        cfg = load_devices(Path(settings.devices.config), known_drivers=catalog.known())
        defs = {p.name: p for p in expand_pipelines(cfg)}
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "kept": []}
        with self.lock:
            current = self.store.pipelines()
            busy = {name for name, p in current.items() if p.jobid is not None}
            with self.store.transaction() as db:
                for name in current:
                    if name not in defs:
                        if name in busy:
                            changes["kept"].append(name)
                        else:
                            self.store.delete_pipeline(name, db)
                            changes["removed"].append(name)
                for name, pdef in defs.items():
                    old = current.get(name)
                    if old is None:
                        self.store.save_pipeline(PipelineState(name, pdef.components), db)
                        changes["added"].append(name)
                    elif old.components != pdef.components:
                        if name in busy:
                            changes["kept"].append(name)
                            continue
                        old.components = pdef.components
                        self.store.save_pipeline(old, db)
                        changes["changed"].append(name)
            components = {c.name: c for p in self.store.pipelines().values() for c in p.components}
            self.devices = [d.model_dump() for d in cfg.devices]
        self.supervisor.settings = settings.drivers
        self.supervisor.catalog = catalog
        self.supervisor.configure(list(components.values()))
        self.on_change()
        return changes

    def component(self, name: str) -> tuple[Component, PipelineState]:
        """A component by name, ``address,channel`` key or ``pipeline.role``."""
        for pip in self.store.pipelines().values():
            for comp in pip.components:
                if name in (comp.name, comp.key, f"{pip.name}.{comp.role}"):
                    return comp, pip
        raise RpcError(f"component {name!r} does not exist")

    def busy_with(self, comp: Component) -> int | None:
        """The id of the running job that uses ``comp`` (in any pipeline), or None."""
        for pip in self.store.pipelines().values():
            if pip.jobid is not None and comp in pip.components:
                return pip.jobid
        return None

    def public(self, pip: PipelineState) -> dict[str, Any]:
        """A pipeline as shown to users, with each component's capabilities."""
        out = pip.public()
        for comp, shown in zip(pip.components, out["components"], strict=True):
            shown["capabilities"] = self.supervisor.capabilities_of(comp)
        return out
