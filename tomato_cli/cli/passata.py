"""``passata``: talk to one component (a channel of a device) through its driver."""

from __future__ import annotations

from typing import Any

import typer
import yaml

from tomato_cli.cli.output import (
    Common,
    ask,
    emit,
    fail,
    make_app,
    run_app,
    to_yaml,
)
from tomato_cli.rpc import Reply, Unreachable, call

app = make_app("Query and set component attributes through their drivers.")

COMPONENT = typer.Argument(..., help="Component name, 'address,channel' or 'pipeline.role'.")


def _show(data: Any) -> str:
    return to_yaml(data).rstrip() if data not in (None, {}) else ""


def _run(ctx: typer.Context, component: str, cmd: str, **args: Any) -> None:
    opts: Common = ctx.obj
    emit(opts, ask(opts, "component", component=component, action=cmd, args=args), _show)


@app.command()
def status(ctx: typer.Context, component: str = COMPONENT):
    """Current status of the component (running task, attribute values)."""
    _run(ctx, component, "status")


@app.command()
def attrs(ctx: typer.Context, component: str = COMPONENT):
    """The component's attributes: type, units, bounds, settable or not."""
    _run(ctx, component, "attrs")


@app.command()
def capabilities(ctx: typer.Context, component: str = COMPONENT):
    """The techniques the component offers."""
    _run(ctx, component, "capabilities")


@app.command()
def constants(ctx: typer.Context, component: str = COMPONENT):
    """The component's constants."""
    _run(ctx, component, "constants")


@app.command()
def get(
    ctx: typer.Context,
    component: str = COMPONENT,
    attrs: list[str] = typer.Argument(..., help="Attribute names."),
):
    """Read attributes; with -y, data is {attr: value, ...} as in tomato 2.2."""
    opts: Common = ctx.obj
    values: dict[str, Any] = {}
    lines = []
    for attr in attrs:
        reply = ask(opts, "component", component=component, action="get_attr", args={"attr": attr})
        if not reply.success:
            emit(opts, reply)
        value, units = reply.data["value"], reply.data.get("units")
        values[attr] = value
        lines.append(f"{attr} = {value}{f' {units}' if units else ''}")
    emit(opts, Reply(True, f"{component}: {'; '.join(lines)}", values))


@app.command("set")
def set_(
    ctx: typer.Context,
    component: str = COMPONENT,
    attr: str = typer.Argument(...),
    value: str = typer.Argument(..., help="New value; pint strings like '2 s' allowed."),
):
    """Set one attribute; invalid values are refused and change nothing."""
    _run(ctx, component, "set_attr", attr=attr, value=yaml.safe_load(value))


@app.command()
def reset(
    ctx: typer.Context,
    component: str = COMPONENT,
    force: bool = typer.Option(
        False, "--force", "-f", help="Reset even while a job uses it (its current step ends)."
    ),
):
    """Reset the component to its defaults; refused while a job uses it, unless forced."""
    opts: Common = ctx.obj
    if not force:
        _run(ctx, component, "reset")
    comp = _find_component(opts, component)
    port = ask(opts, "driver_port", driver=comp["driver"])
    if not port.success:
        emit(opts, port)
    try:
        reply = call(
            int(port.data), "reset", timeout=30.0, key=f"{comp['address']},{comp['channel']}"
        )
    except Unreachable:
        fail(opts, f"driver {comp['driver']!r} of {comp['name']} is not running")
    if reply.success:
        reply.msg = f"reset {comp['name']} (forced)"
    emit(opts, reply, _show)


def _find_component(opts: Common, name: str) -> dict[str, Any]:
    """The component called ``name``: its name, ``address,channel`` or ``pipeline.role``."""
    reply = ask(opts, "status", what="pipelines")
    if not reply.success:
        emit(opts, reply)
    for pip in reply.data:
        for comp in pip["components"]:
            key = f"{comp['address']},{comp['channel']}"
            if name in (comp["name"], key, f"{pip['name']}.{comp['role']}"):
                return comp
    fail(opts, f"component {name!r} does not exist")


@app.command()
def register(ctx: typer.Context, component: str = COMPONENT):
    """(Re-)register the component with its driver."""
    _run(ctx, component, "register")


def main() -> None:
    run_app(app, "passata")
