"""Which drivers exist, where each comes from, and the command that starts its host.

A driver comes from one of three origins:

- ``builtin``: shipped with tomato-prefect (``example_counter``, ``psutil``, ``scpi``);
- ``plugin``: another package's entry point in the ``tomato.drivers`` group;
- ``legacy``: a tomato 2.x driver package (``tomato-<name>``) in the legacy driver
  environment, run unchanged by :mod:`drivers.legacy.host`.

A devices file names a driver plainly (``driver: psutil``) or with its origin
(``driver: psutil@legacy``). A plain name means the first origin that has it, in the order
above, so installing a legacy package never changes what an existing devices file runs.

The daemon asks this module two things: which names a devices file may use
(:meth:`DriverCatalog.known`) and how to start the host of one (:meth:`DriverCatalog.host_command`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from drivers.legacy.venv import LegacyVenv
from drivers.registry import BUILTIN, PLUGIN, DriverNotFound, entry_points_by_origin, split_name

LEGACY = "legacy"
ORIGINS = (BUILTIN, PLUGIN, LEGACY)
ORIGIN_TITLES = {BUILTIN: "built-in", PLUGIN: "entry point", LEGACY: "legacy venv"}


@dataclass(frozen=True)
class DriverSource:
    """One installed driver: its name, origin, package and version."""

    name: str
    origin: str
    package: str
    version: str | None
    target: str  # the entry point ("module:Class") or the tomato 2.x module

    @property
    def qualified(self) -> str:
        return f"{self.name}@{self.origin}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": ORIGIN_TITLES[self.origin],
            "package": self.package,
            "version": self.version,
        }


@dataclass(frozen=True)
class HostCommand:
    """How to start a driver host: the command line and its environment."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None


class KnownDrivers(frozenset):
    """The driver names a devices file may use: each plain name, and any ``name@origin``.

    Iterating gives the plain names and, where a plain name has several origins, the
    qualified ones too (that is what error messages list).
    """

    qualified: frozenset[str]

    def __new__(cls, sources: list[DriverSource]) -> KnownDrivers:
        plain = {s.name for s in sources}
        shown = set(plain) | {
            s.qualified for s in sources if sum(o.name == s.name for o in sources) > 1
        }
        self = super().__new__(cls, shown)
        self.qualified = frozenset(s.qualified for s in sources)
        return self

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or name in self.qualified


class DriverCatalog:
    """The drivers installed for one daemon (entry points, and its legacy environment)."""

    def __init__(self, legacy_venv: Path | None):
        self.legacy = LegacyVenv(legacy_venv) if legacy_venv is not None else None

    @classmethod
    def from_settings(cls, settings: Any) -> DriverCatalog:
        """The catalog for a :class:`tomato_cli.models.Settings`."""
        return cls(settings.legacy_venv())

    @cached_property
    def sources(self) -> list[DriverSource]:
        """Every installed driver, in order of precedence (built-in, plugin, legacy)."""
        found: list[DriverSource] = []
        for origin, eps in entry_points_by_origin().items():
            for name, ep in sorted(eps.items()):
                dist = ep.dist
                found.append(
                    DriverSource(
                        name,
                        origin,
                        dist.metadata["Name"] if dist else "?",
                        dist.version if dist else None,
                        ep.value,
                    )
                )
        if self.legacy is not None:
            for name, pkg in sorted(self.legacy.packages().items()):
                found.append(DriverSource(name, LEGACY, pkg.package, pkg.version, pkg.module))
        return found

    def __iter__(self) -> Iterator[DriverSource]:
        return iter(self.sources)

    def known(self) -> KnownDrivers:
        return KnownDrivers(self.sources)

    def resolve(self, name: str) -> DriverSource:
        """The driver a devices file means by ``name``; raise :class:`DriverNotFound`."""
        base, origin = split_name(name)
        if origin is not None and origin not in ORIGINS:
            raise DriverNotFound(
                f"driver {name!r}: unknown origin {origin!r}; use one of "
                + ", ".join(f"{base}@{o}" for o in ORIGINS)
            )
        for source in self.sources:
            if source.name == base and origin in (None, source.origin):
                return source
        if origin == LEGACY:
            where = self.legacy.path if self.legacy else "(none configured)"
            raise DriverNotFound(
                f"driver {name!r}: no tomato 2.x package for {base!r} in the legacy driver "
                f"environment {where}; install it with `tomato driver install tomato-{base}`"
            )
        known = ", ".join(sorted(self.known())) or "none"
        raise DriverNotFound(f"unknown driver {name!r}; installed drivers: {known}")

    def about(self, name: str) -> dict[str, Any]:
        """Origin, package and version of driver ``name`` (None where it is not installed)."""
        try:
            source = self.resolve(name)
        except DriverNotFound:
            return {"origin": None, "package": None, "version": None}
        about = source.describe()
        del about["name"]
        return about

    def host_command(
        self, name: str, port: int, settings: dict[str, Any], logfile: Path
    ) -> HostCommand:
        """The command that starts the host of driver ``name`` (as a devices file names it)."""
        source = self.resolve(name)
        args = [
            "--driver",
            name,
            "--port",
            str(port),
            "--settings",
            json.dumps(settings),
            "--logfile",
            str(logfile),
        ]
        if source.origin != LEGACY:
            # -P: never import a `drivers` package from the current folder
            argv = [sys.executable, "-P", "-m", "drivers.host", *args]
            return HostCommand(argv, dict(os.environ))
        assert self.legacy is not None
        code = self.legacy.code_path()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONPATH"] = str(code)
        argv = [str(self.legacy.python), "-P", "-m", "drivers.legacy.host"]
        argv += ["--module", source.target]
        return HostCommand(argv + args, env, cwd=code)
