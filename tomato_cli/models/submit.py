"""What ``ketchup submit`` fills in a payload, as tomato 2.2 does, and where its crate goes."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tomato_cli.models.errors import PayloadError
from tomato_cli.models.payload import Payload, User

DEFAULT_REPOSITORY = "default"


def submitting_user() -> str:
    """The name of the user running this process (tomato 2.2's payload ``user``)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. in a bare container)
        return "unknown"


def complete_payload(
    payload: Payload, cwd: str | Path, repositories: Mapping[str, Any] | None = None
) -> Payload:
    """The payload as tomato 2.2 stores it at submit: ``user`` set (to the submitting
    user), ``settings.output.path`` and ``settings.snapshot.path`` set to the submit
    folder where the payload leaves them out. A repository the settings file does not
    name is refused (``"default"`` may be absent: then no crate is made).
    """
    known = set(repositories or {})
    asked = payload.settings.output.repositories
    unknown = [r for r in asked if r not in known and r != DEFAULT_REPOSITORY]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise PayloadError(
            f"settings.output.repositories: unknown repository {unknown[0]!r} "
            f"(the settings file's [repositories] has: {listed})"
        )
    folder = str(Path(cwd).absolute())
    settings = payload.settings
    output = settings.output.model_copy(update={"path": settings.output.path or folder})
    snapshot = settings.snapshot
    if snapshot is not None and snapshot.path is None:
        snapshot = snapshot.model_copy(update={"path": folder})
    user = payload.user
    if user is None or user.identifier is None:
        extra = user.model_extra if user is not None else None
        user = User(identifier=submitting_user(), **(extra or {}))
    new_settings = settings.model_copy(update={"output": output, "snapshot": snapshot})
    return payload.model_copy(update={"settings": new_settings, "user": user})


def crate_path(
    respath: str | Path, payload: Payload, repositories: Mapping[str, Any] | None
) -> str | None:
    """Where the job's RO-Crate goes (next to its NetCDF file, ``.zip`` for ``.nc``), or
    None if the payload names no repository that the settings file configures."""
    wanted = set(payload.settings.output.repositories) & set(repositories or {})
    return str(Path(respath).with_suffix(".zip")) if wanted else None
