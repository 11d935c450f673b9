"""Where a job's results and snapshots go, and the rules that keep them where users may write."""

from __future__ import annotations

import os
from pathlib import Path

from tomato_cli.models import Job
from tomato_cli.rpc import RpcError

# never write results into these, whatever the payload says
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr")


def _check_dir(path: Path, what: str) -> Path:
    if ".." in Path(path).parts:
        raise RpcError(f"{what} {str(path)!r} must not contain '..'")
    resolved = path.resolve()
    for sysdir in SYSTEM_DIRS:
        if resolved == Path(sysdir) or resolved.is_relative_to(sysdir):
            raise RpcError(f"{what} {str(path)!r} points into the system directory {sysdir}")
    existing = resolved
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RpcError(f"{what} {str(path)!r} is not writable ({existing} is not a writable dir)")
    return resolved


def _check_prefix(prefix: str, what: str) -> str:
    if not prefix or "/" in prefix or prefix in (".", "..") or "\0" in prefix:
        raise RpcError(f"{what} {prefix!r} must be a plain file name prefix (no '/')")
    return prefix


def result_path(cwd: str, jobid: int, out_path: str | None, prefix: str | None) -> Path:
    """``results.<jobid>.nc`` in the submit directory, or the payload's output path/prefix."""
    base = Path(cwd)
    folder = _check_dir(base / out_path if out_path else base, "output path")
    name = _check_prefix(prefix, "output prefix") if prefix else f"results.{jobid}"
    return folder / f"{name}.nc"


def snapshot_path(cwd: str, jobid: int, snap_path: str | None, prefix: str | None) -> Path:
    base = Path(cwd)
    folder = _check_dir(base / snap_path if snap_path else base, "snapshot path")
    name = _check_prefix(prefix, "snapshot prefix") if prefix else f"snapshot.{jobid}"
    return folder / f"{name}.nc"


def submit_folder(job: Job) -> Path:
    """The folder a job was submitted from (its results folder without the payload's
    relative output path), where a resubmission of its payload writes its results too."""
    folder = Path(job.respath or ".").parent
    out = job.payload.settings.output.path
    if out and not Path(out).is_absolute():
        for _ in Path(out).parts:
            folder = folder.parent
    return folder
