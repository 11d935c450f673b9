"""Payloads of version 2.2 (and tomato-prefect-1: 2.2 with conditions): the job description
submitted with ``ketchup submit``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from tomato_cli.models.conditions import Bound, UnitsOf, bind, parse_conditions
from tomato_cli.models.errors import PayloadError
from tomato_cli.models.files import check_size, format_error, load_mapping, parse_text
from tomato_cli.models.repeats import BoundUntil, bind_until, parse_until
from tomato_cli.models.upgrade import CURRENT, OURS, original_version, upgrade
from tomato_cli.units import to_seconds

MIN_SAMPLING_S = 1e-4
MAX_DURATION_S = 365.25 * 24 * 3600.0  # one (Julian) year, as pint's "1 year"
MAX_PAYLOAD_BYTES = 1 << 20
Verbosity = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _seconds(value: Any) -> Any:
    """Numbers are seconds; strings such as "10 s" or "2 h" are converted with pint."""
    if value is None or isinstance(value, bool):
        return value
    return to_seconds(value)


def _bounded(value: float | None, low: float = 0.0) -> float | None:
    """``value`` if it is positive, at least ``low`` and at most one year (all seconds)."""
    if value is None:
        return None
    if value <= 0:
        raise ValueError(f"must be positive, got {value:g} s")
    if value < low:
        raise ValueError(f"must be at least {low:g} s, got {value:g} s")
    if value > MAX_DURATION_S:
        raise ValueError(f"must be at most one year ({MAX_DURATION_S:g} s), got {value:g} s")
    return value


def _positive(value: float | None) -> float | None:
    return _bounded(value)


def _conditions(value: Any) -> Any:
    """A condition or a list of them, checked for syntax (see models.conditions)."""
    if value is None:
        return None
    parse_conditions(value)
    return [value] if isinstance(value, str) else [c.strip() for c in value]


class Task(BaseModel):
    """One technique step on one component role; durations in seconds."""

    model_config = ConfigDict(extra="forbid")
    component_role: str = Field(min_length=1)
    max_duration: float
    sampling_interval: float
    polling_interval: float | None = None
    technique_name: str = Field(min_length=1)
    task_name: str | None = None
    task_params: dict[str, Any] = Field(default_factory=dict)
    start_with_task_name: str | None = None
    stop_with_task_name: str | None = None
    # new in tomato-prefect (payload version tomato-prefect-1): the step ends when one holds
    stop_when: list[str] | None = None

    _durations = field_validator(
        "max_duration", "sampling_interval", "polling_interval", mode="before"
    )(_seconds)
    _limits = field_validator("max_duration", "polling_interval")(_positive)
    _conditions = field_validator("stop_when", mode="before")(_conditions)

    @model_serializer(mode="wrap")
    def _without_new_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without ``stop_when`` when it is not used: written as tomato 2.2 writes it."""
        data: dict[str, Any] = handler(self)
        if data.get("stop_when") is None:
            data.pop("stop_when", None)
        return data

    @field_validator("sampling_interval")
    @classmethod
    def _sampling(cls, value: float) -> float | None:
        return _bounded(value, MIN_SAMPLING_S)


class Sample(BaseModel):
    """The sample the job runs on; extra fields are kept."""

    model_config = ConfigDict(extra="allow")
    identifier: str = Field(min_length=1)
    sample_is_parent: bool = True

    @field_validator("identifier", mode="before")
    @classmethod
    def _as_str(cls, value: Any) -> Any:
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )


class User(BaseModel):
    """Who submitted the job; extra fields are kept."""

    model_config = ConfigDict(extra="allow")
    identifier: str | None = None


class Output(BaseModel):
    """Where the final NetCDF file goes, and the repositories (settings file
    ``[repositories]``) its RO-Crate is meant for; ``"default"`` as in tomato 2.2."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    prefix: str | None = None
    repositories: list[str | None] = Field(default_factory=lambda: ["default"])


SNAPSHOT_INTERVAL_S = 3600.0  # tomato's default when a payload gives none


class Snapshot(BaseModel):
    """Periodic snapshots: every ``interval`` seconds into ``path``/``prefix``.

    ``interval`` is tomato 2.2's name; payloads before 2.2 (and ours before) call it
    ``frequency``, which is read as the same field.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    interval: float = Field(
        SNAPSHOT_INTERVAL_S, validation_alias=AliasChoices("interval", "frequency")
    )
    path: str | None = None
    prefix: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "interval" in data and "frequency" in data:
            raise ValueError("give either 'interval' or 'frequency' (the same setting), not both")
        return data

    _interval = field_validator("interval", mode="before")(_seconds)
    _limits = field_validator("interval")(_positive)

    @property
    def frequency(self) -> float:
        """The interval under its pre-2.2 name."""
        return self.interval


