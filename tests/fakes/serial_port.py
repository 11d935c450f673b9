"""Fake instruments behind a pseudo-terminal: the driver opens a real serial port path.

A :class:`PtyInstrument` owns a pty pair; drivers open :attr:`PtyInstrument.port` (the
``/dev/pts/N`` path) with pyserial as they would a USB adapter, and a thread answers what
they write with :meth:`PtyInstrument.answer`.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import time
import tty


class PtyInstrument:
    """Answers requests written to a pseudo-terminal until :meth:`close`."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self.buffer = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"fake-{self.port}", daemon=True)

    def start(self) -> PtyInstrument:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self._master)
        os.close(self._slave)

    def answer(self, data: bytes) -> tuple[bytes, int]:
        """The reply to the bytes received so far, and how many of them it used (0: wait)."""
        raise NotImplementedError

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                self.buffer += os.read(self._master, 4096)
            except OSError:
                time.sleep(0.05)
                continue
            while self.buffer:
                reply, used = self.answer(self.buffer)
                if not used:
                    break
                self.buffer = self.buffer[used:]
                if reply:
                    os.write(self._master, reply)


def modbus_crc(data: bytes) -> bytes:
    """The Modbus RTU CRC-16 of ``data``, as appended to a frame."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def float_registers(value: float) -> list[int]:
    """A float as two registers in Modbus "little swap" order (CDAB), as JUMO sends it."""
    raw = struct.pack(">f", value)
    raw = raw[2:4] + raw[0:2]
    return list(struct.unpack(">HH", raw))


def registers_float(regs: list[int]) -> float:
    raw = struct.pack(">HH", *regs)
    return struct.unpack(">f", raw[2:4] + raw[0:2])[0]


class FakeJumo(PtyInstrument):
    """A JUMO Quantrol controller: Modbus RTU, function codes 3 (read) and 16 (write)."""

    SETPOINT, TEMPERATURE, EEPROM_SETPOINT, DUTY, HEATER = 0x3200, 0x31, 0x35, 0x37, 0x25

    def __init__(self, slave: int = 1, temperature: float = 25.0):
        super().__init__()
        self.slave = slave
        self.registers: dict[int, int] = {}
        for address, value in (
            (self.SETPOINT, temperature),
            (self.TEMPERATURE, temperature),
            (self.EEPROM_SETPOINT, temperature),
            (self.DUTY, 0.0),
        ):
            self._set_float(address, value)
        self.registers[self.HEATER] = 0x8010
        self.writes: list[tuple[float, int, list[int]]] = []  # (time, address, registers)
        self.silent = False  # True: answer nothing (a cable pulled out)

    def _set_float(self, address: int, value: float) -> None:
        high, low = float_registers(value)
        self.registers[address], self.registers[address + 1] = high, low

    def setpoints(self) -> list[tuple[float, float]]:
        """Every setpoint written so far: (time, degC)."""
        return [(t, registers_float(r)) for t, a, r in self.writes if a == self.SETPOINT]

    def answer(self, data: bytes) -> tuple[bytes, int]:
        if len(data) < 8:
            return b"", 0
        slave, code = data[0], data[1]
        if code == 3:
            frame = data[:8]
        elif code == 16:
            if len(data) < 7 or len(data) < 9 + data[6]:
                return b"", 0
            frame = data[: 9 + data[6]]
        else:
            return b"", len(data)  # garbage: drop it
        if modbus_crc(frame[:-2]) != frame[-2:]:
            return b"", len(data)
        if slave != self.slave or self.silent:
            return b"", len(frame)
        address, count = struct.unpack(">HH", frame[2:6])
        if code == 3:
            values = [self.registers.get(address + i, 0) for i in range(count)]
            body = bytes([slave, 3, 2 * count]) + struct.pack(f">{count}H", *values)
        else:
            values = list(struct.unpack(f">{count}H", frame[7 : 7 + 2 * count]))
            for i, value in enumerate(values):
                self.registers[address + i] = value
            self.writes.append((time.time(), address, values))
            if address == self.SETPOINT and registers_float(values) < 2000:
                self._set_float(self.TEMPERATURE, registers_float(values))  # an ideal furnace
            body = frame[:6]
        return body + modbus_crc(body), len(frame)


class FakeOmega(PtyInstrument):
    """An Omega pressure gauge: ASCII commands, each answered with lines and a '>' prompt."""

    def __init__(self, pressure: float = 1.013):
        super().__init__()
        self.pressure = pressure

    def answer(self, data: bytes) -> tuple[bytes, int]:
        end = data.find(b"\r\n")
        if end < 0:
            return b"", 0
        command = data[:end].decode(errors="replace").strip()
        lines = {
            "SNR": ["SNR=FAKE-0042"],
            "ENQ": ["PX409", "RANGE", "0.000 to 10.000 bar G"],
            "P": [f"{self.pressure:.3f} bar G"],
        }.get(command, ["?"])
        return ("".join(line + "\r\n" for line in lines) + ">").encode(), end + 2


class FakeAlicat(PtyInstrument):
    """An Alicat mass flow controller (an MCS model, unit id ``A``): ASCII commands ending in
    CR, each answered with one CR-terminated line; a data frame holds pressure, temperature,
    volumetric flow, mass flow, setpoint and gas, and ``HLD`` while the valve is held shut."""

    def __init__(self, unit: str = "A", capacity: float = 100.0):
        super().__init__()
        self.unit, self.capacity = unit, capacity
        self.setpoint, self.hold = 0.0, False
        self.commands: list[str] = []

    def frame(self) -> str:
        flow = 0.0 if self.hold else self.setpoint
        words = [self.unit, "+014.70", "+025.00", f"{flow:+08.3f}", f"{flow:+08.3f}"]
        words += [f"{self.setpoint:+08.3f}", "Air"] + (["HLD"] if self.hold else [])
        return " ".join(words)

    def answer(self, data: bytes) -> tuple[bytes, int]:
        end = data.find(b"\r")
        if end < 0:
            return b"", 0
        command = data[:end].decode(errors="replace").strip()
        self.commands.append(command)
        if not command.startswith(self.unit):
            return b"", end + 1  # another unit on the bus
        rest = command[len(self.unit) :]
        if rest == "??M*":
            line = f"{self.unit} M04 Model Number MCS-{self.capacity:.0f}SCCM-D"
        elif rest == "DCU 37":
            line = f"{self.unit} 12 SCCM"
        elif rest == "FPF 37":
            line = f"{self.unit} {self.capacity:.1f} 12 SCCM"
        elif rest.startswith("S ") and _is_number(rest[2:]):
            self.setpoint = float(rest[2:])
            line = self.frame()
        elif rest in ("HC", "C"):
            self.hold = rest == "HC"
            line = self.frame()
        elif rest == "":
            line = self.frame()
        else:
            line = "?"
        return (line + "\r").encode(), end + 1


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class FakeBronkhorst(PtyInstrument):
    """A Bronkhorst mass flow controller speaking binary ProPar (38400 baud): frames are
    ``DLE STX seq node len data... DLE ETX`` with every DLE inside doubled. It answers
    parameter requests (command 4) with a send-parameter message (command 2) and acknowledges
    parameter writes (command 1) with a status message (command 0). Parameters are keyed by
    (process, parameter) number; a float travels as its big-endian IEEE bytes."""

    DLE, STX, ETX = 0x10, 0x02, 0x03
    INT8, INT16, INT32, STRING = 0x00, 0x20, 0x40, 0x60
    CONTROL_MODE, SENSOR_TYPE, CAPACITY_MAX, CAPACITY_UNIT = (1, 4), (1, 14), (1, 13), (1, 31)
    MEASURE, SETPOINT, TEMPERATURE, CAPACITY_MIN = (33, 0), (33, 3), (33, 7), (33, 22)

    def __init__(self, node: int = 3, capacity: float = 50.0, unit: str = "mln/min"):
        super().__init__()
        self.node = node
        self.values: dict[tuple[int, int], float | int | str] = {
            self.CONTROL_MODE: 0,  # bus/RS232
            self.SENSOR_TYPE: 3,  # gas volume
            self.CAPACITY_MAX: capacity,
            self.CAPACITY_UNIT: unit,
            self.MEASURE: 0.0,
            self.SETPOINT: 0.0,
            self.TEMPERATURE: 21.5,
            self.CAPACITY_MIN: 0.0,
        }
        self.writes: list[tuple[tuple[int, int], float | int | str]] = []

    def answer(self, data: bytes) -> tuple[bytes, int]:
        start = data.find(bytes([self.DLE, self.STX]))
        if start < 0:
            return b"", len(data)  # line noise: drop it
        body, i = bytearray(), start + 2
        while i + 1 < len(data):
            if data[i] == self.DLE:
                if data[i + 1] == self.ETX:
                    return self._reply(bytes(body)), i + 2
                i += 1  # a doubled DLE stands for one
            body.append(data[i])
            i += 1
        return b"", 0  # not complete yet

    def _reply(self, body: bytes) -> bytes:
        if len(body) < 4:
            return b""
        seq, node, size, message = body[0], body[1], body[2], body[3 : 3 + body[2]]
        if node != self.node or len(message) != size:
            return b""  # another instrument on the bus, or a damaged frame
        if message[0] == 4:
            return self._frame(seq, bytes([2]) + self._read(message[1:]))
        if message[0] == 1:
            self._write(message[1:])
            return self._frame(seq, bytes([0, 0, 0]))  # status OK
        return self._frame(seq, bytes([0, 2, 0]))  # unknown command

    def _read(self, request: bytes) -> bytes:
        """Requests are (proc index, parm index | type, proc nr, parm nr | type[, size]);
        bit 7 of an index chains the next parameter, which here is always sent unchained."""
        out, i, proc = bytearray(), 0, 0
        chained = False
        while i < len(request):
            if not chained:
                proc = request[i] & 0x7F
                i += 1
            parm, kind = request[i] & 0x1F, request[i] & 0x60
            chained = bool(request[i] & 0x80)
            i += 3  # the index byte, then the process and parameter numbers again
            if kind == self.STRING:
                i += 1
            out += bytes([proc, parm | kind]) + self._encode(self.values.get((proc, parm), 0), kind)
        return bytes(out)

    def _encode(self, value: float | int | str, kind: int) -> bytes:
        if kind == self.STRING:
            text = str(value).encode()
            return bytes([len(text)]) + text
        if kind == self.INT32:
            return struct.pack(">f" if isinstance(value, float) else ">I", value)
        if kind == self.INT16:
            return struct.pack(">H", int(value))
        return bytes([int(value)])

    def _write(self, message: bytes) -> None:
        proc, parm, kind = message[0] & 0x7F, message[1] & 0x1F, message[1] & 0x60
        raw = message[2:]
        value: float | int = raw[0]
        if kind == self.INT32:
            value = struct.unpack(">f", raw[:4])[0]
        elif kind == self.INT16:
            value = struct.unpack(">H", raw[:2])[0]
        self.values[(proc, parm)] = value
        self.writes.append(((proc, parm), value))
        if (proc, parm) == self.SETPOINT:
            self.values[self.MEASURE] = value  # an ideal controller
        if (proc, parm) == self.CONTROL_MODE and value == 3:  # valve close
            self.values[self.MEASURE] = 0.0

    def _frame(self, seq: int, message: bytes) -> bytes:
        raw = bytes([seq, self.node, len(message)]) + message
        return (
            bytes([self.DLE, self.STX])
            + raw.replace(b"\x10", b"\x10\x10")
            + bytes([self.DLE, self.ETX])
        )
