"""The docs speak only of this project and of what works: every relative link leads to a
file of the repository (and an anchor to one of its headings), nothing points to notes
kept outside it, and no page tells people to install fleetrun from a package index,
where it is not published."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_relative_link_leads_into_the_repository():
    broken = []
    for page in PAGES:
        for target in _LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: outside by design, and named as such
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.is_relative_to(ROOT) or not dest.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def _lines_matching(pattern: re.Pattern[str]) -> list[str]:
    """`page:line: text` of every line of the docs that `pattern` finds."""
    return [
        f"{page.name}:{n}: {line.strip()}"
        for page in PAGES
        for n, line in enumerate(page.read_text().splitlines(), 1)
        if pattern.search(line)
    ]


def test_no_page_points_to_material_kept_outside_the_project():
    # notes by section number, and the directory this checkout happens to live in
    outside = re.compile(
        r"reference §|§\d|\bthe (?:study|studies|brief)\b|" + re.escape(f"{ROOT.parent}/")
    )
    found = _lines_matching(outside)
    assert not found, found


def test_no_page_installs_fleetrun_from_a_package_index():
    found = _lines_matching(re.compile(r"pip install (?:-U )?fleetrun(?:-agent)?(?:\s|$|`)"))
    assert not found, found
