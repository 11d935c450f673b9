"""A fault in a job's own process, for the isolation tests.

With ``TOMATO_DEBUG_COMMANDS=1`` in its environment (as for driver hosts' debug commands,
:mod:`drivers.fault_injection`), a job's process answers SIGUSR1 with a call that
segfaults, as a vendor library might: the test chooses the moment, once the job has
stored data.
"""

from __future__ import annotations

import ctypes
import os
import signal
from types import FrameType


def _segfault(signum: int, frame: FrameType | None) -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def arm() -> None:
    """In the job's process, before its job runs (a handler is set in the main thread)."""
    if os.environ.get("TOMATO_DEBUG_COMMANDS") == "1":
        signal.signal(signal.SIGUSR1, _segfault)
