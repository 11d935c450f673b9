"""`tomato init` on a machine where tomato 2.2 was set up (by its own `tomato init`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from tests.compat.tomato22 import BIN as THEIRS_BIN
from tests.compat.tomato22 import needs_tomato22
from tests.integration.harness import BIN as OURS_BIN
from tests.reference import REFERENCE
from tomato_cli.models import load_settings

pytestmark = [needs_tomato22]


def _run(bin_dir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / "tomato"), *map(str, args)], capture_output=True, text=True, env=env
    )


def test_init_finds_a_22_setup_and_takes_it_over(tmp_path: Path) -> None:
    config = tmp_path / "config"  # the user's config folder (XDG_CONFIG_HOME)
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "HOME": str(tmp_path)}
    app22 = config / "tomato" / "2.2"
    folders22 = ["-A", app22, "-D", tmp_path / "data22", "-L", tmp_path / "log22"]
    made = _run(THEIRS_BIN, "init", *folders22, env=env)
    assert "Success" in made.stdout, made.stdout + made.stderr
    devices = (REFERENCE / "devices" / "devices_multidev_2.2tag.json").read_text()
    (app22 / "devices.yml").write_text(devices)
    ours = ["-A", tmp_path / "app", "-D", tmp_path / "data", "-L", tmp_path / "log"]

    # a plain init starts from the defaults, and says where 2.2's set-up is and how to use it
    plain = _run(OURS_BIN, "init", *ours, "-y", env=env)
    assert plain.returncode == 0, plain.stderr
    doc = yaml.safe_load(plain.stdout)
    assert doc["data"]["found_tomato2x"] == [str(app22 / "settings.toml")]
    assert f"tomato init --force --from {app22 / 'settings.toml'}" in doc["msg"]

    # --from takes over its devices file, driver settings and repositories
    taken = _run(OURS_BIN, "init", *ours, "--force", "--from", app22, env=env)
    assert taken.returncode == 0, taken.stderr
    assert "its jobs stay where they are" in taken.stdout
    settings = load_settings(tmp_path / "app" / "settings.toml")
    assert settings.drivers == {
        "example_counter": {"idle_measurement_interval": 1, "lpp_timeout": 2}
    }
    assert settings.jobs.storage == tmp_path / "data" / "Jobs"
    assert Path(settings.devices.config).read_text() == devices

    # a 2.2 set-up that cannot be read is one clean line, and nothing is written
    (app22 / "settings.toml").write_text("datadir = \n")
    before = (tmp_path / "app" / "settings.toml").read_text()
    bad = _run(OURS_BIN, "init", *ours, "--force", "--from", app22, env=env)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 1 and "malformed TOML" in lines[0]
    assert (tmp_path / "app" / "settings.toml").read_text() == before
