"""Faults of the environment found by probing (issue 10): parallel processes on one data
dir, full and read-only disks, unwritable folders, broken settings and question files."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from engine.errors import describe
from engine.eval.scoring import load_questions
from engine.index.schema import migrations
from engine.index.sqlite import connect
from engine.index.store import Store
from engine.settings import Settings
from engine.types import Chunk, UserError
from models.lora import convert_peft
from tests.conftest import REPO
from tests.factory import make_lora, write_peft
from tests.models.test_lora import tiny_shapes, write_base

OPEN_STORE = """
import sys, time
from pathlib import Path
from engine.index.store import Store
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()  # imported, ready to race
while not go.exists():
    time.sleep(0.001)
with Store(Path(sys.argv[1])) as store:
    print(store.schema_version)
"""


def test_two_processes_opening_a_new_data_dir_at_once_both_succeed(tmp_path: Path) -> None:
    """Before the fix, 10 of 10 rounds failed with "table meta already exists"."""
    for round_ in range(10):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        index, go = folder / "index.sqlite3", folder / "go"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_STORE, str(index), str(go), str(folder / str(n))],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(2)
        ]
        deadline = time.monotonic() + 60
        while not all((folder / str(n)).exists() for n in range(2)):
            assert time.monotonic() < deadline, "the processes did not start"
            time.sleep(0.01)
        go.touch()
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"round {round_}: {err[-1500:]}"
            assert out.strip() == str(len(migrations("m", 4, "float")))  # every step, once


# -- environment errors: one line naming the file, the index intact -----------------------


def quire(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=os.environ.copy(),
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("quire: ")
    for word in words:
        assert word in line, line
    return line


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real small file system at `folder`; skips where mounting is not allowed."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_describe_classifies_os_errors_by_errno() -> None:
    cases = {
        errno.ENOSPC: "disk is full",
        errno.EROFS: "read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "not permitted",
        errno.ENOENT: "not found",
    }
    for code, words in cases.items():
        error = describe(OSError(code, os.strerror(code), "/data/x"))
        assert error is not None and str(error).startswith("/data/x: ") and words in str(error)
    assert describe(OSError(errno.EBADF, "bad file descriptor")) is None  # a bug
    assert describe(ValueError("a bug")) is None


def test_describe_classifies_real_sqlite_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "index.sqlite3"
    garbage.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(Exception, match="not a database") as caught:
        Store(garbage)
    error = describe(caught.value, garbage)
    assert error is not None and "not a Quire index" in str(error)
    with pytest.raises(Exception, match="unable to open") as caught:
        connect(tmp_path).execute("SELECT 1")  # a folder: cannot open
    assert describe(caught.value) is not None
    conn = connect(tmp_path / "ok.sqlite3")
    with pytest.raises(Exception, match="no such table") as caught:
        conn.execute("SELECT * FROM no_such_table")
    assert describe(caught.value) is None  # our SQL's fault: a bug


def test_full_disk_mid_write_reports_full_and_keeps_the_index(tmp_path: Path) -> None:
    """SQLITE_FULL inside a transaction: SQLite rolls back itself, and our second ROLLBACK
    used to raise "cannot rollback - no transaction is active" over the real error."""
    index = tmp_path / "index.sqlite3"

    def put(store: Store, name: str, texts: list[str]) -> None:
        chunks = [Chunk(text, None, None, i) for i, text in enumerate(texts)]
        vectors = np.ones((len(chunks), 4))
        store.replace_document("default", tmp_path / name, name, name, name, 1, 1.0, None,
                               chunks, vectors)  # fmt: skip

    with Store(index, dim=4) as store:
        put(store, "a.txt", ["Kept: the first document."])
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLITE_FULL past this
        with pytest.raises(Exception, match="full") as caught:
            put(store, "b.txt", ["x " * 50_000] * 20)
        error = describe(caught.value, index)
        assert error is not None and "disk is full" in str(error), repr(caught.value)
        assert not store.conn.in_transaction
    with Store(index) as store:
        assert [d.name for d in store.documents()] == ["a.txt"]
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_cli_on_a_full_disk_is_one_line_and_keeps_the_index(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "first.txt").write_text("The lighthouse keeper logs the weather at dawn.")
    with tmpfs(tmp_path / "disk", "8m") as disk:
        data = disk / "data"
        assert quire(data, "ingest", str(library / "first.txt")).returncode == 0
        (library / "second.txt").write_text("Ferries leave the harbour every hour. " * 4000)
        # Fill what is left of the disk.
        with (disk / "filler").open("wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        result = quire(data, "ingest", str(library / "second.txt"))
        assert_one_line_error(result, str(data / "index.sqlite3"), "disk is full")
        (disk / "filler").unlink()
        docs = json.loads(quire(data, "docs", "--json").stdout)["documents"]
        assert [d["name"] for d in docs if not d["error"]] == ["first.txt"]
        hits = json.loads(quire(data, "search", "lighthouse", "--json").stdout)["results"]
        assert hits[0]["document"] == "first.txt"


def test_cli_on_a_read_only_data_dir_is_one_line(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "first.txt").write_text("The lighthouse keeper logs the weather at dawn.")
    with tmpfs(tmp_path / "disk", "8m") as disk:
        data = disk / "data"
        assert quire(data, "ingest", str(library)).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for command in (["docs"], ["search", "lighthouse"], ["ingest", str(library)]):
            result = quire(data, *command)
            assert_one_line_error(result, str(data / "index.sqlite3"), "read-only")
        result = quire(disk / "new", "docs")
        assert_one_line_error(result, str(disk / "new"), "read-only")
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        docs = json.loads(quire(data, "docs", "--json").stdout)["documents"]
        assert [d["name"] for d in docs] == ["first.txt"]


def test_cli_with_an_uncreatable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = quire(blocker / "data", "docs")
    assert_one_line_error(result, str(blocker / "data"), "data folder")


@contextmanager
def locked_folder(folder: Path) -> Iterator[Path]:
    """A folder nobody may create anything in: chmod 500, or for root (who ignores modes)
    the immutable attribute; skips where neither is possible."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        unlock = ["chmod", "700", str(folder)]
    else:
        locked = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        if locked.returncode != 0:
            pytest.skip(f"root, and chattr +i is not possible here: {locked.stderr.strip()}")
        unlock = ["chattr", "-i", str(folder)]
    try:
        yield folder
    finally:
        subprocess.run(unlock, check=False)


