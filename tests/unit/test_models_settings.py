"""tomato_cli.models.settings and tomato_cli.paths."""

from pathlib import Path

import pytest

from tests.unit.messages import assert_one_line
from tomato_cli.models import (
    SETTINGS_FILE,
    ConfigError,
    Settings,
    default_settings,
    load_settings,
    write_settings,
)
from tomato_cli.models.settings import unused_driver_keys
from tomato_cli.paths import default_dirs


def test_default_settings(tmp_path):
    s = default_settings(tmp_path / "app", tmp_path / "data", tmp_path / "log")
    assert s.jobs.storage == tmp_path / "data" / "Jobs"
    assert s.devices.config == tmp_path / "app" / "devices.yml"
    assert s.prefect.url is None and s.prefect.port is None
    assert s.drivers == {}


def test_round_trip_default(tmp_path):
    s = default_settings(tmp_path / "app", tmp_path / "data", tmp_path / "log")
    path = tmp_path / SETTINGS_FILE
    write_settings(s, path)
    assert load_settings(path) == s


def test_round_trip_full(tmp_path):
    s = default_settings(tmp_path / "app dir", tmp_path / "dåta", tmp_path / "log")
    s.drivers = {
        "example_counter": {"testpar": 1234, "ratio": 0.5, "on": True, "names": ["a", 'b"c']},
        "my driver.x": {"nested": {"k": "v", "n": [1, 2]}, "empty": {}},
        "psutil": {},
    }
    s.prefect.url = "http://127.0.0.1:4200/api"
    s.prefect.port = 4321
    s.prefect.api_key = "key\\with\nspecials"
    path = tmp_path / SETTINGS_FILE
    write_settings(s, path)
    assert load_settings(path) == s


def test_relative_paths_are_relative_to_the_file(tmp_path):
    path = tmp_path / SETTINGS_FILE
    path.write_text(
        'datadir = "data"\nlogdir = "/abs/log"\n[jobs]\nstorage = "data/Jobs"\n'
        '[devices]\nconfig = "devices.yml"\n[drivers.example_counter]\ntestpar = 1\n'
    )
    s = load_settings(path)
    assert s.datadir == tmp_path / "data"
    assert s.logdir == Path("/abs/log")
    assert s.jobs.storage == tmp_path / "data" / "Jobs"
    assert s.devices.config == tmp_path / "devices.yml"
    assert s.drivers == {"example_counter": {"testpar": 1}}


BASE = (
    'datadir = "/d"\nlogdir = "/l"\n[jobs]\nstorage = "/d/Jobs"\n[devices]\nconfig = "/a/d.yml"\n'
)

REJECTIONS = [
    ("malformed", "datadir = \n", "malformed TOML"),
    ("missing-section", 'datadir = "/d"\nlogdir = "/l"\n[devices]\nconfig = "x"\n', "jobs: Field"),
    ("missing-key", BASE.replace('storage = "/d/Jobs"', ""), "jobs.storage: Field required"),
    ("wrong-type", BASE + '[prefect]\nport = "abc"\n', "prefect.port"),
    ("bad-port", BASE + "[prefect]\nport = 70000\n", "prefect.port"),
    ("bad-url", BASE + '[prefect]\nurl = "ftp://x"\n', "prefect.url: must start with http"),
    ("driver-not-table", BASE + "[drivers]\nexample_counter = 1\n", "drivers.example_counter"),
]


@pytest.mark.parametrize(
    "text, fragment", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejections(tmp_path, text, fragment):
    path = tmp_path / SETTINGS_FILE
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert_one_line(str(err.value), f"settings file {path}: ", fragment)


def test_unknown_keys_are_listed_not_refused(tmp_path):
    path = tmp_path / SETTINGS_FILE
    path.write_text(
        "colour = 1\n"
        + BASE.replace('Jobs"\n', 'Jobs"\ndbpath = "/d/Jobs/db.sqlite"\n')
        + "[prefect]\nui = true\nnope = 2\n"  # ui: an old key of ours, dropped silently
        "[repositories]\ndefault.endpoint = 'https://x/'\n"
        "[drivers]\nexample_counter.idle_measurement_interval = 1\n"
        "example_counter.lpp_timeout = 2\nother.key = 3\n"
    )
    s = load_settings(path)
    assert s.unused == ["colour", "jobs.dbpath", "prefect.nope"]
    assert s.repositories == {"default": {"endpoint": "https://x/"}}
    known = {"example_counter": frozenset({"idle_measurement_interval"}), "other": None}
    assert unused_driver_keys(s.drivers, known) == ["drivers.example_counter.lpp_timeout"]
    assert load_settings(path) == s


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"settings file .*settings.toml: does not exist"):
        load_settings(tmp_path / SETTINGS_FILE)


def test_valid_base_text(tmp_path):
    path = tmp_path / SETTINGS_FILE
    path.write_text(BASE)
    assert isinstance(load_settings(path), Settings)


def test_default_dirs():
    appdir, datadir, logdir = default_dirs()
    assert all(isinstance(p, Path) and "tomato" in str(p) for p in (appdir, datadir, logdir))


def test_settings_written_by_the_first_version_still_load(tmp_path):
    path = tmp_path / SETTINGS_FILE
    path.write_text(
        'datadir = "data"\nlogdir = "log"\n[jobs]\nstorage = "data/Jobs"\n'
        '[devices]\nconfig = "devices.yml"\n[prefect]\nui = true\n'
    )
    assert load_settings(path).prefect.url is None
