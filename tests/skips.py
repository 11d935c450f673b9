"""The one kind of skip this suite allows: something of the system that cannot be had here.

A test skips only through these helpers, whose reasons start with ``SYSTEM``; any other
skip (a missing file of ours, a missing Python package, tomato 2.2 not installed) fails the
run (see ``tests/conftest.py``), since `.ci/install` can always provide those.
"""

from __future__ import annotations

from typing import NoReturn

import pytest

SYSTEM = "system: "


def skip_system(why: str) -> NoReturn:
    """Skip: a system package or privilege this machine cannot provide (say which, and why)."""
    pytest.skip(SYSTEM + why)


def system_mark(why: str | None) -> pytest.MarkDecorator:
    """A skip mark for a missing system package or privilege; ``None`` means none is missing."""
    return pytest.mark.skipif(why is not None, reason=SYSTEM + str(why))
