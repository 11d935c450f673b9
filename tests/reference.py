"""Where tests find tomato 2.2's and dgbowl-schemas' reference files (copies kept in tests/data)."""

from pathlib import Path

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
