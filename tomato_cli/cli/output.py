"""One way to print results: plain text for people, one YAML mapping for programs."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml

from tomato_cli.address import DEFAULT_PORT, settings_host
from tomato_cli.paths import SETTINGS_FILE
from tomato_cli.rpc import LOOPBACK, Reply, Unreachable, call

# libyaml's emitter where PyYAML has it: twice as fast for a long job list
_EMITTER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _DUMPER(_EMITTER):  # type: ignore[misc,valid-type]
    """Every record written out in full: no YAML anchors for records shown twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(data: Any) -> str:
    """YAML for the ``-y`` output: block style, keys in their given order."""
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)


@dataclass
class Common:
    """Options every command takes."""

    port: int
    host: str
    appdir: Path
    datadir: Path
    logdir: Path
    verbosity: str
    as_yaml: bool
    timeout_ms: int | None = None  # --timeout: how long to wait for the daemon (as tomato 2.2)

    @property
    def settings_path(self) -> Path:
        return self.appdir / SETTINGS_FILE

    @property
    def where(self) -> str:
        """How messages name the daemon: its port, and its address unless the default."""
        return f"port {self.port}" if self.host == LOOPBACK else f"{self.host}:{self.port}"


PORT = typer.Option(DEFAULT_PORT, "--port", "-p", help="Port of the tomato daemon.")
HOST = typer.Option(
    None,
    "--host",
    help="Address of the tomato daemon (default: [daemon] host of the settings file, "
    "else 127.0.0.1).",
)
APPDIR = typer.Option(None, "--appdir", "-A", help="Folder of the settings file.")
DATADIR = typer.Option(None, "--datadir", "-D", help="Folder for the daemon's data.")
LOGDIR = typer.Option(None, "--logdir", "-L", help="Folder for log files.")
VERBOSITY = typer.Option("INFO", "--verbosity", help="DEBUG, INFO, WARNING or ERROR.")
VERBOSE = typer.Option(0, "--verbose", "-v", count=True, help="One level more verbose.")
QUIET = typer.Option(0, "--quiet", "-q", count=True, help="One level less verbose.")
TIMEOUT = typer.Option(
    None, "--timeout", help="Milliseconds to wait for the daemon's answer (default: per command)."
)
YAML = typer.Option(False, "--yaml", "-y", help="Print one YAML mapping: success, msg, data.")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _level(name: str, verbose: int, quiet: int) -> str:
    """``name`` moved one level per -q (up) and -v (down), as tomato 2.2 counts them."""
    base = LEVELS.index(name.upper()) if name.upper() in LEVELS else 1
    return LEVELS[min(max(base + quiet - verbose, 0), len(LEVELS) - 1)]


def _show_version(ctx: typer.Context, value: bool) -> None:
    if value:
        from tomato_cli import __version__

        sys.stdout.write(f"{ctx.find_root().info_name} version {__version__}\n")
        raise typer.Exit(0)


VERSION = typer.Option(
    False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
)


# Every app and sub-app is made here, so that help reads the same everywhere:
# - printed as written: rich markup would eat "[daemon]" and "[prefect]" (settings tables
#   named in help texts) and show flags as "<bool>";
# - -h as well as --help on every command, as tomato 2.2 (argparse) takes it.
HELP_OPTIONS = ["-h", "--help"]


def sub_app(help: str) -> typer.Typer:  # noqa: A002 - typer's own word
    """A group of subcommands (``tomato pipeline``, ``tomato driver``, ...)."""
    return typer.Typer(
        help=help,
        no_args_is_help=True,
        rich_markup_mode=None,
        context_settings={"help_option_names": HELP_OPTIONS},
    )


