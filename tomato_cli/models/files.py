"""Reading YAML/JSON/TOML files with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

MAX_FILE_BYTES = 1 << 20


def read_text(path: Path, what: str, error: type[ValueError], limit: int = MAX_FILE_BYTES) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise error(f"{what} {path}: cannot be read ({exc.strerror})") from None
    if size > limit:
        raise error(f"{what} {path}: is {size} bytes, more than the limit of {limit}")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path}: is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{what} {path}: cannot be read ({exc.strerror})") from None


def load_mapping(path: Path, what: str, error: type[ValueError], limit: int = MAX_FILE_BYTES):
    """A YAML (or JSON, which is YAML) file that must hold a mapping."""
    text = read_text(path, what, error, limit)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed"
        raise error(f"{what} {path}: malformed YAML/JSON{where}: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path}: must hold a mapping, not {type(data).__name__}")
    return data


def first_error(exc: ValidationError) -> str:
    """The first pydantic error as ``field.path: message``."""
    err = exc.errors()[0]
    loc = ""
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{loc}: {msg}{more}" if loc else f"{msg}{more}"


def any_to_str(value: Any) -> str:
    return str(value)
