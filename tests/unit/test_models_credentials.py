"""Prefect credentials (tomato_cli.models.credentials), [daemon] settings and the CLI's host."""

from __future__ import annotations

import os

import pytest

from tests.unit.messages import assert_one_line
from tomato_cli.address import settings_host
from tomato_cli.models import SETTINGS_FILE, ConfigError, PrefectSettings, load_settings
from tomato_cli.models.credentials import read_auth_file, read_auth_string, write_auth_file
from tomato_cli.orchestration.lab_config import LabConfig, LabServerError

SECRET = "s3cr3t-Pa55"

BASE = (
    'datadir = "data"\nlogdir = "log"\n[jobs]\nstorage = "data/Jobs"\n'
    '[devices]\nconfig = "devices.yml"\n'
)


def settings_file(tmp_path, extra: str):
    path = tmp_path / SETTINGS_FILE
    path.write_text(BASE + extra)
    return path


def secret_file(tmp_path, text: str = f"tomato:{SECRET}\n", mode: int = 0o600):
    path = tmp_path / "auth"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_auth_file_is_read_and_resolved_next_to_the_settings_file(tmp_path) -> None:
    secret_file(tmp_path)
    settings = load_settings(settings_file(tmp_path, '[prefect]\nauth_file = "auth"\n'))
    assert settings.prefect.auth_file == tmp_path / "auth"
    assert read_auth_string(settings.prefect, environ={}) == f"tomato:{SECRET}"


def test_auth_sources_in_order_file_then_string_then_environment(tmp_path) -> None:
    env = {"PREFECT_API_AUTH_STRING": "env:pw"}
    path = secret_file(tmp_path)
    assert read_auth_string(PrefectSettings(), environ={}) is None
    assert read_auth_string(PrefectSettings(), environ=env) == "env:pw"
    assert read_auth_string(PrefectSettings(auth_string="s:pw"), environ=env) == "s:pw"
    cfg = PrefectSettings(auth_file=path, auth_string="s:pw")
    assert read_auth_string(cfg, environ=env) == f"tomato:{SECRET}"


def test_auth_file_readable_by_others_is_refused(tmp_path) -> None:
    path = secret_file(tmp_path, mode=0o644)
    with pytest.raises(ConfigError) as exc:
        read_auth_file(path)
    assert_one_line(str(exc.value), f"auth file {path}", f"chmod 600 {path}")
    assert SECRET not in str(exc.value)


@pytest.mark.parametrize(
    "text", [f"{SECRET}\n", f":{SECRET}", "tomato:", f"tomato:{SECRET}\nsecond:line", ""]
)
def test_auth_file_without_one_user_password_line_is_refused(tmp_path, text) -> None:
    path = secret_file(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        read_auth_file(path)
    assert_one_line(str(exc.value), f"auth file {path}", "one line user:password")
    assert SECRET not in str(exc.value)


def test_missing_auth_file_names_the_setting(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        read_auth_string(PrefectSettings(auth_file=tmp_path / "nope"), environ={})
    assert_one_line(str(exc.value), "[prefect] auth_file", "does not exist")


def test_bad_environment_credentials_are_refused_without_echo() -> None:
    with pytest.raises(ConfigError) as exc:
        read_auth_string(PrefectSettings(), environ={"PREFECT_API_AUTH_STRING": SECRET})
    assert_one_line(str(exc.value), "environment variable PREFECT_API_AUTH_STRING", "user:")
    assert SECRET not in str(exc.value)


def test_write_auth_file_makes_a_private_file_and_never_overwrites(tmp_path) -> None:
    path = tmp_path / "auth"
    write_auth_file(path, f"tomato:{SECRET}")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_auth_file(path) == f"tomato:{SECRET}"
    with pytest.raises(FileExistsError):
        write_auth_file(path, "other:pw")


def test_url_with_credentials_is_refused_without_echo(tmp_path) -> None:
    path = settings_file(
        tmp_path, f'[prefect]\nurl = "http://tomato:{SECRET}@127.0.0.1:4200/api"\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert_one_line(str(exc.value), f"settings file {path}", "use auth_file")
    assert SECRET not in str(exc.value)


def test_daemon_defaults_to_loopback_and_the_machine_name(tmp_path) -> None:
    settings = load_settings(settings_file(tmp_path, ""))
    assert settings.daemon.host == "127.0.0.1"
    assert settings.daemon.host_name == os.uname().nodename
    settings = load_settings(settings_file(tmp_path, '[daemon]\nhost = "127.0.0.2"\nname = "b-1"'))
    assert (settings.daemon.host, settings.daemon.host_name) == ("127.0.0.2", "b-1")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ('host = "10.1.2.3"', "not a loopback address"),
        ('host = "localhost"', "must be an IP address"),
        ('host = "127.0.0.2"\nname = "bench a"', "daemon.name"),
    ],
)
def test_bad_daemon_settings_are_refused(tmp_path, extra, fragment) -> None:
    path = settings_file(tmp_path, f"[daemon]\n{extra}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert_one_line(str(exc.value), f"settings file {path}", fragment)


def test_remote_daemon_address_only_when_allowed(tmp_path) -> None:
    path = settings_file(tmp_path, '[daemon]\nhost = "10.1.2.3"\nallow_remote = true\n')
    assert load_settings(path).daemon.host == "10.1.2.3"


def test_cli_host_comes_from_the_settings_file(tmp_path) -> None:
    assert settings_host(tmp_path / "missing.toml") == "127.0.0.1"
    assert settings_host(settings_file(tmp_path, "")) == "127.0.0.1"
    assert settings_host(settings_file(tmp_path, '[daemon]\nhost = "127.0.0.3"\n')) == "127.0.0.3"
    (tmp_path / "broken.toml").write_text("[daemon\n")
    assert settings_host(tmp_path / "broken.toml") == "127.0.0.1"


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (LabConfig(listen="10.1.2.3"), "--allow-remote"),
        (LabConfig(listen="lab.example"), "must be an IP address"),
        (LabConfig(db="pipe"), "socket, tcp"),
        (LabConfig(api_port=70000), "api_port"),
    ],
)
def test_bad_lab_server_configs_are_refused(config, fragment) -> None:
    with pytest.raises(LabServerError) as exc:
        config.check()
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_lab_config_round_trip(tmp_path) -> None:
    import tomllib

    config = LabConfig(listen="127.0.0.5", api_port=4300, db="tcp", db_port=6000)
    assert LabConfig(**tomllib.loads(config.dump())) == config


def test_lab_config_of_wrong_type_is_refused() -> None:
    with pytest.raises(LabServerError) as exc:
        LabConfig(allow_remote="false").check()  # type: ignore[arg-type]
    assert str(exc.value) == "allow_remote must be of type bool"
