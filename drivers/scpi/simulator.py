"""A loopback TCP SCPI instrument that answers according to an instrument description.

Reach it with the pyvisa-py backend at ``TCPIP0::127.0.0.1::<port>::SOCKET``. Settable
attrs are stored per channel (out-of-range values are refused through the error queue,
like a real instrument); read-only attrs follow the description's ``sim`` rules. Faults
can be injected for tests and demos: ``fault = "timeout"`` leaves queries unanswered,
``fault = "garble"`` answers them with noise, and :meth:`stop` makes the instrument
vanish (open connections are cut) until :meth:`start` brings it back on the same port.

Run ``python -m drivers.scpi.simulator potentiostat --port 5025`` to try the driver
without hardware.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import socket
import socketserver
import threading
import time
from collections import deque
from typing import Any

from drivers.base import AttrError
from drivers.scpi.description import AttrSpec, Description, load_description
from tomato_cli.rpc import LOOPBACK

GARBLE = "\x15#?!\x7f@garbled"
NO_ERROR = '+0,"No error"'
OUT_OF_RANGE = '-222,"Data out of range"'
UNDEFINED = '-113,"Undefined header"'


def _pattern(template: str, token: str) -> re.Pattern[str]:
    """A regex matching ``template`` with its ``{ch}`` and ``{value}`` placeholders."""
    channel = re.escape(token).replace(r"\{channel\}", r"(?P<channel>[^\s,;()]+)")
    text = re.escape(template).replace(r"\{ch\}", channel)
    return re.compile(text.replace(r"\{value\}", r"(?P<value>.+?)") + r"\s*", re.IGNORECASE)


class InstrumentSimulator:
    """One simulated instrument on ``127.0.0.1:port`` (port 0: any free port)."""

    def __init__(
        self,
        description: Description | str,
        port: int = 0,
        limits: dict[str, tuple[float | None, float | None]] | None = None,
        seed: int | None = None,
    ):
        self.description = (
            load_description(description) if isinstance(description, str) else description
        )
        self.port = port
        self.limits = dict(limits or {})
        self.fault: str | None = None
        self.errors: deque[str] = deque(maxlen=32)
        self.commands = 0
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        self._state: dict[str, dict[str, Any]] = {}
        self._lagged: dict[tuple[str, str], tuple[float, float]] = {}
        self._selected = (self.description.channels.ids or ["1"])[0]
        self._server: socketserver.ThreadingTCPServer | None = None
        self._clients: set[socket.socket] = set()
        token = self.description.channels.token
        self._queries = {
            n: _pattern(s.query, token) for n, s in self.description.attrs.items() if s.query
        }
        self._sets = {n: _pattern(s.set, token) for n, s in self.description.attrs.items() if s.set}
        select = self.description.channels.select
        self._select = _pattern(select, token) if select else None

    @property
    def address(self) -> str:
        """The VISA resource name of this instrument."""
        return f"TCPIP0::{LOOPBACK}::{self.port}::SOCKET"

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> int:
        """Listen (again) on the port; return it."""
        sim = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                sim._clients.add(self.connection)
                try:
                    for raw in self.rfile:
                        reply = sim.handle(raw.decode("latin-1"))
                        if reply is not None:
                            self.wfile.write((reply + "\n").encode("latin-1"))
                except OSError:
                    pass
                finally:
                    sim._clients.discard(self.connection)

            def finish(self) -> None:
                try:
                    super().finish()
                except OSError:
                    pass  # stop() cut the connection: nothing left to flush

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server((LOOPBACK, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="scpi-sim", daemon=True).start()
        return self.port

    def stop(self) -> None:
        """Vanish: stop listening and cut every open connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self._clients):
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        self._clients.clear()

    # -- the instrument ---------------------------------------------------------------
    def handle(self, line: str) -> str | None:
        """The reply to one command line, or None if it has none."""
        command = line.strip()
        if not command:
            return None
        with self._lock:
            self.commands += 1
            is_query = "?" in command
            if is_query and self.fault == "timeout":
                return None
            reply = self._answer(command)
            if reply is not None and self.fault == "garble":
                return GARBLE
            return reply

    def value(self, channel: str, name: str) -> Any:
        """The current value of ``name`` on ``channel`` (measured attrs are simulated)."""
        spec = self.description.attrs[name]
        state = self._channel(channel)
        if spec.set is not None:
            return state[name]
        return self._simulate(channel, name, spec)

    def _answer(self, command: str) -> str | None:
        desc = self.description
        if desc.identify and command.upper() == desc.identify.upper():
            return f"tomato-sim,{desc.name},0,1.0"
        if desc.error_query and command.upper() == desc.error_query.upper():
            return self.errors.popleft() if self.errors else NO_ERROR
        if self._select is not None and (m := self._select.fullmatch(command)):
            self._selected = m.group("channel")
            return None
        for name, pattern in self._queries.items():
            if m := pattern.fullmatch(command):
                channel = m.groupdict().get("channel") or self._selected
                return _reply(desc.attrs[name], self.value(channel, name))
        for name, pattern in self._sets.items():
            if m := pattern.fullmatch(command):
                self._set(m.groupdict().get("channel") or self._selected, name, m.group("value"))
                return None
        self.errors.append(UNDEFINED)
        return None

    def _set(self, channel: str, name: str, text: str) -> None:
        spec = self.description.attrs[name]
        try:
            value = _read(spec, text)
        except (ValueError, AttrError):
            self.errors.append(OUT_OF_RANGE)
            return
        low, high = self.limits.get(name, (spec.minimum, spec.maximum))
        if isinstance(value, float | int) and not isinstance(value, bool):
            if (low is not None and value < low) or (high is not None and value > high):
                self.errors.append(OUT_OF_RANGE)
                return
        self._channel(channel)[name] = value

    def _channel(self, channel: str) -> dict[str, Any]:
        if channel not in self._state:
            state: dict[str, Any] = {}
            for name, spec in self.description.attrs.items():
                if spec.set is not None:
                    state[name] = _initial(spec)
            self._state[channel] = state
        return self._state[channel]

    def _simulate(self, channel: str, name: str, spec: AttrSpec) -> float:
        state = self._channel(channel)
        rule = next(
            (
                r
                for r in spec.sim
                if all(
                    state.get(k) == _coerce(self.description.attrs[k], v) for k, v in r.when.items()
                )
            ),
            None,
        )
        if rule is None:
            return 0.0
        target = rule.offset + (rule.gain * float(state[rule.follows]) if rule.follows else 0.0)
        now = time.monotonic()
        if rule.tau > 0:
            previous, then = self._lagged.get((channel, name), (target, now))
            target = target + (previous - target) * math.exp(-(now - then) / rule.tau)
        self._lagged[(channel, name)] = (target, now)
        return target + (self._random.gauss(0.0, rule.noise) if rule.noise else 0.0)


