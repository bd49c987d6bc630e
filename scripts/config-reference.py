#!/usr/bin/env python3
"""Rewrite the settings table of docs/configuration.md from the config models.

Run after adding or changing a field of scorer.config:
    python scripts/config-reference.py
tests/unit/test_reference.py fails until the table matches the models.
"""

from pathlib import Path

from scorer import reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def main() -> None:
    text = DOC.read_text(encoding="utf-8")
    head, _, rest = text.partition(reference.TABLE_START)
    _, _, tail = rest.partition(reference.TABLE_END)
    table = f"{reference.TABLE_START}\n{reference.render()}{reference.TABLE_END}"
    DOC.write_text(head + table + tail, encoding="utf-8")


if __name__ == "__main__":
    main()
