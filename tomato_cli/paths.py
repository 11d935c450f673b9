"""Default folders of tomato on this platform."""

from __future__ import annotations

from pathlib import Path

import platformdirs

SETTINGS_FILE = "settings.toml"  # in the appdir


def default_dirs() -> tuple[Path, Path, Path]:
    """(appdir, datadir, logdir)."""
    return (
        Path(platformdirs.user_config_dir("tomato")),
        Path(platformdirs.user_data_dir("tomato")),
        Path(platformdirs.user_log_dir("tomato")),
    )
