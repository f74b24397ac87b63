"""The documentation a user reads: a README short enough to read, and links that lead somewhere."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@lru_cache(maxsize=None)  # a page is linked to many times
def anchors(md: Path) -> frozenset[str]:
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)  # no headings in code
    return frozenset(slug(h) for h in re.findall(r"^#+\s+(.*)$", text, flags=re.M))


def broken_links(md: Path) -> list[str]:
    """Relative links of `md` whose file or heading does not exist."""
    bad = []
    for target in LINK.findall(md.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
            bad.append(target)
    return bad


def test_readme_is_user_documentation_of_at_most_200_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; results and designs belong in docs/"


def test_every_relative_link_in_the_docs_leads_to_a_file_and_heading_that_exist():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]
    bad = {str(p.relative_to(ROOT)): b for p in pages if (b := broken_links(p))}
    assert not bad, bad


def test_the_link_check_can_fail(tmp_path):
    (tmp_path / "a.md").write_text("# Where it stands\n[ok](#where-it-stands) [gone](b.md) [no](#nowhere)\n")
    assert broken_links(tmp_path / "a.md") == ["b.md", "#nowhere"]
