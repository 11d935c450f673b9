"""Reading YAML/JSON files and reporting pydantic errors, each as one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

MAX_FILE_BYTES = 1 << 20
# YAML aliases can make a small file stand for an enormous structure ("billion laughs"),
# which anything that walks it (validation, JSON, NetCDF attributes) would then expand
MAX_NODES = 200_000


def one_line(text: object) -> str:
    """Collapse all whitespace (newlines included) into single spaces."""
    return " ".join(str(text).split())


def read_text(path: Path, what: str, error: type[ValueError], limit: int = MAX_FILE_BYTES) -> str:
    """The file's text; ``error("<what> <path>: ...")`` if missing, too large or not UTF-8."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise error(f"{what} {path}: cannot be read ({exc.strerror})") from None
    if size > limit:
        raise error(f"{what} {path}: is {size} bytes, more than the limit of {limit} bytes")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path}: is not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise error(f"{what} {path}: cannot be read ({exc.strerror})") from None


def parse_text(text: str) -> Any:
    """JSON if the text looks like a JSON object, else YAML."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            try:  # flow-style YAML also starts with "{"
                return yaml.safe_load(text)
            except yaml.YAMLError:
                raise ValueError(
                    f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ValueError(f"malformed YAML{at}: {one_line(problem)}") from None


def check_size(data: Any, limit: int = MAX_NODES) -> None:
    """Raise ValueError if ``data`` holds more than ``limit`` values once shared parts
    (YAML aliases) are counted every time they are used. Stops counting at the limit, so
    the cost is bounded whatever the input."""
    stack = [data]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            raise ValueError(f"holds more than {limit} values once its YAML aliases are expanded")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def load_mapping(
    path: Path, what: str, error: type[ValueError], limit: int = MAX_FILE_BYTES
) -> dict[str, Any]:
    """A YAML or JSON file that must hold a mapping."""
    text = read_text(path, what, error, limit)
    try:
        data = parse_text(text)
    except ValueError as exc:
        raise error(f"{what} {path}: {exc}") from None
    except RecursionError:
        raise error(f"{what} {path}: nested too deeply") from None
    if data is None:
        raise error(f"{what} {path}: is empty")
    try:
        check_size(data)
    except ValueError as exc:
        raise error(f"{what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path}: must hold a mapping, not a {type(data).__name__}")
    return data


def _label(data: Any, loc: tuple[Any, ...]) -> str:
    """``loc`` as ``a[0].b``; list items that have a ``name`` get it appended: ``a[0] ('x')``."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and -len(node) <= part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']!r})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def format_error(exc: ValidationError, data: Any = None) -> str:
    """The first pydantic error as ``field.path: message``, on one line."""
    errors = exc.errors()
    err = errors[0]
    loc = _label(data, tuple(err["loc"]))
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        msg = str(err["ctx"]["error"])
    else:
        msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (not allowed here)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"{loc}: {msg}{more}" if loc else f"{msg}{more}")
