"""Every command and option the docs show exists, and the README's command table lists every option.

The docs are read as a user reads them: command lines in code blocks, inline code such as
`manta-mqtt run SWARM.py [--wait S]` (README's command table included), and bare options such
as `--resume`, which belong to a command named in the same paragraph or table row. Each option
is looked up in the options that command's ``--help`` declares, so a renamed or dropped option
fails here before a user finds out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edge_node.cli import cli as edge_cli
from manta_mqtt.cli.main import cli as manta_cli

from .conftest import ROOT

PROGRAMS: dict[str, click.Group] = {"manta-mqtt": manta_cli, "edge-node": edge_cli}
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "broker_config" / "README.md"]
README_TABLE_HEADER = "| Command | What it does |"
#: Options every command has; the table need not list them.
ALWAYS = {"--help"}

OPTION = re.compile(r"^--?[A-Za-z][\w-]*")
INLINE_CODE = re.compile(r"`([^`]+)`")
LIST_ITEM = re.compile(r"^\s*(?:[-*]|\d+\.)\s")
REPEATED = re.compile(r"^-([A-Za-z])\1+$")


@dataclass(frozen=True)
class Mention:
    """One place the docs show a command line, or a bare option with the commands around it."""

    where: str  # file:line
    program: str  # "manta-mqtt", "edge-node", or "" for a bare option
    commands: tuple[str, ...]  # `manta-mqtt run/broker` names two; () for group options
    options: tuple[str, ...]
    context: tuple[tuple[str, str], ...] = ()  # (program, command) named near a bare option


def parse_command_line(text: str) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """(program, commands, options) of ``manta-mqtt run X --a [--b B\\|-c]``, or None if it is no command line."""
    words = text.replace("\\|", "|").split()
    if len(words) < 2 or words[0] not in PROGRAMS:
        return None
    rest = words[1:]
    commands: tuple[str, ...] = ()
    if not rest[0].startswith("-"):
        commands = tuple(rest[0].split("/"))
        rest = rest[1:]
    options = []
    for word in rest:
        for piece in word.strip("[]()").split("|"):
            match = OPTION.match(piece.strip("[]()").split("=")[0])
            if match:
                options.append(REPEATED.sub(r"-\1", match.group(0)))  # -vv is -v twice
    return words[0], commands, tuple(options)


def blocks(lines: list[str]) -> Iterator[tuple[int, str, bool]]:
    """(first line number, text, is code) of each code line and each prose paragraph, table row or list item."""
    in_code = False
    paragraph: list[str] = []
    start = 0

    def flush() -> Iterator[tuple[int, str, bool]]:
        if paragraph:
            yield start, "\n".join(paragraph), False
            paragraph.clear()

    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            yield from flush()
            in_code = not in_code
        elif in_code:
            yield number, line, True
        elif not line.strip():
            yield from flush()
        else:
            if line.lstrip().startswith("|") or LIST_ITEM.match(line):
                yield from flush()
            if not paragraph:
                start = number
            paragraph.append(line)
            if line.lstrip().startswith("|"):
                yield from flush()
    yield from flush()


def mentions(path: Path) -> Iterator[Mention]:
    """Every command line and bare option shown in one Markdown file."""
    name = path.relative_to(ROOT).as_posix()
    lines = path.read_text().splitlines()
    pending = ""  # a code line continued with a backslash
    for number, text, is_code in blocks(lines):
        if is_code:
            line = pending + text.strip().removeprefix("$ ")
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            parsed = parse_command_line(line.split(" #")[0])
            if parsed:
                yield Mention(f"{name}:{number}", *parsed)
            continue
        named: list[tuple[str, str]] = []
        bare: list[str] = []
        for span in INLINE_CODE.findall(text.replace("\\|", "|")):
            words = " ".join(span.split())
            parsed = parse_command_line(words)
            if parsed:
                yield Mention(f"{name}:{number}", *parsed)
                named += [(parsed[0], command) for command in parsed[1]]
            elif words.startswith("-"):
                pieces = words.split()[0].split("|")
                bare += [REPEATED.sub(r"-\1", piece) for piece in pieces if OPTION.fullmatch(piece)]
        if bare:
            yield Mention(f"{name}:{number}", "", (), tuple(bare), tuple(named))


@cache
def declared_options(program: str, command: str | None) -> frozenset[str]:
    """The options listed in ``program [command] --help``: what a user can actually type."""
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(PROGRAMS[program], args, prog_name=program)
    assert result.exit_code == 0, result.output
    found: set[str] = set()
    in_options = False
    for line in result.output.splitlines():
        if line.rstrip().endswith(":") and not line.startswith(" "):
            in_options = line.startswith("Options")
        elif in_options and line.startswith("  -"):
            column = re.split(r"\s{2,}", line.strip())[0]
            found.update(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", column))
    return frozenset(found)


def all_mentions() -> list[Mention]:
    return [mention for path in DOCS if path.exists() for mention in mentions(path)]


def commands_of(program: str) -> set[str]:
    return set(PROGRAMS[program].commands)


def test_the_docs_are_read() -> None:
    """The parser finds what is known to be there, so an empty parse cannot pass the tests below."""
    pairs = {(m.program, c, o) for m in all_mentions() for c in m.commands for o in m.options}
    for expected in [
        ("manta-mqtt", "run", "--reconnect-grace"),
        ("manta-mqtt", "run", "--min-nodes"),
        ("manta-mqtt", "broker", "--port-file"),
        ("manta-mqtt", "results", "--tag"),
        ("edge-node", "start", "-v"),
        ("edge-node", "start", "-q"),
        ("edge-node", "check", "--config"),
    ]:
        assert expected in pairs
    bare = {(o, ctx) for m in all_mentions() if not m.program for o in m.options for ctx in m.context}
    assert ("--reconnect-grace", ("manta-mqtt", "run")) in bare  # docs/reliability.md's knobs
    assert parse_command_line("manta-mqtt run/broker [--a A\\|-b] ... --c=1 -vv") == (
        "manta-mqtt",
        ("run", "broker"),
        ("--a", "-b", "--c", "-v"),
    )


def test_every_documented_command_exists() -> None:
    missing = [
        f"{m.where}: {m.program} {command}"
        for m in all_mentions()
        if m.program
        for command in m.commands
        if command not in commands_of(m.program)
    ]
    assert not missing, "the docs show commands that do not exist:\n" + "\n".join(missing)


def test_every_documented_option_exists() -> None:
    missing = [
        f"{m.where}: {m.program} {command or ''} {option}"
        for m in all_mentions()
        if m.program
        for command in m.commands or (None,)
        # a command that does not exist is reported by test_every_documented_command_exists
        if command is None or command in commands_of(m.program)
        for option in m.options
        if option not in declared_options(m.program, command)
    ]
    assert not missing, "the docs show options that the command does not have:\n" + "\n".join(missing)


def test_every_bare_option_belongs_to_a_command_named_beside_it() -> None:
    """`--resume` alone belongs to a command in the same paragraph; with none named, to some command."""
    everywhere = [(p, c) for p in PROGRAMS for c in commands_of(p)]
    missing = []
    for m in all_mentions():
        if m.program:
            continue
        candidates = [(p, c) for p, c in m.context if c in commands_of(p)] or everywhere
        for option in m.options:
            if not any(option in declared_options(p, c) for p, c in candidates):
                named = ", ".join(f"{p} {c}" for p, c in candidates)
                missing.append(f"{m.where}: {option} (none of: {named})")
    assert not missing, "the docs show options that no command beside them has:\n" + "\n".join(missing)


def test_the_readme_table_lists_every_option() -> None:
    """The README's command table is the reference: every command, with every option it takes."""
    readme = ROOT / "README.md"
    lines = readme.read_text().splitlines()
    header = lines.index(README_TABLE_HEADER)
    table_end = next(i for i in range(header, len(lines)) if not lines[i].startswith("|"))
    listed: dict[tuple[str, str], set[str]] = {}
    for m in mentions(readme):
        line = int(m.where.rsplit(":", 1)[1])
        if m.program and header < line <= table_end:
            for command in m.commands:
                listed.setdefault((m.program, command), set()).update(m.options)
    unlisted = []
    for program in PROGRAMS:
        for command in sorted(commands_of(program)):
            if (program, command) not in listed:
                unlisted.append(f"{program} {command} (no row)")
                continue
            # one spelling of an option (-v or --verbose) is enough
            shown = listed[(program, command)] | ALWAYS
            unlisted += [
                f"{program} {command} {'/'.join(sorted(n))}" for n in _spellings(program, command) if not n & shown
            ]
    assert not unlisted, "README's command table misses:\n" + "\n".join(unlisted)


