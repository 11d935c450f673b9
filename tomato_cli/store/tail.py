"""Following a job's store as it grows: only the records appended since the last look.

A live view (``ketchup status --watch``) looks every fraction of a second for days; it
must not re-read what it has seen. Each role file is read from where the last look
stopped, so a look costs only what was appended since.
"""

from __future__ import annotations

from pathlib import Path

from .jobstore import SUFFIX, check_role
from .records import Batch, check_file_header, decode_payload, iter_frames


class StoreTail:
    """Reads the batches appended to a job's store (``jobdir/data``) since the last call."""

    def __init__(self, jobdir: Path):
        self.datadir = Path(jobdir) / "data"
        self.offsets: dict[str, int] = {}

    def _roles(self) -> list[str]:
        if not self.datadir.is_dir():
            return []
        names = (p.name[: -len(SUFFIX)] for p in self.datadir.glob(f"*{SUFFIX}"))
        out = []
        for name in sorted(names):
            try:
                out.append(check_role(name))
            except ValueError:
                continue
        return out

    def new_batches(self) -> list[tuple[str, Batch]]:
        """``(role, batch)`` of every complete record appended since the last call."""
        out: list[tuple[str, Batch]] = []
        for role in self._roles():
            path = self.datadir / f"{role}{SUFFIX}"
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                continue
            with f:
                if role not in self.offsets:
                    try:
                        if not check_file_header(f):
                            continue  # still empty
                    except ValueError:  # not a store file: not ours to read
                        continue
                    self.offsets[role] = f.tell()
                f.seek(self.offsets[role])
                for end, n, payload in iter_frames(f):
                    out.append((role, decode_payload(n, payload)))
                    self.offsets[role] = end
        return out
