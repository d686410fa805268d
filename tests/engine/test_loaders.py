"""Loading text and Markdown files: encodings, binary files, errors, heading sections."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from engine.ingest.loaders import SUPPORTED_SUFFIXES, is_supported, load
from engine.types import UserError

SAMPLE = "Café crème: naïve façade — “quoted” déjà vu.\n\nSecond paragraph here.\n"


def test_supported_suffixes() -> None:
    assert {".pdf", ".txt", ".md", ".markdown", ".html", ".htm"} <= SUPPORTED_SUFFIXES
    assert is_supported(Path("Notes.MD")) and is_supported("manual.PDF")
    assert not is_supported(Path("photo.jpg"))


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-32-le", codecs.BOM_UTF32_LE),
        ("utf-32-be", codecs.BOM_UTF32_BE),
        ("utf-16-le", b""),
        ("utf-16-be", b""),
        ("cp1252", b""),
    ],
)
def test_text_encodings_decode_to_the_same_text(tmp_path: Path, encoding: str, bom: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(bom + SAMPLE.encode(encoding))
    [segment] = load(path)
    assert segment.text == "Café crème: naïve façade — “quoted” déjà vu.\nSecond paragraph here."
    assert segment.page is None and segment.section is None


def test_latin1_text(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("Grüße aus Köln, señor.".encode("latin-1"))
    assert load(path)[0].text == "Grüße aus Köln, señor."


def test_plain_text_rejoins_wrapped_lines_but_keeps_paragraphs_and_lists(tmp_path: Path) -> None:
    path = tmp_path / "readme.txt"
    path.write_text("A wrapped\nsentence here.\n\nNext paragraph.\n- item one\n- item two\n")
    assert load(path)[0].text == "A wrapped sentence here.\nNext paragraph.\n- item one\n- item two"


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)) * 8, b"\x89PNG\r\n\x1a\n" + os.urandom(2000), b"ELF\x02\x01" + bytes(500)],
    ids=["all-bytes", "png", "elf"],
)
def test_binary_file_named_txt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"^data\.txt: looks like a binary file, not text$"):
        load(path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^gone\.txt: file not found"):
        load(tmp_path / "gone.txt")


def test_directory_and_unsupported_type(tmp_path: Path) -> None:
    folder = tmp_path / "folder.md"
    folder.mkdir()
    with pytest.raises(UserError, match=r"^folder\.md: not a regular file"):
        load(folder)
    with pytest.raises(UserError, match=r"^song\.mp3: unsupported file type"):
        load(tmp_path / "song.mp3")


@pytest.mark.parametrize("content", [b"", b"  \n\n\t "], ids=["empty", "whitespace"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "blank.md"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"^blank\.md: the file is empty$"):
        load(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("hidden")
    path.chmod(0)
    with pytest.raises(UserError, match=r"^secret\.txt: permission denied"):
        load(path)


MARKDOWN = """\
---
title: Front matter is not text
---
Intro with a [link](https://example.org) and ![a diagram](d.png), **bold** and
*emphasis*, `code` and snake_case_name.

# Install *Quire*

Run the installer.

```bash
# this is a comment, not a heading
make install
```

Configuration
=============

Edit the file.

Usage notes
-----------

- first item
- second item

~~~
Fake heading
------------
~~~

## Final ##
Bye.
"""


def test_markdown_headings_and_code_fences(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN)
    segments = load(path)
    assert [s.section for s in segments] == [
        None,
        "Install Quire",
        "Configuration",
        "Usage notes",
        "Final",
    ]
    intro, install, _, usage, final = (s.text for s in segments)
    assert intro == (
        "Intro with a link and a diagram, bold and emphasis, code and snake_case_name."
    )
    assert install == "Run the installer.\n# this is a comment, not a heading\nmake install"
    assert usage == "- first item\n- second item\nFake heading\n------------"
    assert final == "Bye."
    assert all(s.page is None for s in segments)
