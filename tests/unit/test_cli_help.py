"""Every help text of ``tomato``, ``ketchup`` and ``passata``, as the terminal shows it.

Each command and subcommand is asked for its help through the real entry point (as if
typed in a shell), with ``--help`` and with ``-h``, and what it prints is compared with
the strings written in the source: every word of the command's own text, of each of its
options and arguments, and of each subcommand's first paragraph must be there, in order.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from tomato_cli.cli import ketchup, passata, tomato
from tomato_cli.cli.output import build_command

APPS: dict[str, ModuleType] = {"tomato": tomato, "ketchup": ketchup, "passata": passata}


def _commands(command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], object]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _all() -> list[tuple[tuple[str, ...], object]]:
    out = []
    for prog, module in APPS.items():
        out += list(_commands(build_command(module.app), (prog,)))
    return out


ALL = _all()


def _flat(text: str) -> str:
    """Whitespace as one space; a word the terminal wrapped at its hyphen joined again."""
    return " ".join(re.sub(r"-\n\s+", "-", text).split())


def _paragraphs(text: str) -> list[str]:
    return [_flat(p) for p in inspect.cleandoc(text).split("\n\n") if p.strip()]


def _run(main: Callable[[], None], argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, f"{' '.join(argv)}: exit {exit_.value.code}: {err}"
    assert err == "", f"{' '.join(argv)} wrote to stderr: {err}"
    return out


def _help(path: tuple[str, ...], flag: str, capsys, monkeypatch) -> str:
    main = APPS[path[0]].main
    return _run(main, [path[0], *path[1:], flag], capsys, monkeypatch)


def test_every_command_is_checked() -> None:
    """The walk reaches the commands of all three apps and their subgroups."""
    paths = {" ".join(p) for p, _ in ALL}
    for expected in (
        "tomato",
        "tomato init",
        "tomato pipeline load",
        "tomato driver install",
        "tomato lab-server start",
        "ketchup submit",
        "ketchup plot",
        "passata get",
        "passata reset",
    ):
        assert expected in paths
    assert len(paths) > 35


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_help_shows_every_word_of_its_source(path, command, capsys, monkeypatch) -> None:
    shown = _help(path, "--help", capsys, monkeypatch)
    flat = _flat(shown)
    sources: list[tuple[str, str]] = []
    if command.help:
        sources += [("its text", p) for p in _paragraphs(command.help)]
    for param in command.params:
        if getattr(param, "help", None):
            sources.append((f"{param.opts[0]}", _flat(param.help)))
    for name, sub in getattr(command, "commands", {}).items():
        if sub.help:
            sources.append((f"subcommand {name}", _paragraphs(sub.help)[0]))
    assert sources, f"{' '.join(path)} has no help text at all"
    for what, text in sources:
        assert text in flat, (
            f"`{' '.join(path)} --help` lost words of {what}:\n  source: {text}\n  shown:\n{shown}"
        )
    # no markup of any kind left for the reader to decode, flags shown as flags
    assert "``" not in shown
    assert "<bool>" not in shown


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_dash_h_is_help(path, command, capsys, monkeypatch) -> None:
    """As in tomato 2.2, -h is --help on every command; no option of ours takes -h."""
    taken = [p.opts for p in command.params if "-h" in p.opts + p.secondary_opts]
    assert all("--help" in opts for opts in taken), f"-h is taken by {taken}"
    assert _help(path, "-h", capsys, monkeypatch) == _help(path, "--help", capsys, monkeypatch)


def test_help_after_common_options_is_the_subcommands(capsys, monkeypatch) -> None:
    """Common options before or after a subcommand do not change whose help -h shows."""
    before = _run(tomato.main, ["tomato", "-p", "1999", "status", "-h"], capsys, monkeypatch)
    after = _run(tomato.main, ["tomato", "status", "-y", "-h"], capsys, monkeypatch)
    assert before == after == _help(("tomato", "status"), "--help", capsys, monkeypatch)
    assert "Status of the daemon" in before
