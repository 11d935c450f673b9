"""A tomato 2.x set-up on this machine: where its settings are, and taking them over."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from tomato_cli.models.errors import ConfigError
from tomato_cli.models.settings import SETTINGS_FILE, Settings, default_settings, load_settings

_VERSION_DIR = re.compile(r"^\d+\.\d+")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)[:3])


def find_tomato2x_settings(config_root: Path | None = None) -> list[Path]:
    """tomato 2.x settings files, newest version first.

    tomato 2.x keeps one appdir per version under the user's config folder for
    ``tomato`` (``~/.config/tomato/2.2/settings.toml`` on Linux).
    """
    root = config_root or Path(platformdirs.user_config_dir("tomato", "dgbowl"))
    try:
        found = [
            d / SETTINGS_FILE
            for d in root.iterdir()
            if d.is_dir() and _VERSION_DIR.match(d.name) and (d / SETTINGS_FILE).is_file()
        ]
    except OSError:
        return []
    return sorted(found, key=_version_key, reverse=True)


@dataclass
class Imported:
    """Settings taken over from a tomato 2.x set-up, and the devices file copied with them."""

    settings: Settings
    source: Path
    devices_from: Path | None


def import_tomato2x_settings(source: Path, appdir: Path, datadir: Path, logdir: Path) -> Imported:
    """Our settings for ``appdir``/``datadir``/``logdir`` with the devices file, driver
    settings and repositories of a tomato 2.x settings file.

    Its devices file is copied into ``appdir`` (the caller writes it); its job folders and
    job database stay where they are, untouched: our jobs go to ``datadir/Jobs``.
    """
    source = Path(source)
    if source.is_dir():
        source = source / SETTINGS_FILE
    old = load_settings(source)
    if Path(old.jobs.storage).resolve() == (Path(datadir) / "Jobs").resolve():
        raise ConfigError(
            f"settings file {source}: its job folder {old.jobs.storage} would be shared; "
            "give tomato-prefect another --datadir"
        )
    new = default_settings(appdir, datadir, logdir)
    new.drivers = old.drivers
    new.repositories = old.repositories
    devices = Path(old.devices.config)
    if devices.is_file():
        new.devices.config = Path(appdir) / f"devices{devices.suffix or '.yml'}"
        return Imported(new, source, devices)
    return Imported(new, source, None)


def copy_devices(imported: Imported) -> None:
    """Copy the imported devices file to where the new settings point."""
    if imported.devices_from is not None:
        target = Path(imported.settings.devices.config)
        if target.resolve() != imported.devices_from.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(imported.devices_from, target)
