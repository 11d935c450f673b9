"""The lab server (PostgreSQL + stock Prefect, basic auth) and a tomato host that uses it."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import xarray as xr

from tests.integration.harness import Tomato, counter_payload, kill_leftovers
from tests.integration.lab import (
    LabWorld,
    cli,
    configure_host,
    lab_root,
    postgres_or_skip,
    running_lab,
)
from tests.skips import system_mark
from tomato_cli.models.credentials import write_auth_file
from tomato_cli.orchestration.lab_postgres import postgres_bindir
from tomato_cli.orchestration.lab_processes import api_status
from tomato_cli.rpc import Unreachable, call, free_port

HOST_ADDRESS = "127.0.0.2"
HOST_NAME = "bench-a"


@pytest.fixture(scope="module")
def lab_server() -> Iterator[LabWorld]:
    with running_lab() as world:
        yield world


@pytest.fixture(scope="module")
def host(lab_server: LabWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomato]:
    """A tomato host: its own appdir, daemon on 127.0.0.2, credentials from a file."""
    tomato = Tomato(tmp_path_factory.mktemp("host-a"))
    try:
        configure_host(tomato, lab_server, HOST_ADDRESS, HOST_NAME)
        tomato.start()
        tomato.wait_prefect()
        yield tomato
    finally:
        tomato.stop()


def api(
    lab: LabWorld, path: str, url: str | None = None, verify: ssl.SSLContext | bool = True
) -> httpx.Response:
    auth = tuple(lab.auth.split(":", 1))
    return httpx.get(f"{url or lab.api_url}{path}", auth=auth, verify=verify, timeout=10)


def final_state(
    lab: LabWorld, flow_run_id: str, url: str | None = None, verify: ssl.SSLContext | bool = True
) -> str:
    """The flow run's state type once final (the job's end reaches Prefect just after)."""
    deadline = time.monotonic() + 30
    while True:
        state = api(lab, f"/flow_runs/{flow_run_id}", url, verify).json()["state"]["type"]
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def test_lab_server_refuses_requests_without_credentials(lab_server: LabWorld) -> None:
    assert api_status(lab_server.api_url, None) == 401
    assert api_status(lab_server.api_url, "tomato:wrong-password") == 401
    assert api_status(lab_server.api_url, lab_server.auth) == 200
    status = lab_server.ok("status")
    assert status["prefect"]["healthy"] and status["postgres"]["running"]
    assert status["postgres"]["db"] == "tcp" and status["postgres"]["port"] == lab_server.db_port
    proc = cli("lab-server", "status", "--dir", str(lab_server.dir))
    assert proc.returncode == 0 and "credentials: " in proc.stdout


def test_postgres_over_tcp_asks_for_the_password(lab_server: LabWorld) -> None:
    db_password = lab_server.secrets[2]

    def psql(user: str, password: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if password is not None:
            env["PGPASSWORD"] = password
        cmd = [str(postgres_bindir() / "psql"), "-w", "-h", "127.0.0.1"]
        cmd += ["-p", str(lab_server.db_port), "-U", user, "-d", "prefect", "-c", "select 1"]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)

    assert psql("prefect", db_password).returncode == 0
    for user, password in (("prefect", None), ("prefect", "wrong"), ("postgres", None)):
        proc = psql(user, password)
        assert proc.returncode != 0, (user, password)
        assert "password" in proc.stderr, proc.stderr


def test_lab_server_start_while_running_is_refused(lab_server: LabWorld) -> None:
    proc = lab_server.lab("start")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: the lab server in ") and "already runs" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert lab_server.ok("status")["prefect"]["healthy"]


def test_host_runs_a_job_through_the_lab_server(
    host: Tomato, lab_server: LabWorld, tmp_path: Path
) -> None:
    info = host.ok("tomato", "status")
    assert info["host"] == {"name": HOST_NAME, "address": HOST_ADDRESS}
    assert info["prefect"]["embedded"] is False
    assert info["prefect"]["api_url"] == lab_server.api_url
    pool = f"tomato-{HOST_NAME}-{host.port}"
    assert info["prefect"]["work_pool"] == pool
    assert api(lab_server, f"/work_pools/{pool}").status_code == 200

    host.prepare("pip-counter-1", "lab-sample")
    jobid = host.submit(counter_payload("lab-sample", duration=1.0, interval=0.1), cwd=tmp_path)
    job = host.wait_job(jobid)
    assert job["status"] == "c", job
    with xr.open_datatree(job["respath"], engine="netcdf4") as tree:
        assert tree["counter"]["uts"].size >= 9
    assert final_state(lab_server, job["flow_run_id"]) == "COMPLETED"
    # the job reported to its daemon at 127.0.0.2, not only through its folder
    logs = [p for p in Path(job["jobpath"]).rglob("*.log")] + list((host.root / "log").glob("*"))
    assert logs
    assert not [p for p in logs if b"daemon unreachable" in p.read_bytes()]
    assert api(lab_server, f"/flow_runs/{job['flow_run_id']}").json()["name"] == f"job-{jobid}"


def test_host_daemon_listens_on_its_own_address_and_runs_no_prefect_server(
    host: Tomato,
) -> None:
    info = host.ok("tomato", "status")
    daemon = psutil.Process(info["pid"])
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in daemon.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {(HOST_ADDRESS, host.port)}
    with pytest.raises(Unreachable):
        call(host.port, "hello", timeout=2)  # nothing of it on 127.0.0.1
    assert host.ok("tomato", "status", "--host", HOST_ADDRESS)["pid"] == info["pid"]
    msg = host.fails("ketchup", "status", "--host", "127.0.0.1")
    assert msg.startswith(f"error: no tomato daemon answers on port {host.port};")
    mine = str(host.root)
    kinds = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + str(proc.info.get("environ") or {})
        except psutil.Error:
            continue
        if mine in text:
            kinds.append(" ".join(proc.info["cmdline"] or []))
    assert any("tomato_cli.daemon" in k for k in kinds), kinds
    assert not [k for k in kinds if "prefect_server" in k or "prefect server" in k], kinds


def test_credentials_appear_in_no_log_output_or_command_line(
    host: Tomato, lab_server: LabWorld, tmp_path: Path
) -> None:
    host.prepare("pip-counter-2", "leak-check")
    jobid = host.submit(
        counter_payload("leak-check", duration=1.0, interval=0.1, verbosity="DEBUG"), cwd=tmp_path
    )
    outputs = list(lab_server.outputs)
    for args in (
        ("tomato", "status"),
        ("tomato", "status", "pipelines"),
        ("ketchup", "status"),
        ("ketchup", "status", str(jobid)),
    ):
        for flag in ("-y", ""):
            res = host.run(*args, *([flag] if flag else []))
            assert res.code == 0, res.err
            outputs.append(res.out + res.err)
    outputs.append(lab_server.lab("status", "-y").stdout)

    # every command line on the machine while the lab server, the daemon and a job run
    cmdlines, seen = [], set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdlines.append(" ".join(proc.info["cmdline"] or []))
        seen.add(proc.info["pid"])
    assert host.ok("tomato", "status")["pid"] in seen
    assert lab_server.ok("status")["prefect"]["pid"] in seen
    assert any("postgres" in c and str(lab_server.dir) in c for c in cmdlines)
    assert host.wait_job(jobid)["status"] == "c"

    # every file the host wrote (logs, job folders, databases) and the lab server's logs
    private = {host.root / "app" / "lab-auth", lab_server.dir / "auth"}
    private.add(lab_server.dir / "db-password")
    files = [p for p in host.root.rglob("*") if p.is_file() and p not in private]
    files += [p for p in (lab_server.dir / "log").rglob("*") if p.is_file()]
    files += [lab_server.dir / "postgres" / "postgresql.log", lab_server.dir / "lab-server.toml"]
    assert any(p.name.startswith("daemon_") for p in files), files
    assert any(p.name == "prefect-server.log" for p in files), files
    for secret in lab_server.secrets:
        assert len(secret) >= 20
        for text in outputs + cmdlines:
            assert secret not in text
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


def test_lab_server_on_a_unix_socket_behind_tls_serves_a_host(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL on its socket only, the API through the TLS proxy, a host on 127.0.0.3."""
    postgres_or_skip()
    world = LabWorld(lab_root())
    host = Tomato(tmp_path_factory.mktemp("host-tls"))
    try:
        tls_port = free_port()
        data = world.start(db="socket", tls_port=tls_port)
        assert data["postgres"]["db"] == "socket"
        assert data["postgres"]["address"] == str(world.dir / "postgres" / "sock")
        url = f"https://127.0.0.1:{tls_port}/api"
        cert = data["tls"]["cert"]
        assert data["api_url"] == url and data["tls"]["healthy"]
        assert api_status(url, None, cafile=cert) == 401
        assert api_status(url, world.auth, cafile=cert) == 200
        with pytest.raises(httpx.ConnectError):  # the certificate is not trusted by default
            httpx.get(f"{url}/health", timeout=5)
        with pytest.raises(httpx.RemoteProtocolError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{tls_port}/api/health", timeout=5)
        for name in ("auth", "db-password", "tls/key.pem"):
            assert os.stat(world.dir / name).st_mode & 0o777 == 0o600

        configure_host(host, world, "127.0.0.3", "bench-tls")
        settings = host.root / "app" / "settings.toml"
        settings.write_text(settings.read_text().replace(world.api_url, url))
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        host.start()
        assert host.wait_prefect()["prefect"]["api_url"] == url
        host.prepare("pip-counter-1", "tls-sample")
        jobid = host.submit(counter_payload("tls-sample", duration=0.5, interval=0.1))
        job = host.wait_job(jobid)
        assert job["status"] == "c", job
        tls = ssl.create_default_context(cafile=cert)
        assert final_state(world, job["flow_run_id"], url, tls) == "COMPLETED"
        host.stop()

        status = world.ok("status")
        mine = [psutil.Process(status[part]["pid"]) for part in ("prefect", "tls")]
        mine += [
            p
            for p in psutil.process_iter(["cmdline"])
            if f"postgres -D {world.dir}" in " ".join(p.info["cmdline"] or [])
        ]
        assert len(mine) == 3, mine
        assert world.ok("stop") == {"tls_proxy": True, "prefect": True, "postgres": True}
        _, alive = psutil.wait_procs(mine, timeout=10)
        assert not alive
        proc = world.lab("status")
        assert proc.returncode == 1
        assert "Prefect stopped, PostgreSQL stopped" in proc.stderr
        # a second stop says so; a restart keeps the credentials, certificate and database
        proc = world.lab("stop")
        assert proc.returncode == 1 and "no lab server runs in" in proc.stderr
        auth = world.auth
        assert world.ok("start")["tls"]["cert"] == cert
        assert api_status(url, auth, cafile=cert) == 200
    finally:
        host.stop()
        world.close()


def test_lab_server_bad_folders_are_refused_in_one_line(tmp_path: Path) -> None:
    for args in (("stop",), ("status",)):
        proc = cli("lab-server", *args, "--dir", str(tmp_path / "none"))
        assert proc.returncode == 1
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
        assert "holds no lab server" in proc.stderr
    proc = cli("lab-server", "start", "--dir", str(tmp_path / "x"), "--listen", "10.1.2.3")
    assert proc.returncode == 1 and "--allow-remote" in proc.stderr
    assert not (tmp_path / "x").exists()


@system_mark(None if os.geteuid() == 0 else "only root hands the cluster to `postgres`")
def test_lab_server_in_a_folder_postgres_cannot_enter_is_refused(tmp_path: Path) -> None:
    postgres_or_skip()
    # pytest's tmp folders are 0700 and owned by root: the postgres user cannot enter them
    port = str(free_port())
    proc = cli("lab-server", "start", "--dir", str(tmp_path / "lab"), "--api-port", port)
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.count("\n") == 1 and "cannot reach" in proc.stderr, proc.stderr
    kill_leftovers(tmp_path)


def test_start_with_another_host_than_the_settings_is_refused(fresh: Tomato) -> None:
    fresh.init()
    msg = fresh.fails("tomato", "start", "--host", "127.0.0.9")
    assert "--host 127.0.0.9 differs from [daemon] host = '127.0.0.1'" in msg


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("mode", "chmod 600"),
        ("url", "use auth_file"),
        ("address", "not a loopback address"),
    ],
)
def test_host_with_bad_lab_settings_does_not_start(
    fresh: Tomato, change: str, fragment: str
) -> None:
    world = LabWorld(fresh.root / "nolab")
    world.dir.mkdir(parents=True)
    write_auth_file(world.dir / "auth", "tomato:never-sent-anywhere-0123")
    auth_file = configure_host(fresh, world, HOST_ADDRESS, HOST_NAME)
    settings = fresh.root / "app" / "settings.toml"
    if change == "mode":
        auth_file.chmod(0o644)
    elif change == "url":
        text = settings.read_text().replace("http://", "http://tomato:never-sent-anywhere-0123@")
        settings.write_text(text)
    else:
        settings.write_text(settings.read_text().replace(HOST_ADDRESS, "10.1.2.3"))
    try:
        msg = fresh.fails("tomato", "start")
    finally:
        # the fixture's `tomato stop` must not send anything off loopback
        settings.write_text(settings.read_text().replace("10.1.2.3", HOST_ADDRESS))
    assert fragment in msg and "never-sent-anywhere" not in msg
