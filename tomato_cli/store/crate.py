"""A job's results packed as an RO-Crate zip next to its NetCDF file (as tomato 2.2 does
for payloads that name a repository of the settings file).

The crate holds the NetCDF file and the job's ``tomato_Job`` as JSON, credits the
payload's user, and places the data under the sample: as a new child of the sample when
the payload says ``sample_is_parent`` (a destructive experiment), else under the sample
itself. It follows the MADICES profile that tomato 2.2's crates declare.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

from rocrate.model import ContextEntity, Person
from rocrate.rocrate import ROCrate

from tomato_cli.models.job import Job

PROFILE_ID = "https://github.com/MADICES/MADICES-2025/discussions/25"
PROFILE_VERSION = "0.2"
NETCDF_TYPE = "application/netcdf"


def _entity(crate: ROCrate, kind: str, identifier: str | None, **props: object) -> ContextEntity:
    ident = identifier or f"#{uuid.uuid4()}"
    return crate.add(ContextEntity(crate, ident, properties={"@type": kind, **props}))


def write_crate(path: Path, results: Path, job: Job) -> Path:
    """Write the crate zip at ``path`` (temporary name, then rename); returns ``path``."""
    payload = job.payload
    crate = ROCrate()
    crate.name = f"tomato job {job.id}"
    crate.description = f"tomato job {job.id} on sample {payload.sample.identifier}"
    profile = _entity(crate, "Profile", PROFILE_ID, version=PROFILE_VERSION)
    user = payload.user.identifier if payload.user and payload.user.identifier else None
    author = crate.add(Person(crate, user or "#unknown-user"))
    sample = _entity(crate, "RepositoryObject", payload.sample.identifier)
    holder = sample
    if payload.sample.sample_is_parent:
        holder = _entity(crate, "RepositoryObject", None)
        sample["hasPart"] = holder
    crate.add_file(
        results,
        dest_path=results.name,
        properties={"encodingFormat": NETCDF_TYPE, "author": author},
    )
    with tempfile.TemporaryDirectory() as tmp:
        meta = Path(tmp) / "tomato_Job.json"
        meta.write_text(json.dumps(json.loads(job.model_dump_json()), indent=1))
        crate.add_file(
            meta,
            dest_path=meta.name,
            properties={"encodingFormat": "application/json", "about": {"@id": "./"}},
        )
        root = crate.root_dataset
        root["conformsTo"] = profile
        root["author"] = author
        if job.completed_at is not None:
            root["dateCreated"] = job.completed_at.isoformat()
        if job.launched_at is not None:
            root["startTime"] = job.launched_at.isoformat()
        holder["hasPart"] = root
        path = Path(path)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            crate.write_zip(partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return path
