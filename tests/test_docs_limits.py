"""docs/protocol.md's *Limits* table states every constant of protocol/limits.py, with its value.

The expected text is derived from the number, by the naming convention of limits.py: ``_BYTES``
and ``_SIZE`` are bytes (written in the largest binary unit that divides them exactly, else as
bytes with thousands separators), ``_SECONDS`` are seconds (whole days as days), ``ID_PATTERN``
is a regular expression in backticks, and anything else is a count.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from manta_mqtt.protocol import limits
from manta_mqtt.protocol.rejections import REASONS

PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
CONSTANTS = {name: value for name, value in vars(limits).items() if name.isupper() and not name.startswith("_")}
DAY = 24 * 3600


def as_text(name: str, value: int | str) -> str:
    if isinstance(value, str):
        return f"`{value}`"
    if name.endswith(("_BYTES", "_SIZE")):
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value % size == 0:
                return f"{value // size} {unit}"
        return f"{value:,} bytes"
    if name.endswith("_SECONDS"):
        if value % DAY == 0:
            days = value // DAY
            return f"{days} day" if days == 1 else f"{days} days"
        return f"{value:,} s"
    return f"{value:,}"


def limits_section() -> str:
    match = re.search(r"^## Limits\n(.*?)(?=^## )", PROTOCOL_MD.read_text(), re.MULTILINE | re.DOTALL)
    assert match, "docs/protocol.md has no '## Limits' section"
    return match.group(1)


def limits_table() -> dict[str, str]:
    """The *Limits* section's table as {constant: value cell}."""
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in limits_section().splitlines()
        if line.startswith("|")
    ]
    header, body = rows[0], [r for r in rows[2:] if r]
    constant, value = header.index("Constant"), header.index("Value")
    assert all(len(r) == len(header) for r in body), "a row of the Limits table has the wrong number of cells"
    names = [r[constant].strip("`") for r in body]
    assert len(names) == len(set(names)), f"a constant has several rows: {sorted(names)}"
    return dict(zip(names, (r[value] for r in body), strict=True))


def test_the_constants_follow_the_naming_convention() -> None:
    """Every constant is an int, or the id pattern: the unit rules above cover them all."""
    assert CONSTANTS
    for name, value in CONSTANTS.items():
        assert isinstance(value, str) if name == "ID_PATTERN" else type(value) is int, name


def test_every_constant_has_exactly_one_row() -> None:
    table = limits_table()
    assert sorted(table) == sorted(CONSTANTS)


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_the_doc_states_the_value(name: str) -> None:
    assert limits_table()[name] == as_text(name, CONSTANTS[name])


def test_the_rejection_reasons_named_are_real() -> None:
    named = re.findall(r"counted `(\w+)`", limits_section())
    assert named and set(named) <= set(REASONS)


def test_the_value_text_is_derived_from_the_number() -> None:
    assert as_text("X_BYTES", 1 << 20) == "1 MiB"
    assert as_text("X_SIZE", 1024) == "1 KiB"
    assert as_text("X_BYTES", 268_435_455) == "268,435,455 bytes"
    assert as_text("X_SECONDS", 600) == "600 s"
    assert as_text("X_SECONDS", 7 * DAY) == "7 days"
    assert as_text("X", 10_000) == "10,000"
