"""Seeded fuzzing of the loaders and the chunker, as the fault probe of issue 10 did it.

Valid documents in every text format are mutated (bit flips, cut and repeated ranges,
markup fragments and long runs spliced in). Whatever comes out, loading and chunking a
file either gives chunks that fit the embedder's window or one UserError naming the file;
never another exception, and never a slow parse. Seeds are fixed: a failure reproduces.
"""

from __future__ import annotations

import codecs
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.ingest import pipeline as ingest
from engine.types import UserError

# QUIRE_FUZZ_INPUTS=20000 runs a longer campaign (same seeds, a longer stream of inputs).
INPUTS_PER_FORMAT = int(os.environ.get("QUIRE_FUZZ_INPUTS", "700"))
MAX_TOKENS = 120

SEEDS = {
    ".md": (
        "---\ntitle: x\n---\n# Title ##\n\nSome **bold** and _em_ text, a [link](http://x.org) "
        "and ![img](a.png).\n\nSetext\n======\n\n- item one\n- item `two`\n\n```\ncode\n```\n"
        "| a | b |\n| --- | :-: |\n| 1 | 2 |\n\n> quoted ~~text~~ [ref][1]\n\n[1]: http://y\n"
    ),
    ".html": (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>T</title>'
        "<style>p{}</style><script>if (a < b) {}</script></head><body><nav>menu</nav>"
        "<h1>Head &amp; more</h1><p>Para one.<br>Line&nbsp;two &#233; &#x41;</p>"
        "<table><tr><td>cell</td><td><p>x</p></td></tr></table><pre>  pre\n text</pre>"
        "<!-- comment --><![CDATA[ data ]]><ul><li>one</li></ul></body></html>"
    ),
    ".txt": (
        "A wrapped\nsentence here. Another one! And e.g. this?\n\nNext paragraph.\n"
        "- item one\n  indented code\n\tTabbed.\n"
    ),
}
FRAGMENTS = [
    "**", "__", "*", "_", "~~", "`", "```", "[", "]", "](", "![", "<", "</", ">", "<!--",
    "-->", "<![CDATA[", "]]>", "<?", "<!D", "&#", "&#x", "&amp", ";", "#", "# ", "\n", "\r\n",
    "\r", "\t", " ", "\x00", "\ufeff", "\u2028", "é", "ß", "中文", "\U0001f600", "\ufffd",
    "<meta charset='undefined'>", "<meta charset='punycode'>", "<meta charset='utf-16'>",
    "<script>", "</script>", "<h2>", "</h2>", "<td>", "<pre>", "| --- |", "=====", "- ",
]  # fmt: skip
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "cp1252", "latin-1"]


@pytest.fixture(scope="module")
def tokenizer(embedder: Any) -> None:
    ingest._init_worker(str(embedder.folder / "tokenizer.json"))


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random edits: bit flips, cuts, repeats, and spliced fragments or runs."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del buf[at : at + rng.randint(1, 64)]
        elif op == 2:
            end = min(len(buf), at + rng.randint(1, 32))
            buf[at:at] = buf[at:end] * rng.randint(2, 50)
        elif op == 3:
            buf[at:at] = rng.choice(FRAGMENTS).encode("utf-8")
        elif op == 4:
            run = rng.choice(FRAGMENTS) * rng.randint(100, 3000)  # hostile runs, 100 KB at most
            buf[at:at] = run.encode("utf-8")
        else:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(buf)


def encoded(rng: random.Random, text: str) -> bytes:
    encoding = rng.choice(ENCODINGS)
    return text.encode(encoding, errors="replace") if encoding != "utf-8-sig" else (
        codecs.BOM_UTF8 + text.encode("utf-8")
    )  # fmt: skip


@pytest.mark.parametrize("suffix", sorted(SEEDS))
def test_mutated_documents_load_and_chunk_or_fail_cleanly(
    tmp_path: Path, tokenizer: None, suffix: str
) -> None:
    rng = random.Random(f"quire-fuzz-{suffix}")
    path = tmp_path / f"fuzz{suffix}"
    slowest = (0.0, b"")
    outcomes = {"chunks": 0, "user_error": 0}
    for _ in range(INPUTS_PER_FORMAT):
        data = mutate(rng, encoded(rng, SEEDS[suffix]))
        path.write_bytes(data)
        start = time.process_time()
        try:
            parsed = ingest.parse_file(path, MAX_TOKENS, 20)
        except Exception as exc:  # noqa: BLE001 - anything but a UserError is a bug
            pytest.fail(f"{type(exc).__name__}: {exc} on input {data[:300]!r}")
        seconds = time.process_time() - start
        slowest = max(slowest, (seconds, data))
        if parsed.error is not None:
            assert parsed.error.startswith(path.name) and "\n" not in parsed.error
            outcomes["user_error"] += 1
            continue
        outcomes["chunks"] += 1
        for chunk in parsed.chunks:
            assert chunk.text.strip() and len(chunk.text) <= MAX_TOKENS * 10
            assert ingest._count_tokens(chunk.text) <= MAX_TOKENS, chunk.text[:200]
    assert slowest[0] < 2.0, f"{slowest[0]:.2f} s on {slowest[1][:200]!r}"
    assert outcomes["chunks"] > INPUTS_PER_FORMAT // 2, outcomes  # mostly still documents


def test_parse_file_turns_every_loader_problem_into_parsed_error(
    tmp_path: Path, tokenizer: None
) -> None:
    """The property the fuzzer leans on: parse_file reports, it does not raise."""
    (tmp_path / "empty.md").write_bytes(b"")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    for name in ("empty.md", "binary.txt", "missing.html"):
        parsed = ingest.parse_file(tmp_path / name, MAX_TOKENS, 20)
        assert parsed.error and parsed.error.startswith(name)
    with pytest.raises(UserError):
        raise UserError("UserError stays the one kind of failure a file may cause")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file names are bytes")
def test_file_names_of_random_bytes_are_indexed_and_found_again(
    tmp_path: Path, embedder: Any
) -> None:
    """Any byte but '/' and NUL may be in a Linux file name (issue 22: one that is not UTF-8
    aborted the whole ingest). Each is indexed, shown printably and found again by path."""
    from engine.index.store import Store
    from engine.ingest.pipeline import Ingestor

    rng = random.Random("quire-fuzz-names")
    folder = tmp_path / "names"
    folder.mkdir()
    allowed = [b for b in range(1, 256) if b != ord("/")]
    paths: set[str] = set()
    while len(paths) < 30:
        raw = bytes(rng.choice(allowed) for _ in range(rng.randint(1, 60)))
        path = folder / os.fsdecode(b"n" + raw + b".txt")  # "n" first: not a hidden file
        path.write_text(f"Note {len(paths)}: the pump runs at noon.")
        paths.add(str(path))
    with Store(tmp_path / "index.sqlite3", model=embedder.name, dim=embedder.dim) as store:
        report = Ingestor(store, embedder, workers=1).run([folder])
        assert report.failed == [] and set(report.indexed) == paths
        documents = store.documents()
        assert {d.path for d in documents} == paths
        for doc in documents:
            doc.name.encode("utf-8")  # printable: no surrogate escapes left
            assert doc.to_json()["path"].encode("utf-8")
        again = Ingestor(store, embedder, workers=1).run([folder])
        assert set(again.skipped) == paths and again.indexed == []
        assert all(store.remove_document("default", path) for path in paths)
        assert store.documents() == []
