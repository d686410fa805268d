"""docs/architecture.md's Modules table names every module, and no module that is gone.

Every .py under engine/, models/, cli/ and ui/ (a package's `__init__.py` aside) and
main.py must have a row. A row may name several modules of one folder: the first with its
folder, the next ones by file name alone (`engine/index/store.py`, `schema.py`).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FOLDERS = ("engine", "models", "cli", "ui")
TOP = {*FOLDERS, "main.py", "packaging", "model_builds", "benchmarks", "tests", "docs"}


def table_modules(markdown: str) -> set[str]:
    """The repository paths named in the first cell of each row of the Modules table."""
    section = re.split(r"^## Modules$", markdown, maxsplit=1, flags=re.M)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    named: set[str] = set()
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) < 3 or not cells[1].strip().startswith("`"):
            continue
        folder = ""
        for name in re.findall(r"`([^`]+)`", cells[1]):
            if name.split("/")[0] in TOP:
                folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
                named.add(name)
            else:
                named.add(folder + name)
    return named


def source_modules() -> set[str]:
    found = {"main.py"}
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            if path.name != "__init__.py":
                found.add(path.relative_to(REPO).as_posix())
    return found


def test_rows_name_several_modules_of_one_folder() -> None:
    table = (
        "## Modules\n| module | owns |\n| --- | --- |\n"
        "| `engine/index/store.py`, `schema.py` | the schema |\n"
        "| `main.py` | the entry point |\n"
        "| `packaging/build.py`, `deb/control` | make dist |\n"
        "## Next\n| `ui/not_in_the_table.py` | x |\n"
    )
    assert table_modules(table) == {
        "engine/index/store.py",
        "engine/index/schema.py",
        "main.py",
        "packaging/build.py",
        "packaging/deb/control",
    }


def test_every_module_has_a_row_and_every_row_a_module() -> None:
    named = table_modules((REPO / "docs" / "architecture.md").read_text(encoding="utf-8"))
    modules = source_modules()
    missing = sorted(modules - named)
    assert not missing, f"add these to docs/architecture.md's Modules table: {missing}"
    gone = sorted(
        n for n in named if n.endswith(".py") and n.split("/")[0] in FOLDERS and n not in modules
    )
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"
