"""The docs a newcomer walks: the CLI reference matches the parsers, every relative link resolves,
and the README stays a short getting-started page that starts with the two commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sola.cli.reference import cli_reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), target without spaces
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)  # fenced blocks and code spans hold no links


def test_cli_reference_is_up_to_date():
    expected = cli_reference()
    actual = (DOCS / "cli.md").read_text(encoding="utf-8") if (DOCS / "cli.md").exists() else ""
    assert actual == expected, (
        "docs/cli.md differs from the `sola` parsers (a flag or help text changed): run `make docs` "
        "(python -m sola.cli.reference > docs/cli.md) and commit docs/cli.md"
    )


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of the page's headings (lower case, punctuation dropped, spaces to hyphens)."""
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for line in text.splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = "".join(ch for ch in match.group(1).lower() if ch.isalnum() or ch in " -_").replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def relative_links(page: Path) -> list[str]:
    text = CODE.sub("", page.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text)
            if not re.match(r"(https?:|mailto:)", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file})")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading with anchor #{anchor} in {file.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: " + "; ".join(broken)


def test_docs_pages_exist_and_link_back():
    for name in ("method", "features", "fitting", "evaluation", "head", "datasets", "evidence", "benchmarks",
                 "development", "cli", "ARCHITECTURE"):
        assert (DOCS / f"{name}.md").is_file(), f"docs/{name}.md is missing"
    for page in DOCS.glob("*.md"):
        head = page.read_text(encoding="utf-8").splitlines()[:6]
        assert any("README.md" in line for line in head), f"{page.name} should link back to README.md near its top"


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; keep it at most 300 (move details to docs/)"
    head = "\n".join(lines[:30])
    assert "make demo" in head and "make test" in head, "README.md should start with `make demo` and `make test`"
    assert head.index("make demo") < head.index("make test")
