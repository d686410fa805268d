"""Hostile files: none may stall, crash or blow up an ingest; each is reported and skipped.

Every case here was a fault found by probing (issue 10): a FIFO that blocked `open()`
forever, `/dev/zero` behind a symlink, quadratic Markdown and HTML parsing, a charset
that raised UnicodeError, symlink loops and duplicates.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from engine.index.store import Store
from engine.ingest import html
from engine.ingest.html import extract_html
from engine.ingest.loaders import load, read_bytes
from engine.ingest.markdown import clean_inline, extract_markdown
from engine.ingest.pipeline import Ingestor
from engine.types import UserError
from tests.conftest import REPO
from tests.factory import write_pdf

GOOD = "Sourdough starter needs feeding twice a day with equal weights of flour and water."
# Inputs that took 30 to over 90 s before parsing was made linear (1-2 MB each).
HOSTILE_MARKDOWN = {
    "bold-a": "**a " * (64 * 1024 // 4),
    "brackets": "[" * (1 << 20),
    "images": "![" * (1 << 19),
    "link-parens": "[a](" * (1 << 18),
    "underscores": " _a" * (1 << 18),
    "strike": "~~a " * (1 << 18),
    "backticks": "`" * (1 << 20) + "a",
    "tags": "<a" * (1 << 19),
    "atx-spaces": "# " + " " * (1 << 20) + "x",
    "table-rule": "|---" + " " * (1 << 20) + "x",
}
HOSTILE_HTML = {
    "end-tags": "</" * (1 << 19),
    "start-tags": "<a" * (1 << 19),
    "processing": "<?" * (1 << 19),
    "comments": "<!-- >" * (1 << 17),
    "sections": "<![CDATA[ >" * (1 << 16),
    "text-then-end-tags": "<p>" + GOOD + "</p>" + "</" * (1 << 19),
}


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """fn(*args) and the CPU seconds it took (not wall time: the test machine is shared)."""
    start = time.process_time()
    result = fn(*args)
    return result, time.process_time() - start


@pytest.mark.parametrize("name", sorted(HOSTILE_MARKDOWN))
def test_markdown_parsing_is_linear_on_hostile_text(name: str) -> None:
    _, seconds = _timed(extract_markdown, HOSTILE_MARKDOWN[name])
    assert seconds < 5, f"{name}: {seconds:.1f} s"


@pytest.mark.parametrize("name", sorted(HOSTILE_HTML))
def test_html_parsing_is_bounded_on_hostile_text(name: str) -> None:
    segments, seconds = _timed(extract_html, HOSTILE_HTML[name])
    assert seconds < 5, f"{name}: {seconds:.1f} s"
    if name == "text-then-end-tags":
        assert segments[0].text.startswith(GOOD)


def test_markdown_inline_markup_still_reduces_to_text() -> None:
    source = (
        "**Bold** and __strong__, *em* and _em_, snake_case_name stays, ~~gone~~, "
        "`code`, [link](http://x.org) and ![alt](i.png), [ref][1], <b>tag</b>, "
        "<https://example.org>, **a *nested* one**."
    )
    assert clean_inline(source) == (
        "Bold and strong, em and em, snake_case_name stays, gone, code, link and alt, ref, "
        "tag, https://example.org, a nested one."
    )
    [segment] = extract_markdown("# Title ##\n\ntext\n\n| a | b |\n| --- | :-: |\n| 1 | 2 |")
    assert segment.section == "Title"
    assert segment.text == "text\n| a | b |\n| 1 | 2 |"


def test_html_escaped_openings_keep_their_text() -> None:
    [segment] = extract_html("<p>if a <b>b</b> and x < y</p><p>then 2 <3")
    assert segment.text == "if a b and x < y\nthen 2 <3"


@pytest.mark.parametrize("section", ["<![CDATAO[ x ]]>", "<![ x ]>", "<![cdata-x[ y ]]>"])
def test_html_marked_sections_the_parser_rejects_are_text(section: str) -> None:
    """html.parser raised AssertionError ("unknown status keyword"): found by the fuzzer."""
    [segment] = extract_html(f"<p>{GOOD}</p>{section}<p>After.</p>")
    assert segment.text.startswith(GOOD) and segment.text.endswith("After.")


def test_html_parse_past_its_budget_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="too long"):
        extract_html(f"<p>{GOOD}</p>" * 200, budget_s=0)


@pytest.mark.parametrize("charset", ["undefined", "punycode", "idna", "utf-7", "rot13", "nope"])
def test_html_meta_charset_naming_a_non_text_codec_falls_back(tmp_path: Path, charset: str) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(f'<meta charset="{charset}"><p>Caf\xe9 {GOOD}</p>'.encode("cp1252"))
    [segment] = load(path)
    assert segment.text == f"Café {GOOD}"


def test_special_files_are_reported_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    for name, kind in (("pipe.txt", "a named pipe"), ("zero.txt", "a device")):
        with pytest.raises(UserError, match=f"{name}: .*not a regular file"):
            load(tmp_path / name)
        with pytest.raises(UserError, match=f"{name}: {kind}, not a regular file"):
            _within(10, read_bytes, tmp_path / name)  # checked on the open file, not before opening


def _within(seconds: float, fn: Any, *args: Any) -> Any:
    """fn(*args) in a daemon thread: fails, instead of hanging, if it blocks past `seconds`;
    re-raises what it raised."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread to raise
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if errors:
        raise errors[0]
    assert results, f"still running after {seconds} s (blocked on a file?)"
    return results[0]