def test_cli_with_a_data_dir_in_a_locked_folder_is_one_line(tmp_path: Path) -> None:
    with locked_folder(tmp_path / "locked") as locked:
        result = quire(locked / "data", "docs")
        assert_one_line_error(result, str(locked / "data"), "data folder with --data-dir")
        assert "permission denied" in result.stderr or "not permitted" in result.stderr


def test_cli_on_a_file_that_is_not_an_index_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "index.sqlite3").write_bytes(b"not a database at all " * 200)
    result = quire(data, "docs")
    assert_one_line_error(result, str(data / "index.sqlite3"), "not a Quire index")


# -- broken settings ----------------------------------------------------------------------


@pytest.mark.parametrize("content", ['{"top_k": 7,', "[1, 2]", "null"], ids=["cut", "list", "null"])
def test_a_broken_settings_file_is_reported_and_kept_aside(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "settings.json").write_text(content)
    settings = Settings.load(tmp_path)
    assert settings == Settings()
    assert (tmp_path / "settings.json.bad").read_text() == content
    assert not (tmp_path / "settings.json").exists()
    [record] = caplog.records
    assert "settings.json" in record.getMessage() and "settings.json.bad" in record.getMessage()
    settings.save(tmp_path)  # the next save does not overwrite what the user had
    assert (tmp_path / "settings.json.bad").read_text() == content


def test_cli_reports_a_broken_settings_file_once(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text('{"top_k": 7,')
    result = quire(tmp_path, "docs")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("settings.json.bad") == 1, result.stderr
    assert result.stderr.startswith("quire: ")


# -- question files -----------------------------------------------------------------------


def test_unknown_question_fields_are_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text(
        '{"id": "a", "question": "first?", "note": "checked by Ana"}\n'
        '{"id": "b", "question": "second?", "note": "x", "page": [3]}\n'
        '{"id": "c", "question": "third?"}\n',
        encoding="utf-8",
    )
    questions = load_questions(path)
    assert [q.id for q in questions] == ["a", "b", "c"]
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == f"{path}: ignored unknown field(s) note, page"


# -- malformed PEFT adapters --------------------------------------------------------------


def _peft(folder: Path, config: object = None, header: object = None) -> Path:
    """A good tiny PEFT folder, then its config and/or safetensors header replaced."""
    write_peft(folder, make_lora(tiny_shapes(), ["self_attn.q_proj"], 2))
    if config is not None:
        (folder / "adapter_config.json").write_text(json.dumps(config))
    if header is not None:
        blob = json.dumps(header).encode()
        payload = len(blob).to_bytes(8, "little") + blob + bytes(64)
        (folder / "adapter_model.safetensors").write_bytes(payload)
    return folder


GOOD_CONFIG = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}
TENSOR = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
MALFORMED_PEFT = {
    "config-list": ({"config": [1, 2]}, "expected a JSON object, found a list"),
    "config-null": ({"config": "null"}, "expected a JSON object, found null"),
    "r-string": ({"config": GOOD_CONFIG | {"r": "8"}}, "r must be a positive number"),
    "alpha-list": ({"config": GOOD_CONFIG | {"lora_alpha": [16]}}, "lora_alpha must be"),
    "alpha-bool": ({"config": GOOD_CONFIG | {"lora_alpha": True}}, "lora_alpha must be"),
    "alpha-pattern-str": ({"config": GOOD_CONFIG | {"alpha_pattern": "q_proj"}}, "alpha_pattern"),
    "rank-pattern-regex": ({"config": GOOD_CONFIG | {"rank_pattern": {"(": 4}}}, "bad pattern"),
    "header-list": ({"header": [1, 2]}, "its header is a list"),
    "header-no-dtype": (
        {"header": {TENSOR: {"shape": [8, 16], "data_offsets": [0, 64]}}},
        "malformed",
    ),
    "header-bad-offsets": (
        {"header": {TENSOR: {"dtype": "F32", "shape": [8, 16], "data_offsets": [0, 10**9]}}},
        "malformed",
    ),
    "header-meta-str": ({"header": {TENSOR: "F32"}}, "malformed"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_PEFT))
