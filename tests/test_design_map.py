"""docs/DESIGN.md's package map names every module of the package, in its folder, and nothing else."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _map_sections() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    body = text[text.index("## Package map"):]
    body = body[:body.index("\n## ", 3)]
    sections: dict[str, set[str]] = {}
    current = None
    for line in body.splitlines():
        heading = re.match(r"### `(distnet[\w/]*)/`", line)
        if heading:
            current = sections.setdefault(heading.group(1), set())
        item = re.match(r"- `(\w+)` — \S", line)
        if item and current is not None:
            current.add(item.group(1))
    return sections


def _package() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / "distnet").rglob("*.py"):
        rel = path.relative_to(ROOT)
        if "embedded" in rel.parts:
            continue
        modules = found.setdefault(str(rel.parent), set())
        if path.name != "__init__.py":
            modules.add(path.stem)
    return found


def test_every_module_is_in_the_map_under_its_folder():
    mapped, package = _map_sections(), _package()
    assert sorted(mapped) == sorted(package), "folders in the map differ from the package's"
    for folder, modules in package.items():
        assert mapped[folder] == modules, (f"{folder}: missing from the map {sorted(modules - mapped[folder])}, "
                                           f"in the map but not the package {sorted(mapped[folder] - modules)}")

