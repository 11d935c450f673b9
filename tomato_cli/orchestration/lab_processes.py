"""The lab server's detached processes (the Prefect server, the TLS proxy): their pid files,
stopping them, the last line of their logs, and whether the API they serve answers."""

from __future__ import annotations

import base64
import os
import signal
import ssl
import urllib.error
import urllib.request
from pathlib import Path


def api_healthy(api_url: str, cafile: str | None = None, timeout: float = 2.0) -> bool:
    """True if ``/health`` answers 200 (it needs no credentials); ``cafile``: CA to trust."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(
            f"{api_url}/health", timeout=timeout, context=context
        ) as response:
            return response.status == 200
    except OSError:
        return False


def api_status(
    api_url: str, auth: str | None, cafile: str | None = None, timeout: float = 5.0
) -> int:
    """The HTTP status of an authenticated API call (``/admin/version``), with ``auth`` or none."""
    request = urllib.request.Request(f"{api_url}/admin/version")
    if auth is not None:
        token = base64.b64encode(auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def stop_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL what is left after ``timeout``."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        for proc in procs:
            try:
                proc.terminate()
            except psutil.Error:
                pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def our_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process runs and its command line has ``marker``."""
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return None
    try:
        import psutil

        cmdline = " ".join(psutil.Process(pid).cmdline())
    except Exception:  # noqa: BLE001 - gone, or not ours to see
        return None
    return pid if marker in cmdline else None


def last_line_of(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"
