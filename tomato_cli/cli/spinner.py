"""Progress for CLI work that takes a while: a spinner with the elapsed time on stderr.

Shown only where a person watches (stderr is a terminal) and never with ``--yaml``;
elsewhere it does nothing, so scripts and logs see just the one final result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tomato_cli.cli.output import Common


@contextmanager
def working(opts: Common, text: str) -> Iterator[Callable[..., None]]:
    """Show ``text`` with a spinner and the seconds since it began; yields ``update``:
    ``update()`` refreshes the seconds, ``update(text)`` replaces the text too."""
    if opts.as_yaml or not sys.stderr.isatty():
        yield lambda _text=None: None
        return
    from rich.console import Console

    start = time.monotonic()
    current = [text]
    with Console(stderr=True).status(text) as status:

        def update(new: str | None = None) -> None:
            if new is not None:
                current[0] = new
            status.update(f"{current[0]} ({time.monotonic() - start:.0f} s)")

        yield update
