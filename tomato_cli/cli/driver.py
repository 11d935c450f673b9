"""``tomato driver``: install, list and remove tomato 2.x driver packages.

They live in a virtual environment of their own (``[legacy] venv`` in the settings file,
by default ``<datadir>/legacy-drivers``), so that the ``tomato`` 2.x they depend on never
replaces our commands; the daemon runs their driver hosts from there.
"""

from __future__ import annotations

import subprocess
from typing import Any

import typer

from tomato_cli.cli.output import Common, emit, fail, sub_app, table
from tomato_cli.rpc import Reply

driver_app = sub_app("Install, list and remove tomato 2.x driver packages.")

FIND_LINKS = typer.Option(
    None, "--find-links", "-f", help="Also look for packages in this folder (pip --find-links)."
)
NO_INDEX = typer.Option(False, "--no-index", help="Do not ask the package index (pip --no-index).")


def _settings(opts: Common) -> Any:
    from tomato_cli.models import ConfigError, load_settings

    try:
        return load_settings(opts.settings_path)
    except ConfigError as exc:
        fail(opts, str(exc))


def _check_loads(venv: Any, module: str, driver: str) -> str | None:
    """None if the driver package loads in the legacy environment, else why not."""
    cmd = [str(venv.python), "-m", "drivers.legacy.host", "--check", "--module", module]
    cmd += ["--driver", driver, "--port", "0"]
    code = venv.code_path()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(code)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=code, env=env, timeout=120)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1].removeprefix(f"cannot start driver {driver!r}: ") if lines else "failed"


@driver_app.command("install")
def install(
    ctx: typer.Context,
    packages: list[str] = typer.Argument(..., help="Packages, e.g. tomato-jumo (pip syntax)."),
    find_links: list[str] | None = FIND_LINKS,
    no_index: bool = NO_INDEX,
):
    """Install tomato 2.x driver packages into the legacy driver environment."""
    from drivers.legacy.venv import LegacyVenv, LegacyVenvError
    from drivers.origins import LEGACY, DriverCatalog

    opts: Common = ctx.obj
    settings = _settings(opts)
    venv = LegacyVenv(settings.legacy_venv())
    before = venv.packages()
    pip_args = [f"--find-links={link}" for link in find_links or []]
    pip_args += ["--no-index"] if no_index else []
    try:
        venv.install(packages, pip_args)
    except LegacyVenvError as exc:
        fail(opts, str(exc))
    catalog = DriverCatalog(venv.path)
    changed = [p for name, p in sorted(venv.packages().items()) if before.get(name) != p]
    lines, rows = [], []
    for pkg in changed:
        problem = _check_loads(venv, pkg.module, pkg.driver)
        use = catalog.resolve(pkg.driver)
        name = pkg.driver if use.origin == LEGACY else f"{pkg.driver}@{LEGACY}"
        line = f"installed {pkg.package} {pkg.version}: use it as `driver: {name}`"
        if use.origin != LEGACY:
            line += f" (`driver: {pkg.driver}` means the {use.describe()['origin']} one)"
        if problem:
            line += f"; it does not load yet: {problem}"
        lines.append(line)
        rows.append({**pkg.__dict__, "use_as": name, "loads": problem is None, "problem": problem})
    if not changed:
        lines.append("no driver package was added or changed")
    lines.append(f"legacy driver environment: {venv.path} (tomato {venv.tomato_version()})")
    lines.append("run `tomato reload` to use new drivers in a running daemon")
    emit(opts, Reply(True, "\n".join(lines), rows))


@driver_app.command("list")
def list_drivers(ctx: typer.Context):
    """Every driver the devices file may name: origin, package, version."""
    from drivers.origins import DriverCatalog

    opts: Common = ctx.obj
    catalog = DriverCatalog.from_settings(_settings(opts))
    rows = []
    for source in catalog:
        first = catalog.resolve(source.name) == source
        rows.append({**source.describe(), "use_as": source.name if first else source.qualified})
    emit(
        opts,
        Reply(True, "", rows),
        lambda data: table(data, ["name", "origin", "package", "version", "use_as"]),
    )


@driver_app.command("remove")
def remove(
    ctx: typer.Context,
    packages: list[str] = typer.Argument(..., help="Packages to remove, e.g. tomato-jumo."),
):
    """Remove tomato 2.x driver packages from the legacy driver environment."""
    from drivers.legacy.venv import LegacyVenv, LegacyVenvError

    opts: Common = ctx.obj
    venv = LegacyVenv(_settings(opts).legacy_venv())

    def norm(name: str) -> str:
        return name.lower().replace("_", "-")

    installed = {norm(p.package): p for p in venv.packages().values()}
    missing = [p for p in packages if norm(p) not in installed]
    if missing:
        fail(opts, f"{missing[0]} is not a driver package in the legacy environment {venv.path}")
    try:
        venv.remove(packages)
    except LegacyVenvError as exc:
        fail(opts, str(exc))
    gone = [installed[norm(p)].driver for p in packages]
    emit(opts, Reply(True, f"removed {', '.join(packages)} (drivers: {', '.join(gone)})", gone))