def make_app(help: str) -> typer.Typer:  # noqa: A002 - typer's own word
    """A CLI app whose commands all take the common options (before or after the command)."""
    app = typer.Typer(
        help=help,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": HELP_OPTIONS},
    )

    @app.callback()
    def common(
        ctx: typer.Context,
        port: int = PORT,
        host: str | None = HOST,
        appdir: Path | None = APPDIR,
        datadir: Path | None = DATADIR,
        logdir: Path | None = LOGDIR,
        verbosity: str = VERBOSITY,
        verbose: int = VERBOSE,
        quiet: int = QUIET,
        timeout: int | None = TIMEOUT,
        as_yaml: bool = YAML,
        version: bool = VERSION,
    ) -> None:
        from tomato_cli.paths import default_dirs

        d_app, d_data, d_log = default_dirs()
        appdir = (appdir or d_app).expanduser().resolve()
        ctx.obj = Common(
            port=port,
            host=host or settings_host(appdir / SETTINGS_FILE),
            appdir=appdir,
            datadir=(datadir or d_data).expanduser().resolve(),
            logdir=(logdir or d_log).expanduser().resolve(),
            verbosity=_level(verbosity, verbose, quiet),
            as_yaml=as_yaml,
            timeout_ms=timeout,
        )

    return app


def emit(opts: Common, reply: Reply, text: Callable[[Any], str] | None = None) -> NoReturn:
    """Print a reply and exit: 0 on success, 1 on failure."""
    if opts.as_yaml:
        sys.stdout.write(to_yaml(reply.as_dict()))
    elif not reply.success:
        sys.stderr.write(f"error: {reply.msg}\n")
    else:
        body = text(reply.data) if text is not None else ""
        if reply.msg:
            sys.stdout.write(reply.msg + "\n")
        if body:
            sys.stdout.write(body.rstrip("\n") + "\n")
    raise typer.Exit(0 if reply.success else 1)


def fail(opts: Common, msg: str) -> NoReturn:
    emit(opts, Reply(False, msg))


def ask(opts: Common, cmd: str, timeout: float = 30.0, **args: Any) -> Reply:
    """Send a command to the daemon; a daemon that does not answer is a one-line failure."""
    if opts.timeout_ms is not None:
        timeout = max(opts.timeout_ms, 1) / 1000.0
    try:
        return call(opts.port, cmd, timeout=timeout, host=opts.host, **args)
    except Unreachable:
        fail(opts, f"no tomato daemon answers on {opts.where}; start it with `tomato start`")


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


_FLAGS = {"--yaml", "-y", "--verbose", "--quiet", "--version"}
_YAML_FLAGS = {"--yaml", "-y"}
_COUNTED = re.compile(r"^-(v+|q+)$")  # -v, -vv, -q, ...
_VALUED = {
    "--port",
    "-p",
    "--host",
    "--appdir",
    "-A",
    "--datadir",
    "-D",
    "--logdir",
    "-L",
    "--verbosity",
    "--timeout",
}


def hoist_common(argv: list[str]) -> list[str]:
    """Move common options given after a subcommand to the front, so both places work."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg in _FLAGS or _COUNTED.match(arg):
            front.append(arg)
        elif name in _VALUED and "=" in arg:
            front.append(arg)
        elif arg in _VALUED and i + 1 < len(argv):
            front += [arg, argv[i + 1]]
            i += 1
        elif arg == "--":
            rest += argv[i:]
            break
        else:
            rest.append(arg)
        i += 1
    return front + rest


def build_command(app: typer.Typer) -> Any:
    """The app as a click command tree, as ``run_app`` runs it."""
    command = typer.main.get_command(app)
    _whole_short_help(command)
    return command


def _whole_short_help(command: Any) -> None:
    """Command lists show each command's whole first paragraph: click would cut it short
    with "..." to fit its column."""
    if not command.short_help and command.help:
        command.short_help = " ".join(inspect.cleandoc(command.help).split("\n\n")[0].split())
    for sub in getattr(command, "commands", {}).values():
        _whole_short_help(sub)


def run_app(app: typer.Typer, prog: str) -> None:
    """Run a CLI; a usage mistake is one line on stderr and exit code 2, never a panel."""
    from typer._click import exceptions as click_errors

    command = build_command(app)
    try:
        code = command.main(args=hoist_common(sys.argv[1:]), prog_name=prog, standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        sys.stdout.write(exc.ctx.get_help() + "\n")
        code = 0
    except click_errors.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        msg = f"{exc.format_message()}{hint}"
        if _YAML_FLAGS & set(sys.argv[1:]):
            sys.stdout.write(to_yaml(Reply(False, msg).as_dict()))
        else:
            sys.stderr.write(f"error: {msg}\n")
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)