def _coerce(spec: AttrSpec, value: Any) -> Any:
    return spec.attr().coerce("when", value)


def _initial(spec: AttrSpec) -> Any:
    if spec.default is not None:
        return _coerce(spec, spec.default)
    if spec.options:
        return spec.options[0]
    return {"float": 0.0, "int": 0, "bool": False, "str": ""}[spec.type]


def _read(spec: AttrSpec, text: str) -> Any:
    text = text.strip().strip("\"'")
    if spec.type == "bool":
        if text.lower() in (spec.true.lower(), "on", "1"):
            return True
        if text.lower() in (spec.false.lower(), "off", "0"):
            return False
        raise ValueError(text)
    if spec.type in ("float", "int"):
        number = float(text)
        return _coerce(spec.model_copy(update={"minimum": None, "maximum": None}), number)
    return _coerce(spec, text)


def _reply(spec: AttrSpec, value: Any) -> str:
    if spec.type == "bool":
        return "1" if value else "0"
    if spec.type == "float":
        return f"{float(value):.6e}"
    return str(value)


def main(argv: list[str] | None = None) -> None:
    """Serve one simulated instrument until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m drivers.scpi.simulator", description=__doc__)
    parser.add_argument("instrument", help="description name or path")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sim = InstrumentSimulator(args.instrument, port=args.port)
    sim.start()
    print(f"{sim.description.name} listening: {sim.address}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