def _ingest(index: Path, embedder: Any, paths: list[Path]) -> Any:
    """(report, documents) of one ingest, with its own Store (one per thread)."""
    with Store(index, model=embedder.name, dim=embedder.dim) as store:
        return Ingestor(store, embedder, workers=1).run(paths), store.documents()


def _library(tmp_path: Path) -> Path:
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "good.txt").write_text(GOOD)
    (folder / "page.html").write_text(f"<meta charset='undefined'><p>{GOOD} Rye too.</p>")
    (folder / "slow.md").write_text(f"{GOOD} Spelt too.\n\n" + HOSTILE_MARKDOWN["brackets"])
    (folder / "tags.html").write_text(HOSTILE_HTML["text-then-end-tags"])
    os.mkfifo(folder / "pipe.txt")
    (folder / "zero.txt").symlink_to("/dev/zero")
    (folder / "loop.txt").symlink_to(folder / "loop.txt")
    (folder / "same.txt").symlink_to(folder / "good.txt")
    return folder


def test_one_hostile_file_never_stalls_or_aborts_an_ingest(tmp_path: Path, embedder: Any) -> None:
    folder = _library(tmp_path)
    report, documents = _within(60, _ingest, tmp_path / "index.sqlite3", embedder, [folder])
    indexed = sorted(Path(p).name for p in report.indexed)
    assert indexed == ["good.txt", "page.html", "slow.md", "tags.html"]  # same.txt: once
    failed = {Path(p).name: reason for p, reason in report.failed}
    assert set(failed) == {"pipe.txt", "zero.txt", "loop.txt"}
    assert "named pipe" in failed["pipe.txt"] and "device" in failed["zero.txt"]
    assert "symbolic links" in failed["loop.txt"]
    in_docs = {d.name: d.error for d in documents}
    assert {name for name, error in in_docs.items() if error} == set(failed)


def test_a_symlink_loop_named_directly_is_reported(tmp_path: Path, embedder: Any) -> None:
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    report, _ = _ingest(tmp_path / "index.sqlite3", embedder, [loop])
    assert [Path(p).name for p, _ in report.failed] == ["loop.txt"]
    assert report.indexed == []


CHUNK_SCRIPT = """
import resource, sys, time
from pathlib import Path
from engine.ingest import pipeline as ingest
ingest._init_worker(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.process_time()
parsed = ingest.parse_file(Path(sys.argv[2]), 200, 40)
seconds = time.process_time() - start
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
longest = max(parsed.chunks, key=lambda c: len(c.text))
tokens = max(ingest._count_tokens(c.text) for c in [longest, *parsed.chunks[::101]])
chars = len(longest.text)
print(len(parsed.chunks), tokens, chars, grown * 1024, seconds)
"""


