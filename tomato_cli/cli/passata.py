"""``passata``: talk to one component (a channel of a device) through its driver."""

from __future__ import annotations

from typing import Any

import typer
import yaml

from tomato_cli.cli.output import (
    Common,
    ask,
    emit,
    make_app,
    run_app,
    to_yaml,
)

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
def get(ctx: typer.Context, component: str = COMPONENT, attr: str = typer.Argument(...)):
    """Read one attribute."""
    _run(ctx, component, "get_attr", attr=attr)


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
def reset(ctx: typer.Context, component: str = COMPONENT):
    """Stop anything running on the component and reset it."""
    _run(ctx, component, "reset")


@app.command()
def register(ctx: typer.Context, component: str = COMPONENT):
    """(Re-)register the component with its driver."""
    _run(ctx, component, "register")


def main() -> None:
    run_app(app, "passata")
