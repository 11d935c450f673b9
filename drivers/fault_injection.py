"""Commands that make a driver host crash, segfault or hang, for fault-injection tests.

A driver host answers them only when started with ``TOMATO_DEBUG_COMMANDS=1`` (see
:mod:`drivers.host`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("drivers.host")


def fault_commands(hang_lock: threading.Lock) -> dict[str, Callable[..., Any]]:
    """``debug_crash`` and ``debug_hang`` of a host whose every command and sample passes
    through ``hang_lock``."""

    def debug_crash() -> None:
        log.warning("debug_crash: exiting with code 3")
        logging.shutdown()
        os._exit(3)

    def debug_segfault() -> None:
        log.warning("debug_segfault: reading address 0")
        logging.shutdown()
        ctypes.string_at(0)  # what a faulty vendor library does: SIGSEGV

    def debug_hang(seconds: float = 30.0) -> str:
        held = threading.Event()

        def hang() -> None:
            with hang_lock:
                held.set()
                log.warning("debug_hang: blocking for %g s", seconds)
                time.sleep(float(seconds))

        threading.Thread(target=hang, name="debug-hang", daemon=True).start()
        held.wait()
        return f"hanging for {seconds} s"

    return {
        "debug_crash": debug_crash,
        "debug_segfault": debug_segfault,
        "debug_hang": debug_hang,
    }