def _spellings(program: str, command: str) -> list[frozenset[str]]:
    """Each option of a command as the set of its names (``{"-v", "--verbose"}``)."""
    params = PROGRAMS[program].commands[command].params
    return [frozenset(p.opts + p.secondary_opts) for p in params if isinstance(p, click.Option)]


RUN_DEFAULTS = {  # --option: CoordinatorOptions field
    "min_nodes": "min_nodes",
    "wait": "wait_nodes",
    "chunk_size": "chunk_size",
    "mqtt_version": "mqtt_version",
    "seed": "seed",
    "max_iterations": "max_iterations",
    "reconnect_grace": "reconnect_grace",
}


@pytest.mark.parametrize("param, field", sorted(RUN_DEFAULTS.items()))
def test_run_defaults_are_the_coordinators(param: str, field: str) -> None:
    """The defaults ``manta-mqtt run --help`` and the docs show are the ones the coordinator uses."""
    from manta_mqtt import CoordinatorOptions

    defaults = {f.name: f.default for f in dataclasses.fields(CoordinatorOptions)}
    cli_defaults = {p.name: p.default for p in manta_cli.commands["run"].params}
    assert param in cli_defaults, f"manta-mqtt run has no option for CoordinatorOptions.{field}"
    assert cli_defaults[param] == defaults[field]
