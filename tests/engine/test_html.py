"""HTML extraction: chrome dropped, heading sections, block structure, charsets."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.ingest.loaders import load
from engine.types import UserError

PAGE = """<!DOCTYPE html>
<html><head><title>Quire Help</title>
<style>body { color: red }</style>
<script>var secret = "SCRIPT TEXT";</script></head>
<body>
<header>SITE HEADER</header>
<nav><a href="/">Home</a> NAV LINKS</nav>
<div role="navigation"><div>Breadcrumb <div>ROLE NAV</div></div></div>
<p>Welcome to the &amp; help&nbsp;pages.</p>
<h1>Getting <em>started</em></h1>
<p>Install the app.<br>Then open it.</p>
<ul><li>First step</li><li>Second step</li></ul>
<noscript>NOSCRIPT TEXT</noscript>
<h2>Options</h2>
<table><tr><th>Name</th><th>Meaning</th></tr>
<tr><td><p>k</p></td><td><p>results to show</p></td></tr></table>
<pre>line one
  line two</pre>
<aside>ASIDE TEXT</aside><svg><text>SVG TEXT</text></svg>
<footer>FOOTER TEXT</footer>
<template>TEMPLATE TEXT</template>
<p>After the chrome.</p>
</body></html>
"""


@pytest.fixture
def segments(tmp_path: Path) -> list:
    path = tmp_path / "help.html"
    path.write_text(PAGE, encoding="utf-8")
    return load(path)


def test_chrome_and_scripts_dropped(segments: list) -> None:
    text = "\n".join(s.text for s in segments)
    for hidden in (
        "SCRIPT",
        "NAV",
        "SITE HEADER",
        "FOOTER",
        "ASIDE",
        "SVG",
        "NOSCRIPT",
        "TEMPLATE",
    ):
        assert hidden not in text
    assert "color: red" not in text
    assert "After the chrome." in text  # text after dropped elements is kept


def test_headings_start_sections(segments: list) -> None:
    assert [s.section for s in segments] == ["Quire Help", "Getting started", "Options"]
    assert segments[0].text == "Welcome to the & help pages."
    assert segments[1].text == "Install the app.\nThen open it.\n- First step\n- Second step"
    assert all(s.page is None for s in segments)


def test_tables_and_pre_keep_their_lines(segments: list) -> None:
    lines = segments[2].text.split("\n")
    assert lines[:4] == ["Name | Meaning", "k | results to show", "line one", "line two"]


def test_meta_charset_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "latin.htm"
    html = '<html><head><meta charset="iso-8859-1"></head><body><h3>Résumé</h3><p>Ça va</p>'
    path.write_bytes(html.encode("latin-1"))
    [segment] = load(path)
    assert (segment.section, segment.text) == ("Résumé", "Ça va")


def test_page_without_text(tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    path.write_text("<html><head><script>x()</script></head><body><nav>menu</nav></body></html>")
    with pytest.raises(UserError, match=r"^empty\.html: no text found"):
        load(path)


def test_real_manual_page(corpus: Path) -> None:
    segments = load(corpus / "freedombox-manual" / "Backups.part.html")
    sections = [s.section for s in segments]
    assert "Notes for Specific App Backups" in sections
    notes = segments[sections.index("Notes for Specific App Backups")].text
    assert "Deluge | Does not include downloaded/seeding files" in notes.split("\n")
    assert "Table of Contents" not in "\n".join(s.text for s in segments)


def test_sphinx_permalink_pilcrow_is_not_part_of_the_section(tmp_path: Path) -> None:
    page = tmp_path / "compact.html"
    page.write_text(
        "<html><body><h1>borg compact<a class='headerlink' href='#c'>¶</a></h1>"
        "<h2>Description<a class='headerlink' href='#d' title='Permalink'>¶</a></h2>"
        "<p>This command frees repository space by compacting segments.</p></body></html>",
        encoding="utf-8",
    )
    sections = [s.section for s in load(page)]
    assert "Description" in sections and all("¶" not in (s or "") for s in sections)
