"""The headless contract end to end: `python main.py ...` in a subprocess, real models, SQLite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pypdf
import pytest

from tests.conftest import REPO
from tests.factory import write_pdf

GOOD = ["notes.md", "latin1.txt", "utf16.txt", "page.html", "manual.pdf", "open-locked.pdf"]
BAD = ["corrupt.pdf", "empty.pdf", "binary.txt", "locked.pdf"]


def quire(data_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=os.environ.copy(),
    )


def make_library(folder: Path) -> Path:
    """A folder of small real documents: good ones in every format and broken ones."""
    folder.mkdir()
    (folder / "notes.md").write_text(
        "# Gardening\n\nTomatoes need six hours of sun.\n\n## Watering schedule\n\n"
        "Water the zucchini every morning before nine o'clock.\n",
        encoding="utf-8",
    )
    (folder / "latin1.txt").write_bytes("Le café du marché ouvre à sept heures.".encode("latin-1"))
    (folder / "utf16.txt").write_text("The spare key hides under the blue flowerpot.", "utf-16")
    (folder / "page.html").write_text(
        "<html><head><title>Bikes</title><script>var tracking = 1;</script></head><body>"
        "<nav>Home | About</nav><h1>Bicycle care</h1><p>Oil the chain every 300 kilometres.</p>"
        "<h2>Tyres</h2><p>Inflate road tyres to seven bar.</p></body></html>",
        encoding="utf-8",
    )
    write_pdf(
        folder / "manual.pdf",
        [
            ["Chapter one introduces the toaster."],
            ["To descale the kettle, boil vinegar with water for ten minutes."],
            ["The warranty lasts twenty-four months from purchase."],
        ],
    )
    _encrypt(folder / "manual.pdf", folder / "open-locked.pdf", user_password="")
    _encrypt(folder / "manual.pdf", folder / "locked.pdf", user_password="secret")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage")
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 8)
    return folder


def _encrypt(src: Path, dst: Path, user_password: str) -> None:
    writer = pypdf.PdfWriter(clone_from=src)
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    with dst.open("wb") as handle:
        writer.write(handle)


Indexed = tuple[Path, Path, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("cli")
    library = make_library(root / "library")
    data = root / "data"
    return library, data, quire(data, "ingest", str(library))


def test_ingest_indexes_good_files_and_reports_each_bad_one(indexed: Indexed) -> None:
    _library, data, result = indexed
    assert result.returncode == 1, result.stderr  # something failed, and the exit code says so
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if line.strip().startswith("failed:")]
    assert sorted(Path(line.split(": ")[1]).name for line in failed) == sorted(BAD)
    assert "password" in next(
        line for line in failed if "locked.pdf" in line and "open" not in line
    )
    docs = json.loads(quire(data, "docs", "--json").stdout)["documents"]
    ok = sorted(d["name"] for d in docs if not d["error"])
    assert ok == sorted(GOOD)


def test_search_json_follows_the_contract(indexed: Indexed) -> None:
    _library, data, _ = indexed
    result = quire(data, "search", "how long is the warranty", "--json", "--k", "3")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["query"] == "how long is the warranty"
    top = payload["results"][0]
    assert set(top) == {
        "rank", "document", "path", "page", "section", "score", "relevance", "rerank", "text"
    }  # fmt: skip
    assert isinstance(top["rerank"], float)  # the reader's score, beside the search's two
    assert top["document"] in {"manual.pdf", "open-locked.pdf"}
    assert top["page"] == 3
    assert Path(top["path"]).is_absolute()
    assert [r["rank"] for r in payload["results"]] == list(range(1, len(payload["results"]) + 1))


def test_search_finds_sections_and_decoded_text(indexed: Indexed) -> None:
    _, data, _ = indexed
    html = json.loads(quire(data, "search", "tyre pressure", "--json").stdout)["results"][0]
    assert (html["document"], html["section"], html["page"]) == ("page.html", "Tyres", None)
    latin = json.loads(quire(data, "search", "café marché", "--json").stdout)["results"][0]
    assert latin["document"] == "latin1.txt" and "café du marché" in latin["text"]
    utf16 = json.loads(quire(data, "search", "where is the spare key", "--json").stdout)
    assert utf16["results"][0]["document"] == "utf16.txt"
    script = json.loads(quire(data, "search", "tracking", "--json", "--method", "keyword").stdout)
    assert script["results"] == []  # <script> text is never indexed


def test_reingest_skips_unchanged_replaces_changed_and_drops_deleted(tmp_path: Path) -> None:
    library = make_library(tmp_path / "library")
    for name in BAD:
        (library / name).unlink()
    data = tmp_path / "data"
    assert quire(data, "ingest", str(library)).returncode == 0
    second = quire(data, "ingest", str(library))
    assert "Indexed 0 files" in second.stderr and f"skipped {len(GOOD)} unchanged" in second.stderr
    (library / "notes.md").write_text("# Gardening\n\nPlant garlic in October.\n", "utf-8")
    (library / "page.html").unlink()
    third = quire(data, "ingest", str(library))
    assert "Indexed 1 files" in third.stderr and "removed 1 deleted" in third.stderr
    hits = json.loads(quire(data, "search", "garlic", "--json", "--method", "keyword").stdout)
    assert hits["results"][0]["document"] == "notes.md"
    old = json.loads(quire(data, "search", "zucchini", "--json", "--method", "keyword").stdout)
    assert old["results"] == []
    names = {d["name"] for d in json.loads(quire(data, "docs", "--json").stdout)["documents"]}
    assert "page.html" not in names
    assert quire(data, "remove", str(library / "notes.md")).returncode == 0
    gone = json.loads(quire(data, "search", "garlic", "--json", "--method", "keyword").stdout)
    assert gone["results"] == []


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    missing = quire(data, "ingest", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    bad_model = quire(data, "ask", "hello", "--mode", "base", "--model", str(fake))
    assert bad_model.returncode == 1
    assert bad_model.stderr.strip().count("\n") == 0 and "not a GGUF" in bad_model.stderr
    not_indexed = quire(data, "remove", str(tmp_path / "x.txt"))
    assert not_indexed.returncode == 1 and "not in the index" in not_indexed.stderr


@pytest.mark.slow
def test_ask_streams_a_cited_answer_with_the_bundled_model(indexed: Indexed) -> None:
    _, data, _ = indexed
    result = quire(data, "ask", "How long is the warranty?", "--json", "--max-tokens", "24")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    # The bundled model's default mode: sources + its grounding adapter.
    assert payload["mode"] == "hybrid" and payload["answer"]
    assert payload["sources"][0]["page"] == 3
    timings = payload["timings"]
    assert set(timings) >= {"retrieval_s", "first_token_s", "total_s", "tokens", "tokens_per_s"}
    assert 0 < timings["tokens"] <= 24 and timings["first_token_s"] <= timings["total_s"]
    plain = quire(data, "ask", "Say hello.", "--mode", "base", "--max-tokens", "8")
    assert plain.returncode == 0 and plain.stdout.strip()


def test_kill_mid_ingest_leaves_a_consistent_index(tmp_path: Path) -> None:
    library = tmp_path / "many"
    library.mkdir()
    for i in range(40):
        body = " ".join(f"Paragraph {i}.{j} talks about topic {i * 7 + j}." for j in range(60))
        (library / f"doc{i:02}.txt").write_text(body, "utf-8")
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "--data-dir", str(data), "ingest", str(library)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        _wait_for_documents(data / "index.sqlite3", at_least=2, proc=proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _assert_consistent(data / "index.sqlite3")
    assert quire(data, "ingest", str(library)).returncode == 0  # and it finishes later
    _assert_consistent(data / "index.sqlite3")


def _wait_for_documents(db: Path, at_least: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (
            db.exists()
            and _count(db, "SELECT count(*) FROM documents WHERE hash IS NOT NULL") >= at_least
        ):
            return
        time.sleep(0.2)
    pytest.fail("ingest never wrote a document")


def _count(db: Path, sql: str) -> int:
    import sqlean

    conn = sqlean.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except (sqlite3.Error, sqlean.Error):  # sqlean's are its own: the schema not there yet
        return 0
    finally:
        conn.close()


def _assert_consistent(db: Path) -> None:
    """Every indexed document has exactly its chunks, each with one vector."""
    from engine.index.store import Store

    store = Store(db)
    try:
        for doc in store.documents():
            rows = store.conn.execute(
                "SELECT count(*) FROM chunks WHERE document_id = ?", (doc.id,)
            ).fetchone()[0]
            assert rows == doc.chunks, doc.path
        chunks = store.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        vectors = store.conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        vec0 = store.conn.execute("SELECT count(*) FROM vec_chunks").fetchone()[0]
        assert chunks == vectors == vec0
    finally:
        store.close()
