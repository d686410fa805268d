"""Build the breadth corpus: other real manuals, as HTML, for training the reader wider.

    python model_builds/breadth_corpus.py [--out model_builds/breadth/corpus]

The reader was trained on questions about five manuals and more questions about the same
five made it worse on a sixth (docs/evaluation.md, "The reader, second round"). These are
other manuals that every Debian machine of ours carries offline: GNU manuals in Info
format (/usr/share/info, turned into HTML here: one <h2> per node, an <h3> per underlined
heading inside it, paragraphs and indented examples kept), and the Valgrind and Ninja
manuals as the Debian packages ship them (HTML already). None of them is a subject of the
development corpus (../shared/corpus: CamlIDL, DocBook XSL, FreedomBox). The output is
committed (model_builds/breadth/corpus/), so that rebuilding the reader does not depend on
what a machine has installed; this script is how it was made.
"""

from __future__ import annotations

import argparse
import gzip
import html
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INFO = Path("/usr/share/info")
DOC = Path("/usr/share/doc")
OUT = REPO / "model_builds" / "breadth" / "corpus"

INFO_MANUALS = ("bc", "bzip2", "coreutils", "diffutils", "ed", "find", "gnupg", "grep",
                "gzip", "nettle", "rluserman", "sed", "time", "wget")  # fmt: skip
# Valgrind's pages that are its manual (not its change logs, licences, READMEs for ports, nor
# FAQ.html and QuickStart.html, which in this build are only their tables of contents).
VALGRIND = ("bbv-manual", "cg-manual", "cl-manual", "dh-manual", "drd-manual", "hg-manual",
            "lk-manual", "manual-core", "manual-core-adv", "manual-intro",
            "manual-writing-tools", "mc-manual", "ms-manual", "nl-manual")  # fmt: skip

_UNDERLINE = re.compile(r"^([*=\-.])\1*$")
_HEADER = re.compile(r"^File: [^,]+,\s+Node: ([^,\t]+)")
_MARKER = re.compile(r"\x00\x08\[.*?\x00\x08\]", re.S)  # Info's image and index markers


def info_parts(name: str) -> list[Path]:
    """The files holding a manual's nodes: the numbered parts of a split manual, in order."""
    parts = sorted(INFO.glob(f"{name}.info-*.gz"), key=lambda p: int(p.name.split("-")[-1][:-3]))
    return parts or [INFO / f"{name}.info.gz"]


def info_nodes(name: str) -> list[tuple[str, list[str]]]:
    """(node name, its lines) for every node of an Info manual."""
    nodes = []
    for part in info_parts(name):
        text = gzip.decompress(part.read_bytes()).decode("utf-8", errors="replace")
        text = _MARKER.sub("", text)
        for block in text.split("\x1f")[1:]:
            lines = block.lstrip("\n").splitlines()
            match = _HEADER.match(lines[0]) if lines else None
            if match:
                nodes.append((match.group(1).strip(), lines[1:]))
    return nodes


def node_html(node: str, lines: list[str]) -> str:
    """One node as HTML: its title as <h2>, underlined headings as <h3>, no menu."""
    if "* Menu:" in lines:
        lines = lines[: lines.index("* Menu:")]
    while lines and not lines[0].strip():
        lines = lines[1:]
    out: list[str] = []
    title = node
    if len(lines) > 1 and _UNDERLINE.match(lines[1]) and len(lines[1]) >= len(lines[0]) - 1:
        title, lines = lines[0].strip(), lines[2:]
    out.append(f"<h2>{html.escape(title)}</h2>")
    block: list[str] = []

    def flush() -> None:
        if not any(line.strip() for line in block):
            block.clear()
            return
        indented = all(line.startswith("     ") or not line.strip() for line in block)
        text = "\n".join(block).strip("\n")
        if indented:
            out.append(f"<pre>{html.escape(text)}</pre>")
        else:
            out.append(f"<p>{html.escape(text)}</p>")
        block.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and _UNDERLINE.match(underline) and abs(len(underline) - len(line)) <= 1:
            flush()
            out.append(f"<h3>{html.escape(line.strip())}</h3>")
            i += 2
            continue
        if not line.strip():
            flush()
        else:
            block.append(line.rstrip())
        i += 1
    flush()
    return "\n".join(out)


def info_html(name: str) -> str:
    nodes = [node_html(node, lines) for node, lines in info_nodes(name) if node != "Top"]
    head = f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{name}</title></head>'
    return head + "\n<body>\n" + "\n".join(nodes) + "\n</body></html>\n"


def build(out: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    for name in INFO_MANUALS:
        path = out / f"{name}.html"
        path.write_text(info_html(name), encoding="utf-8")
        written.append(path)
    (out / "valgrind").mkdir()
    for page in VALGRIND:
        path = out / "valgrind" / f"{page}.html"
        shutil.copyfile(DOC / "valgrind" / "html" / f"{page}.html", path)
        written.append(path)
    path = out / "ninja-manual.html"
    shutil.copyfile(DOC / "ninja-build" / "manual.html", path)
    written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    written = build(args.out)
    size = sum(p.stat().st_size for p in written)
    print(f"{len(written)} files, {size / 1e6:.1f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
