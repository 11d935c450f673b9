"""One running task: a thread sampling a component on an absolute-time schedule.

Schedule: sample ``n`` is due at ``start + n * interval`` for ``n = 1 .. N`` with
``N = floor(max_duration / interval)`` (a tiny tolerance absorbs float error), so a task
records ``floor(max_duration / interval)`` samples, the last one at (or just before)
``max_duration``; there is no sample at ``t = 0``. Deadlines never drift. A late sample
is taken at once; slots already overdue by more than ``catchup_window`` seconds are
skipped (counted in ``missed``) instead of being burst out back to back.

Each sample is stamped with ``time.time()`` when ``measure`` returns (strictly
increasing), unless the component's sample carries its own ``uts``, which is kept as is.
Samples are checked against the component's declared quantities
(:func:`drivers.samples.check_sample`); one that does not fit ends the task with an error.
A task given stop conditions (a step's ``stop_when``) checks each sample as it is taken
and ends, as a task that ran its course, on the first sample that meets one: no sample
after the crossing is taken.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from drivers.base import ComponentBase
from drivers.samples import check_sample
from tomato_cli.models.conditions import Bound, ConditionWatch

log = logging.getLogger(__name__)

CATCHUP_WINDOW = 0.5
DEFAULT_BUFFER_LIMIT = 200_000


def sample_count(max_duration: float, interval: float) -> int:
    """The number of samples a task of ``max_duration`` at ``interval`` records."""
    return max(0, math.floor(max_duration / interval + 1e-9))


class Sampler:
    """Samples ``component`` running ``technique`` in its own thread until done or stopped."""

    def __init__(
        self,
        key: str,
        component: ComponentBase,
        technique: str,
        max_duration: float,
        interval: float,
        hang_lock: threading.Lock,
        component_lock: AbstractContextManager[Any],
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
        catchup_window: float = CATCHUP_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        stop_when: Sequence[Bound] = (),
    ):
        self.key = key
        self.component = component
        self.technique = technique
        self.max_duration = max_duration
        self.interval = interval
        self.total = sample_count(max_duration, interval)
        self._hang_lock = hang_lock
        self._component_lock = component_lock
        self._catchup = catchup_window
        self._clock = clock
        self._measured = component.measured()
        self._buffer: deque[tuple[float, dict[str, Any]]] = deque(maxlen=buffer_limit)
        self._buffer_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"task-{key}", daemon=True)
        self.started_at: float | None = None
        self.error: str | None = None
        self.stopped = False
        self.samples = 0
        self.missed = 0
        self.dropped = 0
        self._watch = ConditionWatch(stop_when)
        self.condition: dict[str, Any] | None = None  # the stop condition met, if one was

    def start(self) -> None:
        """Start sampling now."""
        self.started_at = time.time()
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self.started_at is not None and not self._thread.is_alive()

    def stop(self, timeout: float = 0.2) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for it."""
        self.stopped = self.stopped or self.running
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """Running state and counters."""
        with self._buffer_lock:
            buffered = len(self._buffer)
        return {
            "running": self.running,
            "done": self.done,
            "error": self.error,
            "started_at": self.started_at,
            "samples": self.samples,
            "technique": self.technique,
            "expected": self.total,
            "stopped": self.stopped,
            "missed": self.missed,
            "dropped": self.dropped,
            "buffered": buffered,
            "condition": self.condition,
        }

    def drain(self) -> tuple[list[float], list[dict[str, Any]]]:
        """Take every buffered sample out, oldest first."""
        uts, rows, _ = self.take(len)
        return uts, rows

    def take(
        self, count: Callable[[list[dict[str, Any]]], int]
    ) -> tuple[list[float], list[dict[str, Any]], int]:
        """Take the first ``count(rows)`` buffered samples out; also say how many are left."""
        with self._buffer_lock:
            items = list(self._buffer)
            k = count([values for _, values in items])
            for _ in range(k):
                self._buffer.popleft()
            left = len(items) - k
        items = items[:k]
        return [uts for uts, _ in items], [values for _, values in items], left

    def _run(self) -> None:
        start = self._clock()
        last_uts = 0.0
        n = 1
        log.info(
            "task %s on %s: %d samples at %g s",
            self.technique,
            self.key,
            self.total,
            self.interval,
        )
        try:
            while n <= self.total:
                due = start + n * self.interval
                while (wait := due - self._clock()) > 0:
                    if self._stop.wait(wait):
                        return
                if self._stop.is_set():
                    return
                now = self._clock()
                late_slots = math.floor((now - due - self._catchup) / self.interval) + 1
                if late_slots > 0:
                    skip = min(late_slots, self.total - n)
                    if skip > 0:
                        self.missed += skip
                        n += skip
                        log.warning("task on %s: %d overdue slots skipped", self.key, skip)
                elapsed = max(now - start, n * self.interval)
                with self._hang_lock:
                    pass
                with self._component_lock:
                    values = self.component.measure(self.technique, elapsed)
                values = check_sample(values, self._measured)
                own = values.pop("uts", None)
                if own is not None:
                    uts = own
                else:
                    uts = time.time()
                    if uts <= last_uts:
                        uts = last_uts + 1e-6
                    last_uts = uts
                self._append(uts, values)
                n += 1
                if self._watch and (met := self._watch.check(uts, values)) is not None:
                    self.condition = met.as_dict()
                    log.info("task on %s: %s", self.key, met.describe())
                    return
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.exception("task %s on %s failed", self.technique, self.key)
        finally:
            log.info(
                "task %s on %s ended: %d samples, %d missed%s",
                self.technique,
                self.key,
                self.samples,
                self.missed,
                f", error {self.error}" if self.error else "",
            )

    def _append(self, uts: float, values: dict[str, Any]) -> None:
        with self._buffer_lock:
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("task buffer of %s full: dropping the oldest samples", self.key)
            self._buffer.append((uts, values))
            self.samples += 1