def test_malformed_peft_adapter_is_a_one_line_user_error(tmp_path: Path, case: str) -> None:
    spec, message = MALFORMED_PEFT[case]
    config = spec.get("config")
    folder = _peft(tmp_path / "peft", None if config == "null" else config, spec.get("header"))
    if config == "null":
        (folder / "adapter_config.json").write_text("null")
    base = write_base(tmp_path / "qwen.gguf", "qwen2")
    with pytest.raises(UserError, match=message) as caught:
        convert_peft(folder, tmp_path / "out.gguf", base)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.gguf").exists()


def test_lora_convert_to_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    folder = _peft(tmp_path / "peft")
    base = write_base(tmp_path / "qwen.gguf", "qwen2")
    (tmp_path / "a-file").write_text("in the way")
    for out in (tmp_path / "a-file" / "out.gguf", tmp_path):  # under a file; a folder
        args = ["lora", "convert", str(folder), str(out), "--base", str(base)]
        result = quire(tmp_path / "data", *args)
        assert_one_line_error(result, str(out))


# -- kill -9 ------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children + [g for c in children for g in _descendants(c)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be read


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_an_ingest_leaves_no_orphans_and_the_next_ingest_completes(
    tmp_path: Path,
) -> None:
    """Before the fix the resource tracker and both spawn workers stayed alive."""
    library = tmp_path / "library"
    library.mkdir()
    for i in range(6):  # over ingest.INLINE_BYTES in all, so parsed in spawn workers
        markup = "<p><b></b><i></i></p>" * 20_000  # slow to parse, no text: few chunks
        text = f"<h1>Tide table {i}</h1><p>High tide comes at {i} in the morning.</p>"
        (library / f"doc{i}.html").write_text(text + markup)
    data = tmp_path / "data"
    args = [sys.executable, str(REPO / "main.py"), "--data-dir", str(data), "ingest", str(library)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(children) < 3 and time.monotonic() < deadline:  # tracker + 2 workers
            time.sleep(0.05)
            children = _descendants(proc.pid)
        assert len(children) >= 3, "the ingest never started its workers"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = [pid for pid in children if _alive(pid)]
    for pid in orphans:
        os.kill(pid, 9)
    assert orphans == []
    again = quire(data, "ingest", str(library))
    assert again.returncode == 0, again.stderr[-2000:]
    with Store(data / "index.sqlite3") as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert sorted(d.name for d in store.documents() if d.hash) == [
            f"doc{i}.html" for i in range(6)
        ]


# -- symlinks from the command line ---------------------------------------------------------


def test_cli_symlink_loop_is_a_failed_document_and_can_be_removed(tmp_path: Path) -> None:
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    data = tmp_path / "data"
    result = quire(data, "ingest", str(loop))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"failed: {loop}: cannot read" in result.stderr
    [doc] = json.loads(quire(data, "docs", "--json").stdout)["documents"]
    assert doc["name"] == "loop.txt" and "symbolic links" in doc["error"]
    removed = quire(data, "remove", str(loop))
    assert removed.returncode == 0, removed.stderr[-2000:]
    assert json.loads(quire(data, "docs", "--json").stdout)["documents"] == []


# -- file names that are not UTF-8 --------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file names are bytes")
def test_cli_ingests_a_folder_with_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    """Issue 22: one such name aborted the whole ingest with UnicodeEncodeError."""
    library = tmp_path / "library"
    library.mkdir()
    (library / "first.txt").write_text("The lighthouse keeper logs the weather at dawn.")
    bad = library / os.fsdecode(b"bad-\xff.txt")
    bad.write_text("Ferries leave the harbour every hour.")
    data = tmp_path / "data"
    result = quire(data, "ingest", str(library))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Indexed 2 files" in result.stderr
    listing = quire(data, "docs")
    assert listing.returncode == 0 and str(library / "bad-\ufffd.txt") in listing.stdout
    docs = json.loads(quire(data, "docs", "--json").stdout)["documents"]
    assert sorted(d["name"] for d in docs) == ["bad-\ufffd.txt", "first.txt"]


# -- Ctrl+C during an ingest ----------------------------------------------------------------


def test_ctrl_c_during_ingest_says_what_was_kept_and_what_is_left(tmp_path: Path) -> None:
    """Issue 22: Ctrl+C printed only "quire: stopped" (and each spawn worker a traceback).
    Now the files finished are kept and said, with the number still to go."""
    from tests.factory import write_pdf

    library = tmp_path / "library"
    library.mkdir()
    (library / "a.txt").write_text("The lighthouse keeper logs the weather at dawn.")
    (library / "b.txt").write_text("Ferries leave the harbour every hour in summer.")
    write_pdf(library / "c.pdf", [["The pump runs at noon and stops at dusk."]])  # a worker
    long = " ".join(f"Entry {i}: the tide came in at {i % 12} o'clock." for i in range(12_000))
    (library / "z-long.txt").write_text(long)  # minutes of embedding on two cores
    data = tmp_path / "data"
    command = [sys.executable, str(REPO / "main.py"), "--data-dir", str(data), "ingest"]
    lines: list[str] = []
    with subprocess.Popen(
        [*command, str(library)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl+C reaches
    ) as proc:
        assert proc.stderr is not None
        try:
            for line in proc.stderr:  # progress, every 2 s
                lines.append(line)
                if line.startswith("[3/4 files]"):  # a, b and c are in; z-long is embedding
                    os.killpg(proc.pid, signal.SIGINT)
                    break
            lines += proc.stderr.readlines()
            assert proc.wait(timeout=120) == 130, "".join(lines)[-2000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = "".join(lines)
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-2000:]
    assert lines[-1] == (
        "  stopped: 3 files indexed and kept, 1 still to go; run ingest again to finish.\n"
    )
    docs = json.loads(quire(data, "docs", "--json").stdout)["documents"]
    assert sorted(d["name"] for d in docs) == ["a.txt", "b.txt", "c.pdf"]


def test_cli_ingest_keeps_library_warnings_off_the_terminal(tmp_path: Path) -> None:
    """Issue 22: pypdf's repairs of a damaged PDF were printed as 'quire: incorrect
    startxref pointer(1)'; the file is indexed and the report says nothing of them."""
    from tests.engine.test_pdf import repaired_pdf

    library = tmp_path / "library"
    library.mkdir()
    repaired_pdf(library / "repaired.pdf")
    result = quire(tmp_path / "data", "ingest", str(library))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "startxref" not in result.stderr and "pypdf" not in result.stderr, result.stderr
    assert "Indexed 1 files" in result.stderr


# -- a damaged index ----------------------------------------------------------------------


def garble_table(index: Path, table: str) -> None:
    """Overwrite the first page of `table` in a closed index with random bytes."""
    conn = sqlite3.connect(index)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        [root] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
    finally:
        conn.close()
    with index.open("r+b") as handle:
        handle.seek((root[0] - 1) * size)
        handle.write(random.Random(22).randbytes(size))


def test_a_damaged_index_is_one_line_naming_it_for_every_command(tmp_path: Path) -> None:
    """Issue 22: with its vectors' page garbled, `docs` listed the files and `ingest` said
    "skipped 2 unchanged"; only `search` said the index was damaged. Now every command
    says so, in the same line, when it opens the index."""
    library = tmp_path / "library"
    library.mkdir()
    (library / "a.txt").write_text("The lighthouse keeper logs the weather at dawn.")
    (library / "b.txt").write_text("Ferries leave the harbour every hour.")
    data = tmp_path / "data"
    assert quire(data, "ingest", str(library)).returncode == 0
    index = data / "index.sqlite3"
    garble_table(index, "embeddings")
    lines = set()
    for command in (["docs"], ["ingest", str(library)], ["search", "lighthouse"]):
        lines.add(assert_one_line_error(quire(data, *command), str(index), "damaged"))
    assert lines == {f"quire: {index}: the index is damaged; move it aside (Quire starts a new "
                     "one) and ingest your documents again"}  # fmt: skip
