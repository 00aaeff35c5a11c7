"""What a report holds, independent of its rendering: sections of notes, tables, figures and code.

The HTML page and its Markdown twin are two renderings of one `Report` (`sola.viz.report.page`), so
they always say the same thing. Figures are PNG files written beside the Markdown twin; the HTML
page inlines them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Note:
    """A paragraph of plain text; `code` spans between backticks. `warning`: something is missing."""

    text: str
    warning: bool = False
    kind: str = "note"


@dataclass
class Table:
    """A table of text cells. `name`: its stable id in the page (tests and links find it by this).

    `layout`: "numbers" (cells right-aligned on one line) or "facts" (label / value rows of text).
    """

    name: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    layout: str = "numbers"
    kind: str = "table"


@dataclass
class Figure:
    """A PNG picture on disk, with the caption shown under it."""

    path: Path
    caption: str
    kind: str = "figure"


@dataclass
class Code:
    """A block of verbatim text (a YAML config)."""

    text: str
    language: str = ""
    kind: str = "code"


Block = Note | Table | Figure | Code


@dataclass
class Section:
    """One titled part of a report; `name` is its anchor in the page."""

    name: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> "Section":
        """Append blocks; returns the section (for chaining)."""
        self.blocks.extend(blocks)
        return self


@dataclass
class Report:
    """A whole report: what it is about (`kind`: "train" or "compare", `source`: the directory) and its sections."""

    title: str
    kind: str
    source: str
    sections: list[Section] = field(default_factory=list)

    def section(self, name: str, title: str) -> Section:
        """A new section appended to the report."""
        section = Section(name, title)
        self.sections.append(section)
        return section

    def figures(self) -> list[Figure]:
        """Every figure of the report, in order."""
        return [block for section in self.sections for block in section.blocks if isinstance(block, Figure)]


def number(value, digits: int = 4, scale: float = 1.0, signed: bool = False) -> str:
    """A table cell for a number: `scale * value` with `digits` decimals ("—" for None, "n/a" for NaN)."""
    if value is None:
        return "—"
    value = float(value)
    if math.isnan(value):
        return "n/a"
    return f"{scale * value:{'+' if signed else ''}.{digits}f}"