class PayloadSettings(BaseModel):
    """Job settings: verbosity, unlocking, output, snapshots and the job's priority."""

    model_config = ConfigDict(extra="forbid")
    unlock_when_done: bool = False
    verbosity: Verbosity = "WARNING"  # tomato 2.2's default; recorded with the job
    output: Output = Field(default_factory=Output)
    snapshot: Snapshot | None = None
    # new in tomato-prefect: among jobs that can start, the gate takes the highest first
    priority: int = Field(0, ge=0, strict=True)

    @field_validator("verbosity", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _as_tomato22(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Written without ``priority`` when it is 0: a payload that does not use it is
        written as tomato 2.2 writes it (in results files and ``ketchup status -y``)."""
        data: dict[str, Any] = handler(self)
        if data.get("priority") == 0:
            del data["priority"]
        return data


MAX_REPEATS = 100_000


class Repeat(BaseModel):
    """A group of consecutive steps (by ``task_name``) run ``times`` over, or until
    ``until`` holds after a repeat (new in tomato-prefect-1)."""

    model_config = ConfigDict(extra="forbid")
    steps: list[str] = Field(min_length=1, max_length=64)
    times: int = Field(ge=1, le=MAX_REPEATS, strict=True)
    until: str | None = None

    @field_validator("until")
    @classmethod
    def _until(cls, value: str | None) -> str | None:
        if value is not None:
            parse_until(value)
        return value


class Payload(BaseModel):
    """A payload of version 2.2; dicts of older versions are upgraded on validation."""

    model_config = ConfigDict(extra="forbid")
    version: Literal["2.2", "tomato-prefect-1"] = CURRENT
    settings: PayloadSettings = Field(default_factory=PayloadSettings)
    user: User | None = None
    sample: Sample
    method: list[Task] = Field(min_length=1)
    # new in tomato-prefect-1: the whole job ends (c) when one of these holds
    end_when: list[str] | None = None
    # new in tomato-prefect-1: groups of steps run over and over
    repeats: list[Repeat] | None = Field(None, max_length=16)

    _conditions = field_validator("end_when", mode="before")(_conditions)

    @model_serializer(mode="wrap")
    def _without_new_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without ``end_when`` when it is not used: written as tomato 2.2 writes it."""
        data: dict[str, Any] = handler(self)
        for key in ("end_when", "repeats"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        return upgrade(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _conditions_need_our_version(self) -> Payload:
        """Conditions only in payloads of our version; roles they name are the job's."""
        steps = [i for i, task in enumerate(self.method) if task.stop_when]
        if self.version != OURS and (steps or self.end_when or self.repeats):
            key = (
                "end_when"
                if self.end_when
                else "repeats"
                if self.repeats
                else f"method[{steps[0]}].stop_when"
            )
            raise ValueError(
                f"{key} is new in tomato-prefect: give the payload version: {OURS!r} "
                f"(tomato 2.2 has no conditions and refuses that version)"
            )
        roles = {task.component_role for task in self.method}
        named = [(f"method[{i}].stop_when", self.method[i].stop_when or []) for i in steps]
        for where, texts in [*named, ("end_when", self.end_when or [])]:
            for cond in parse_conditions(texts):
                if cond.role is None and where == "end_when":
                    raise ValueError(
                        f"end_when: {cond.text!r}: name the role, e.g. "
                        f"'{next(iter(sorted(roles)))}.{cond.variable}'"
                    )
                if cond.role is not None and cond.role not in roles:
                    raise ValueError(
                        f"{where}: {cond.text!r}: the job has no role {cond.role!r} "
                        f"(its roles: {', '.join(sorted(roles))})"
                    )
        return self

    @model_validator(mode="after")
    def _repeat_groups(self) -> Payload:
        """Each group: steps that exist, in method order, one after the other, in no other
        group, and not tied to other steps by start_with/stop_with (each repeat runs them
        afresh)."""
        index = {t.task_name: i for i, t in enumerate(self.method) if t.task_name}
        taken: set[int] = set()
        for g, group in enumerate(self.repeats or []):
            where = f"repeats[{g}]"
            unknown = [name for name in group.steps if name not in index]
            if unknown:
                raise ValueError(f"{where}.steps: no step has task_name {unknown[0]!r}")
            at = [index[name] for name in group.steps]
            if at != list(range(at[0], at[0] + len(at))):
                raise ValueError(
                    f"{where}.steps: must be consecutive steps of the method, in its order"
                )
            if taken & set(at):
                raise ValueError(f"{where}.steps: a step may be in one repeat only")
            taken |= set(at)
            for i, task in enumerate(self.method):
                tied = {task.start_with_task_name, task.stop_with_task_name} - {None}
                if i in at and tied:
                    raise ValueError(
                        f"{where}: step {task.task_name!r} waits for or is stopped by another "
                        "step; steps of a repeat cannot be"
                    )
                if tied & set(group.steps):
                    raise ValueError(
                        f"method[{i}]: waits for or is stopped by a step of {where}; "
                        "a step of a repeat cannot be waited for"
                    )
        return self

    def repeat_of(self, index: int) -> Repeat | None:
        """The repeat group that method step ``index`` belongs to, if any."""
        name = self.method[index].task_name
        return next((g for g in self.repeats or [] if name in g.steps), None)

    @model_validator(mode="after")
    def _task_names(self) -> Payload:
        names: set[str] = set()
        for i, task in enumerate(self.method):
            if task.task_name is not None:
                if task.task_name in names:
                    raise ValueError(f"method[{i}].task_name {task.task_name!r} is used twice")
                names.add(task.task_name)
        for i, task in enumerate(self.method):
            for field in ("start_with_task_name", "stop_with_task_name"):
                ref = getattr(task, field)
                if ref is None:
                    continue
                if ref not in names:
                    raise ValueError(f"method[{i}].{field}: no task has task_name {ref!r}")
                if ref == task.task_name:
                    raise ValueError(f"method[{i}].{field}: a task cannot wait for itself")
        return self

    @property
    def has_conditions(self) -> bool:
        repeats = any(g.until for g in self.repeats or [])
        return repeats or bool(self.end_when) or any(task.stop_when for task in self.method)

    def planned_duration(self) -> float:
        """Seconds the steps take if none ends early: the longest role's steps in turn."""
        per_role: dict[str, float] = {}
        for i, task in enumerate(self.method):
            group = self.repeat_of(i)
            times = group.times if group is not None else 1
            per_role[task.component_role] = per_role.get(task.component_role, 0.0) + (
                task.max_duration * times
            )
        return max(per_role.values(), default=0.0)

    def techniques_by_role(self) -> dict[str, set[str]]:
        """The technique names each component role must provide."""
        out: dict[str, set[str]] = {}
        for task in self.method:
            out.setdefault(task.component_role, set()).add(task.technique_name)
        return out


class BoundConditions(BaseModel):
    """A payload's conditions with their thresholds in the variables' units: each step's
    ``stop_when`` (by step index) and the job's ``end_when``; plain data for the job's flow."""

    steps: dict[int, list[dict[str, Any]]] = Field(default_factory=dict)
    job: list[dict[str, Any]] = Field(default_factory=list)
    until: dict[int, dict[str, Any]] = Field(default_factory=dict)  # by repeat group
    error: str | None = None  # why they could not be bound: the job must not run

    def of_step(self, index: int) -> list[Bound]:
        return [Bound.from_dict(b) for b in self.steps.get(index, [])]

    def of_job(self) -> list[Bound]:
        return [Bound.from_dict(b) for b in self.job]

    def of_repeat(self, group: int) -> BoundUntil | None:
        found = self.until.get(group)
        return BoundUntil.from_dict(found) if found is not None else None


def bind_conditions(payload: Payload, units_of: UnitsOf) -> BoundConditions:
    """Every condition of the payload bound to its variable's units (see
    :func:`tomato_cli.models.conditions.bind`); ValueError naming the first that is not."""
    out = BoundConditions()
    for i, task in enumerate(payload.method):
        if task.stop_when:
            try:
                bound = [
                    bind(c, task.component_role, units_of) for c in parse_conditions(task.stop_when)
                ]
            except ValueError as exc:
                raise ValueError(f"method[{i}].stop_when: {exc}") from None
            out.steps[i] = [b.as_dict() for b in bound]
    try:
        out.job = [
            bind(c, None, units_of).as_dict() for c in parse_conditions(payload.end_when or [])
        ]
    except ValueError as exc:
        raise ValueError(f"end_when: {exc}") from None
    index = {t.task_name: (i, t.component_role) for i, t in enumerate(payload.method)}
    for g, group in enumerate(payload.repeats or []):
        if group.until is not None:
            steps = {name: index[name] for name in group.steps}
            try:
                out.until[g] = bind_until(parse_until(group.until), steps, units_of).as_dict()
            except ValueError as exc:
                raise ValueError(f"repeats[{g}].{exc}") from None
    return out


# payload keys naming a companion file that holds a part of the payload (0.1 onwards)
COMPANIONS = {"samplefile": "sample", "methodfile": "method"}


def read_companions(data: dict[str, Any], folders: list[Path], source: str) -> dict[str, Any]:
    """``data`` with ``samplefile``/``methodfile`` replaced by the part they hold.

    A relative file name is looked for in each of ``folders`` in turn (the payload's own
    folder, then the current one, where tomato 2.2 looks).
    """
    if not any(key in data for key in COMPANIONS):
        return data
    data = dict(data)
    for key, part in COMPANIONS.items():
        if key not in data:
            continue
        name = data.pop(key)
        if part in data:
            raise PayloadError(f"{source}: both {key!r} and {part!r} given; use only one")
        if not isinstance(name, str) or not name:
            raise PayloadError(f"{source}: {key} must be a file name, got {name!r}")
        candidates = [Path(name)] if Path(name).is_absolute() else [f / name for f in folders]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            where = " or ".join(str(c.parent) for c in candidates)
            raise PayloadError(f"{source}: {key} {name!r} not found in {where}")
        content = load_mapping(found, key, PayloadError, limit=MAX_PAYLOAD_BYTES)
        if part not in content:
            raise PayloadError(f"{source}: {key} {found} holds no {part!r} entry")
        data[part] = content[part]
    return data


def parse_payload(
    data: dict[str, Any], source: str = "payload", folder: Path | None = None
) -> Payload:
    """Validate (and upgrade) a payload mapping; mistakes raise a one-line PayloadError.

    Companion files (``samplefile``, ``methodfile``) are looked for in ``folder`` first,
    then in the current folder.
    """
    if not isinstance(data, dict):
        raise PayloadError(f"{source}: must hold a mapping, not a {type(data).__name__}")
    folders = [folder, Path.cwd()] if folder is not None else [Path.cwd()]
    data = read_companions(data, folders, source)
    try:
        check_size(data)
        upgraded = upgrade(data)
    except ValueError as exc:
        raise PayloadError(f"{source}: {exc}") from None
    try:
        return Payload.model_validate(upgraded)
    except ValidationError as exc:
        note = ""
        version = original_version(data)
        if version not in (CURRENT, OURS):
            note = f" (payload upgraded from version {version} to {CURRENT})"
        raise PayloadError(f"{source}: {format_error(exc, upgraded)}{note}") from None


def parse_payload_text(text: str, source: str = "payload") -> Payload:
    """A payload given as YAML or JSON text (for example as a Prefect run parameter)."""
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{source}: is larger than the limit of {MAX_PAYLOAD_BYTES} bytes")
    try:
        data = parse_text(text)
    except ValueError as exc:
        raise PayloadError(f"{source}: {exc}") from None
    except RecursionError:
        raise PayloadError(f"{source}: nested too deeply") from None
    return parse_payload(data, source)


def load_payload(path: Path) -> Payload:
    """Read a payload file (YAML or JSON, any known version) as a 2.2 Payload."""
    path = Path(path)
    data = load_mapping(path, "payload", PayloadError, limit=MAX_PAYLOAD_BYTES)
    return parse_payload(data, f"payload {path}", folder=path.absolute().parent)
