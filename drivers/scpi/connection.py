"""VISA connections: one per instrument address, shared by its channels, reopened on failure.

A failed query or write (timeout, lost connection) closes the session and marks the
instrument unreachable; the next use after ``reconnect_interval`` seconds opens it again,
and a successful reopen is logged. Replies are decoded as latin-1 so that garbage on the
line reaches the parser (and its clear error) instead of a decoding error.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tomato_cli.rpc import RpcError
from tomato_cli.units import to_seconds

log = logging.getLogger("drivers.scpi")

BUILTIN_SIM_FILE = Path(__file__).resolve().parent.parent / "instruments" / "sim" / "lab.yaml"


class InstrumentError(RpcError):
    """An instrument did not answer, answered nonsense, or refused a command."""


@dataclass(frozen=True)
class VisaSettings:
    """How to reach instruments: from ``[drivers.scpi]``, optionally per device ``options``."""

    backend: str = "@py"  # "@py" (pyvisa-py), "@sim" (pyvisa-sim), "" or a VISA library path
    sim_file: str = str(BUILTIN_SIM_FILE)  # pyvisa-sim definitions used with "@sim"
    timeout: float = 2.0  # seconds (a number, or a string such as "500 ms")
    read_termination: str = "\n"
    write_termination: str = "\n"
    reconnect_interval: float = 1.0  # seconds between attempts to reopen a lost instrument

    @classmethod
    def from_mapping(cls, *layers: dict[str, Any]) -> VisaSettings:
        """Settings from mappings (later ones win); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update({k: v for k, v in layer.items() if k in known})
        for key in ("timeout", "reconnect_interval"):
            if key in merged:
                try:
                    merged[key] = to_seconds(merged[key])
                except ValueError as exc:
                    raise ValueError(f"scpi setting {key!r}: {exc}") from None
                if merged[key] <= 0:
                    raise ValueError(f"scpi setting {key!r} must be positive")
        for key in ("backend", "sim_file", "read_termination", "write_termination"):
            if key in merged and not isinstance(merged[key], str):
                raise ValueError(f"scpi setting {key!r} must be a string")
        return cls(**merged)

    @property
    def visa_library(self) -> str:
        """The argument for ``pyvisa.ResourceManager``."""
        if self.backend == "@sim":
            return f"{self.sim_file}@sim"
        return self.backend


class ResourceManagers:
    """One ``pyvisa.ResourceManager`` per VISA library, made on first use."""

    def __init__(self) -> None:
        self._managers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, library: str) -> Any:
        with self._lock:
            if library not in self._managers:
                import pyvisa

                try:
                    self._managers[library] = pyvisa.ResourceManager(library)
                except Exception as exc:
                    raise InstrumentError(
                        f"cannot load VISA library {library!r}: {type(exc).__name__}: {exc}"
                    ) from None
            return self._managers[library]

    def close(self) -> None:
        with self._lock:
            for manager in self._managers.values():
                try:
                    manager.close()
                except Exception:
                    pass
            self._managers.clear()


def _is_timeout(exc: BaseException) -> bool:
    from pyvisa import constants, errors

    return (
        isinstance(exc, errors.VisaIOError) and exc.error_code == constants.StatusCode.error_timeout
    )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Connection:
    """The VISA session of one instrument; ``lock`` serialises its channels' commands."""

    def __init__(self, address: str, settings: VisaSettings, managers: ResourceManagers):
        self.address = address
        self.settings = settings
        self.managers = managers
        self.lock = threading.RLock()
        self.error: str | None = None  # why the instrument is unreachable, if it is
        self._resource: Any = None
        self._next_try = 0.0

    def query(self, command: str) -> str:
        """Send ``command`` and return the reply without its termination."""
        with self.lock:
            resource = self._open()
            try:
                reply = str(resource.query(command))
            except Exception as exc:
                raise self._fail(command, exc) from None
            self._confirm()
            return reply

    def write(self, command: str) -> None:
        """Send ``command``, which has no reply."""
        with self.lock:
            resource = self._open()
            try:
                resource.write(command)
            except Exception as exc:
                raise self._fail(command, exc) from None

    def close(self) -> None:
        with self.lock:
            self._drop()

    def _open(self) -> Any:
        if self._resource is not None:
            return self._resource
        now = time.monotonic()
        if self.error is not None and now < self._next_try:
            raise InstrumentError(
                f"instrument {self.address} is unreachable ({self.error}); "
                f"retrying every {self.settings.reconnect_interval:g} s"
            )
        manager = self.managers.get(self.settings.visa_library)
        try:
            resource = manager.open_resource(
                self.address,
                timeout=self.settings.timeout * 1000,
                read_termination=self.settings.read_termination,
                write_termination=self.settings.write_termination,
            )
            resource.encoding = "latin-1"
        except Exception as exc:
            self._next_try = now + self.settings.reconnect_interval
            first = self.error is None
            self.error = f"cannot connect: {_reason(exc)}"
            if first:
                log.error("instrument %s: %s", self.address, self.error)
            raise InstrumentError(f"instrument {self.address}: {self.error}") from None
        if self.error is None:
            log.info("instrument %s: connected", self.address)
        self._resource = resource
        return resource

    def _confirm(self) -> None:
        """A reply came: the instrument is back if it was lost."""
        if self.error is not None:
            log.warning("instrument %s: reconnected (was: %s)", self.address, self.error)
            self.error = None

    def _fail(self, command: str, exc: BaseException) -> InstrumentError:
        """Close the session after a failed exchange and say what happened."""
        was_healthy = self.error is None
        if _is_timeout(exc):
            timeout_ms = self.settings.timeout * 1000
            self.error = f"no reply to {command!r} within {timeout_ms:g} ms (timeout)"
        else:
            self.error = f"connection lost during {command!r}: {_reason(exc)}"
        if was_healthy:
            log.error("instrument %s: %s; closing the session", self.address, self.error)
        self._drop()
        # after the first failure the next use may reopen at once; then wait between tries
        delay = 0.0 if was_healthy else self.settings.reconnect_interval
        self._next_try = time.monotonic() + delay
        return InstrumentError(f"instrument {self.address}: {self.error}")

    def _drop(self) -> None:
        if self._resource is not None:
            try:
                self._resource.close()
            except Exception:
                pass
        self._resource = None
