"""``example_counter``: a software-only driver for tests and demos.

It has the techniques, attributes, defaults, constants and variables of the tomato 2.x
package tomato-example-counter, so payloads written for that one run unchanged.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from drivers.base import HOST_SETTINGS, Attr, ComponentBase, DriverBase, Measured


class CounterComponent(ComponentBase):
    """A counter channel: ``count`` counts whole seconds, ``random`` draws in [min, max]."""

    attr_defs: ClassVar[dict[str, Attr]] = {
        "max": Attr(float, rw=True),
        "min": Attr(float, rw=True),
        "param": Attr(float, units="s", minimum=0.1, rw=True),
        "choice": Attr(str, options=("red", "green", "blue"), rw=True),
    }
    defaults: ClassVar[dict[str, Any]] = {"max": 10, "min": 0, "param": 1.0, "choice": "green"}
    techniques: ClassVar[frozenset[str]] = frozenset({"count", "random"})
    measured_defs: ClassVar[dict[str, Measured]] = {"val": Measured()}

    def constants(self) -> dict[str, Any]:
        """Address, channel and the package's example constant."""
        return {**super().constants(), "example_meta": "example string"}

    def measure(self, technique: str, elapsed: float) -> dict[str, Any]:
        """``val`` for ``technique`` plus the current attrs."""
        if technique == "count":
            val: float | int = int(elapsed)
        elif technique == "random":
            val = random.uniform(self._values["min"], self._values["max"])
        else:
            raise ValueError(f"unknown technique {technique!r}")
        return {"val": val, **self._attr_sample()}

    def idle_measure(self) -> dict[str, Any]:
        """The current attrs."""
        return self._attr_sample()

    def _attr_sample(self) -> dict[str, Any]:
        return {name: self._values[name] for name in ("max", "min", "param", "choice")}


class ExampleCounterDriver(DriverBase):
    """The ``example_counter`` driver: any non-empty address and channel is accepted."""

    name: ClassVar[str] = "example_counter"
    component_class: ClassVar[type[ComponentBase]] = CounterComponent
    settings_keys: ClassVar[frozenset[str] | None] = HOST_SETTINGS
