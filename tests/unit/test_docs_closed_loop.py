"""docs/usage.md shows an excerpt of docs/examples/closed_loop.py (which
tests/integration/test_closed_loop.py runs): every line of it must be in the file."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_usage_excerpt_is_taken_from_the_example_file() -> None:
    usage = (DOCS / "usage.md").read_text()
    section = usage.split("## Closed loops from Python / Prefect", 1)[1].split("\n## ", 1)[0]
    excerpt = re.search(r"```python\n(.*?)```", section, re.S)
    assert excerpt is not None, "no Python example in the section"
    example = {
        line.strip() for line in (DOCS / "examples" / "closed_loop.py").read_text().splitlines()
    }
    shown = [line.strip() for line in excerpt.group(1).splitlines()]
    missing = [line for line in shown if line and line != "..." and line not in example]
    assert not missing, f"lines of the excerpt not in closed_loop.py: {missing}"
    assert "examples/closed_loop.py" in section