@pytest.mark.parametrize(
    "content",
    ["x." * (5 << 19), "x" * (5 << 20), "<b>" * ((5 << 20) // 3), "word " * (1 << 18)],
    ids=["5MB-line", "5MB-word", "5MB-tags", "1MB-words"],
)
def test_chunks_of_a_huge_line_fit_the_window_in_bounded_memory(
    tmp_path: Path, embedder: Any, content: str
) -> None:
    """Measured before the fix: 29-34 s and 2.8 GB for a 5 MB line; a 5 MB word was one
    5 MB chunk. After: under a second and well under 100 MB."""
    path = tmp_path / "huge.txt"
    path.write_text(content)
    result = subprocess.run(
        [sys.executable, "-c", CHUNK_SCRIPT, str(embedder.folder / "tokenizer.json"), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    chunks, tokens, chars, grown, seconds = result.stdout.split()
    assert int(chunks) > 500
    assert int(tokens) <= 200 and int(chars) <= 2000
    assert int(grown) < 20 * len(content), f"peak memory grew by {int(grown) >> 20} MB"
    assert float(seconds) < 20


def test_a_file_past_its_parse_budget_is_reported_and_the_rest_indexed(
    tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html, "PARSE_SECONDS", 0.0)  # every HTML parse is now too slow
    monkeypatch.setattr(html, "PARSE_SECONDS_PER_MB", 0.0)
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "good.txt").write_text(GOOD)
    (folder / "slow.html").write_text(f"<p>{GOOD}</p>" * 50)
    report, documents = _ingest(tmp_path / "index.sqlite3", embedder, [folder])
    assert [Path(p).name for p in report.indexed] == ["good.txt"]
    [(path, reason)] = report.failed
    assert Path(path).name == "slow.html" and "took too long" in reason
    assert {d.name: bool(d.error) for d in documents} == {"good.txt": False, "slow.html": True}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file names are bytes")
def test_a_file_name_that_is_not_utf8_is_indexed_and_kept_exactly(
    tmp_path: Path, embedder: Any
) -> None:
    """Issue 22: `bad-\\xff.txt` raised UnicodeEncodeError in the store and nothing in the
    folder was indexed. Its path is kept byte for byte and shown with U+FFFD."""
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "good.txt").write_text(GOOD)
    bad = folder / os.fsdecode(b"bad-\xff.txt")
    bad.write_text("The ferry to the island leaves at dawn from the north pier.")
    empty = folder / os.fsdecode(b"empty-\xfe.txt")
    empty.write_text("  ")
    index = tmp_path / "index.sqlite3"
    report, documents = _ingest(index, embedder, [folder])
    assert sorted(report.indexed) == sorted([str(bad), str(folder / "good.txt")])
    [(path, reason)] = report.failed
    assert path == str(empty) and reason == "empty-\ufffd.txt: the file is empty"
    by_name = {d.name: d for d in documents}
    assert set(by_name) == {"good.txt", "bad-\ufffd.txt", "empty-\ufffd.txt"}
    assert by_name["bad-\ufffd.txt"].path == str(bad)  # the real file, not its display name
    assert by_name["bad-\ufffd.txt"].to_json()["path"] == str(folder / "bad-\ufffd.txt")
    again, _ = _ingest(index, embedder, [folder])
    assert sorted(again.skipped) == sorted([str(bad), str(folder / "good.txt")])
    with Store(index) as store:
        ((top, _),) = store.vector_search(embedder.embed_query("ferry to the island"), 1)
        [row] = store.fetch([top])
        assert (row.document, row.path) == ("bad-\ufffd.txt", str(bad))
        assert store.remove_document("default", empty)
    bad.unlink()
    final, documents = _ingest(index, embedder, [folder])
    assert final.removed == [str(bad)]  # found gone by its exact name
    assert sorted(d.name for d in documents) == ["empty-\ufffd.txt", "good.txt"]


def write_pdf_bomb(path: Path, megabytes: int, unit: bytes = b"0 ") -> Path:
    """A one-page PDF whose FlateDecode content stream inflates to `megabytes` MB of
    `unit`, then draws one line of text (about 1 MB on disk for 1000 MB inflated)."""
    squeeze = zlib.compressobj(9)
    block = unit * ((1 << 20) // len(unit))
    parts = [squeeze.compress(block) for _ in range(megabytes)]
    parts += [squeeze.compress(b" BT /F1 12 Tf 72 720 Td (Boom) Tj ET"), squeeze.flush()]
    stream = b"".join(parts)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 5 0 R"
        b" /Resources << /Font << /F1 3 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


BOMB_SCRIPT = """
import json, resource, sys, time
from pathlib import Path
from engine.index.embedding import Embedder
from engine.ingest.pipeline import Ingestor
from engine.index.store import Store
start = time.monotonic()
embedder = Embedder(Path(sys.argv[1]))
with Store(Path(sys.argv[2]), model=embedder.name, dim=embedder.dim) as store:
    report = Ingestor(store, embedder, workers=2).run([Path(sys.argv[3])])
# This process's own peak from /proc (ru_maxrss carries the parent's peak across exec:
# pytest's, gigabytes by the end of a full run); the workers' from RUSAGE_CHILDREN.
own = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
peak = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"indexed": report.indexed, "failed": report.failed, "peak": peak * 1024,
                  "seconds": time.monotonic() - start}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and ru_maxrss")
def test_a_pdf_decompression_bomb_is_too_large_to_read_and_the_rest_indexed(
    tmp_path: Path, embedder: Any
) -> None:
    """Issue 22: a 1 MB PDF inflating to 1000 MB took PDFium past 2 GB (the issue's own
    reached 5.9 GB) and was read in this process. Now its worker's memory is bounded."""
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "good.txt").write_text(GOOD)
    write_pdf(folder / "manual.pdf", [["The pump runs at noon and stops at dusk."]])
    bomb = write_pdf_bomb(folder / "bomb.pdf", 1000)
    assert bomb.stat().st_size < 2 << 20
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BOMB_SCRIPT,
            str(embedder.folder),
            str(tmp_path / "i.db"),
            str(folder),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout)
    assert sorted(Path(p).name for p in outcome["indexed"]) == ["good.txt", "manual.pdf"]
    [(path, reason)] = outcome["failed"]
    assert Path(path).name == "bomb.pdf" and "too large to read" in reason, reason
    assert outcome["peak"] < 1 << 30, f"peak memory {outcome['peak'] >> 20} MB"
    assert outcome["seconds"] < 60


def test_a_huge_single_line_is_chunked_in_linear_time(tmp_path: Path, embedder: Any) -> None:
    """Issue 22: a 5 MB file of one line was still embedding at 300 s. Its chunking is
    linear (0.47 and 3.7 CPU-s for 1 and 8 MB here); the time is the embedding, about
    7,000 passages at ~22 a second on two cores, now shown with an ETA (test_ingest.py)."""
    words = ["the", "pump", "runs", "at", "noon", "valve", "opens", "dawn", "for", "ferry"]
    rng = random.Random(22)
    line = " ".join(" ".join(rng.choices(words, k=12)) + "." for _ in range(180_000))
    assert len(line) > 8 << 20
    seconds = []
    for megabytes in (1, 8):
        path = tmp_path / f"line-{megabytes}.txt"
        path.write_text(line[: megabytes << 20])
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                CHUNK_SCRIPT,
                str(embedder.folder / "tokenizer.json"),
                str(path),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        seconds.append(float(result.stdout.split()[-1]))
    assert seconds[1] < 12 * seconds[0] + 1.0, seconds  # quadratic would be 64x


def test_search_json_shows_a_non_utf8_path_printably() -> None:
    from engine.types import SearchResult

    name = os.fsdecode(b"bad-\xff.txt")
    result = SearchResult(1, name, "/docs/" + name, None, None, 0.5, "text")
    data = result.to_json()
    assert data["document"] == "bad-\ufffd.txt" and data["path"] == "/docs/bad-\ufffd.txt"
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # printable: no surrogates left
