"""Text from the network reaches a terminal or a log only escaped and bounded (protocol/text.py)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

from rich.console import Console

from manta_mqtt.coordinator.progress import ConsoleProgress
from manta_mqtt.protocol.text import TEXT_LIMIT, PrintableFormatter, printable

from ..conftest import ROOT

HOSTILE = "boom\x1b]0;owned\x07\x1b[2J\x1b[1;1Hall fine\rhidden\x9b31m\x08\u202eevil\ud800"
TRACEBACK = 'Traceback (most recent call last):\n  File "worker.py", line 3, in main\n\traise ValueError("x")\n'


BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def controls(text: str) -> set[str]:
    """The characters left in ``text`` that a terminal acts on (newline and tab aside)."""
    return {c for c in text if unicodedata.category(c) in ("Cc", "Cs") or c in BIDI} - {"\n", "\t"}


def test_every_control_character_is_escaped_but_newline_and_tab() -> None:
    every = "".join(chr(c) for c in range(0x100)) + "\u202a\u202e\u2066\u2069\ud800\udfff"
    shown = printable(every)
    assert controls(shown) == set()
    assert "\n" in shown and "\t" in shown
    assert "\\x1b" in shown and "\\x9b" in shown and "\\x7f" in shown and "\\x00" in shown and "\\u202e" in shown
    assert "".join(chr(c) for c in range(0x20, 0x7F)) in shown  # printable ASCII untouched
    assert "é" in printable("café") and printable("ü ß 中文 ✓") == "ü ß 中文 ✓"


def test_a_traceback_stays_readable() -> None:
    assert printable(TRACEBACK) == TRACEBACK
    assert printable(TRACEBACK.replace("\n", "\r\n")) == TRACEBACK  # CRLF is a newline, not a rewind
    assert printable("a\rb") == "a\\x0db"  # a lone CR would hide what came before it


def test_escape_sequences_are_shown_not_run() -> None:
    shown = printable(HOSTILE)
    assert shown.startswith("boom\\x1b]0;owned\\x07\\x1b[2J")
    assert "\\x0dhidden" in shown and "\\u202eevil\\ud800" in shown
    assert controls(shown) == set()
    shown.encode()  # a lone surrogate would make printing it raise


def test_one_line_escapes_newlines_and_tabs_too() -> None:
    assert printable("a\nb\tc", one_line=True) == "a\\x0ab\\x09c"


def test_long_text_is_cut_with_a_note() -> None:
    assert printable("x" * TEXT_LIMIT) == "x" * TEXT_LIMIT
    shown = printable("y" * (TEXT_LIMIT + 1234))
    assert shown == "y" * TEXT_LIMIT + " [... 1234 more characters cut]"
    assert printable("abcdef", 3) == "abc [... 3 more characters cut]"
    assert len(printable("\x1b" * 10_000_000, 100)) < 1000  # a 10 MB "traceback" stays small


def test_the_progress_display_shows_a_hostile_node_error_escaped() -> None:
    """Every engine Warn/Info reaches the terminal through ConsoleProgress: nothing gets through raw."""
    out = io.StringIO()
    progress = ConsoleProgress(Console(file=out, color_system=None, force_terminal=False, width=200))
    progress.warn(f"node n1 failed worker: {TRACEBACK}{HOSTILE}")
    progress.info(f"node n2: {HOSTILE}")
    progress.step_finished(1, "worker", 2, 2, {f"acc{HOSTILE}": 0.5})
    progress.finished("failed", HOSTILE, 1)
    progress.warn("x" * (TEXT_LIMIT * 4))
    text = out.getvalue()
    assert controls(text) == set()
    assert "\x1b" not in text and "\x9b" not in text
    assert text.count("\\x1b]0;owned") == 4
    assert 'File "worker.py", line 3, in main\n' in text  # the traceback keeps its lines
    assert f"{3 * TEXT_LIMIT} more characters cut" in text


def test_log_records_are_escaped() -> None:
    formatter = PrintableFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("edge_node", logging.WARNING, __file__, 1, "task output: %s", (HOSTILE,), None)
    assert controls(formatter.format(record)) == set()
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    formatted = formatter.format(record)
    assert "Traceback (most recent call last):\n" in formatted and controls(formatted) == set()


def test_the_command_lines_log_through_printable(tmp_path: Path) -> None:
    """edge-node's log (here: a warning quoting a file name) is escaped too; so is manta-mqtt's."""
    config = tmp_path / "node\x1b[2J.toml"
    config.write_text('[node]\nid = "n1"\n[broker]\nurl = "mqtt://127.0.0.1:1"\npassword = "p"\n')
    config.chmod(0o644)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in (["check"], ["start", "--broker", "ftp://bad"]):
        result = subprocess.run(
            [sys.executable, "-m", "edge_node.cli", *command, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert "readable by group and others" in result.stderr, result.stderr
        assert "node\\x1b[2J.toml" in result.stderr and "\x1b" not in result.stderr
    script = "import logging; from manta_mqtt.cli.main import _logging; _logging(0); logging.warning('a\\x1bb')"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert "a\\x1bb" in result.stderr and "\x1b" not in result.stderr
