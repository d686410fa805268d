"""Faults in Quire's own state found by probing (issue 22): settings of the wrong type,
bad training data, a damaged history, a data folder that is a file, who may read the data
folder, interrupted training installs, and the models folder."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.eval.testset import add_question
from engine.finetune.trainer import TrainProgress
from engine.history import History, Message
from engine.paths import ensure_data_dir
from engine.settings import Settings
from engine.types import SearchResult, UserError
from tests.conftest import REPO
from tests.e2e.test_faults import assert_one_line_error, quire, tmpfs
from tests.engine.test_training import job, shared_weights, write_examples


def test_settings_of_the_wrong_type_fall_back_with_one_warning_each(tmp_path: Path) -> None:
    """Before the fix: a TypeError traceback from `search`."""
    library = tmp_path / "library"
    library.mkdir()
    (library / "tides.txt").write_text("The lighthouse keeper logs the weather at dawn.")
    data = tmp_path / "data"
    assert quire(data, "ingest", str(library)).returncode == 0
    (data / "settings.json").write_text(json.dumps({"top_k": "five", "min_score": [0.1]}))
    result = quire(data, "search", "lighthouse", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["results"][0]["document"] == "tides.txt"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("quire: ") and "top_k must be a whole number" in lines[0]
    assert "min_score must be a number" in lines[1] and "default (0.3)" in lines[1]


def test_deeply_nested_settings_are_kept_aside(tmp_path: Path) -> None:
    """Before the fix: a RecursionError traceback."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.json").write_text("[" * 100_000)
    result = quire(data, "docs")
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("quire: ") and "settings.json.bad" in line
    assert (data / "settings.json.bad").stat().st_size == 100_000


# -- bad training data --------------------------------------------------------------------


def train(data_dir: Path, data: Path, base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return quire(data_dir, "train", str(data), "--base", str(base), *args)


def test_training_data_with_no_good_line_names_the_first_bad_ones(
    tmp_path: Path, llm_path: Path
) -> None:
    """Before the fix: "no usable training examples (5 lines left out)", no line named."""
    data = tmp_path / "bad.jsonl"
    data.write_text('oops\n{"prompt": "x"}\n[1]\n\n{"messages": []}\n', encoding="utf-8")
    result = train(tmp_path / "data", data, llm_path, "--max-steps", "1")
    line = assert_one_line_error(result, str(data), "line 1: not JSON", "line 2: ", "line 3: ")
    assert "2 more" in line and "--check" in line
    checked = train(tmp_path / "data", data, llm_path, "--check")
    assert checked.returncode == 1
    assert [n for n in range(1, 6) if f"skipped line {n}: " in checked.stderr] == [1, 2, 3, 4, 5]


def test_hostile_training_lines_are_reported_by_number_and_fast(
    tmp_path: Path, llm_path: Path
) -> None:
    """Before the fix: RecursionError and UnicodeEncodeError tracebacks; a 10 MB line took
    11 s and 857 MB to refuse (50 MB: 195 s, 2.45 GB); now 50 MB: 0.9 s, 113 MB."""
    good = json.dumps({"prompt": "Name a colour.", "completion": "red"})
    lines = [
        good,
        json.dumps({"prompt": "word " * 4_000_000, "completion": "x"}),  # 20 MB
        "[" * 100_000,
        '{"prompt": "\\ud800 half a character", "completion": "x"}',
        '{"messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "\\udfff"}]}',
        good,
    ]
    data = tmp_path / "hostile.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    started = time.monotonic()
    result = train(tmp_path / "data", data, llm_path, "--check", "--json")
    assert time.monotonic() - started < 20
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    payload = json.loads(result.stdout)
    assert payload["examples"] == 2
    problems = payload["problems"]
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 3", "line 4", "line 5"]
    assert "20.0 MB long" in problems[0] and "nested too deeply" in problems[1]
    assert "surrogate" in problems[2] and "surrogate" in problems[3]


def test_a_test_set_with_a_hostile_line_still_takes_new_questions(data_dir: Path) -> None:
    """Before the fix: RecursionError from the app's "add to test set"."""
    (data_dir / "test-questions.jsonl").write_text("[" * 100_000 + "\n", encoding="utf-8")
    gold = SearchResult(1, "a.txt", "/docs/a.txt", 2, None, 0.9, "text")
    row = add_question(data_dir, "Which page?", gold)
    assert row == {"id": "mine-001", "question": "Which page?", "doc": "a.txt", "pages": [2]}


# -- the data folder: a file in its way; who may read it ----------------------------------


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    """Before the fix: a FileExistsError traceback from docs, ingest and ask."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("in the way")
    (tmp_path / "a.txt").write_text("Some text.")
    for command in (["docs"], ["ingest", str(tmp_path / "a.txt")], ["ask", "Why?"]):
        result = quire(blocker, *command)
        assert_one_line_error(result, str(blocker), "a file is in the way of the data folder")
    app = quire(blocker)  # the desktop app, offscreen: stops before any window
    assert_one_line_error(app, str(blocker), "a file is in the way of the data folder")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_data_folder_and_its_files_are_the_users_alone(tmp_path: Path) -> None:
    """Before the fix: the folder 0755, history.sqlite3 and logs/quire.log 0644."""
    from ui.app import setup_logging

    data = tmp_path / "data"
    assert quire(data, "docs").returncode == 0
    assert mode(data) == 0o700
    history = History(data)
    history.add(history.create(), Message("user", "A private question"))
    assert mode(data / "history.sqlite3-wal") == 0o600  # SQLite's own files follow
    Settings(top_k=4).save(data)
    add_question(data, "Which page?", SearchResult(1, "a.txt", "/a.txt", 2, None, 0.9, "x"))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        log_file = setup_logging(data)
        logging.getLogger("quire").warning("a line in the log")
        [handler] = [h for h in root.handlers if h not in handlers and hasattr(h, "doRollover")]
        handler.doRollover()  # the new file after a rotation too
        logging.getLogger("quire").warning("a line in the new log")
    finally:
        for added in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(added)
            added.close()
        root.setLevel(level)
        history.close()
    names = ["history.sqlite3", "settings.json", "test-questions.jsonl", "logs/quire.log",
             "logs/quire.log.1"]  # fmt: skip
    assert {n: oct(mode(data / n)) for n in names} == {n: oct(0o600) for n in names}
    assert log_file == data / "logs" / "quire.log" and mode(data / "logs") == 0o700


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_an_open_data_folder_is_tightened_on_start_with_a_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    for name in ("history.sqlite3", "logs/quire.log"):
        (data / name).write_bytes(b"")
        (data / name).chmod(0o644)
    data.chmod(0o755)
    (data / "logs").chmod(0o755)
    caplog.set_level(logging.INFO)
    assert ensure_data_dir(data) == data
    assert [mode(data), mode(data / "logs")] == [0o700, 0o700]
    assert [mode(data / "history.sqlite3"), mode(data / "logs" / "quire.log")] == [0o600] * 2
    notes = [r.getMessage() for r in caplog.records]
    assert f"{data}: made private (mode 700, was 755)" in notes, notes
    # A folder with no Quire file in it is someone's own: --data-dir never changes it.
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    (theirs / "notes.txt").write_text("mine")
    (theirs / "notes.txt").chmod(0o644)
    ensure_data_dir(theirs)
    assert [mode(theirs), mode(theirs / "notes.txt")] == [0o755, 0o644]


# -- a damaged chat history ---------------------------------------------------------------


def damaged_history(data: Path) -> None:
    """A data folder with a healthy index and a history that is not a database."""
    library = data.parent / "library"
    library.mkdir(exist_ok=True)
    (library / "tides.txt").write_text("The lighthouse keeper logs the weather at dawn.")
    assert quire(data, "ingest", str(library)).returncode == 0
    (data / "history.sqlite3").write_bytes(b"this was a chat history " * 400)


def assert_history_set_aside(result: subprocess.CompletedProcess[str], data: Path) -> None:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "index" not in result.stderr, result.stderr  # the index is never blamed
    note = f"quire: {data / 'history.sqlite3'}: damaged (file is not a database); kept it as "
    assert note + f"{data / 'history.sqlite3.bad'} and started a new chat history" in (
        result.stderr
    )
    assert (data / "history.sqlite3.bad").read_bytes() == b"this was a chat history " * 400
    docs = json.loads(quire(data, "docs", "--json").stdout)["documents"]
    assert [d["name"] for d in docs] == ["tides.txt"]  # the index was left alone


def test_export_training_with_a_damaged_history_sets_it_aside(tmp_path: Path) -> None:
    """Before the fix: 'index.sqlite3: this is not a Quire index ... move it aside'."""
    data = tmp_path / "data"
    damaged_history(data)
    result = quire(data, "export-training", str(tmp_path / "out.jsonl"))
    assert_history_set_aside(result, data)
    assert "Wrote 0 training example(s)" in result.stderr


@pytest.mark.slow
def test_ask_with_a_damaged_history_records_the_answer_in_a_new_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    damaged_history(data)
    result = quire(data, "ask", "Who logs the weather?", "--max-tokens", "8", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_history_set_aside(result, data)
    number = json.loads(result.stdout)["conversation"]
    history = History(data)
    try:
        assert [m.role for m in history.messages(number)] == ["user", "assistant"]
    finally:
        history.close()


@pytest.mark.gui
def test_the_app_opens_on_a_damaged_history(tmp_path: Path, qtbot: Any) -> None:
    """Before the fix: the app opened on a 'Quire hit a bug' dialog."""
    from PySide6.QtCore import QSettings

    from ui.app import create_app
    from ui.main_window import MainWindow

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qs"))
    create_app()
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.sqlite3").write_bytes(b"this was a chat history " * 400)
    window = MainWindow(data)
    qtbot.addWidget(window)
    assert window.history.conversations() == []
    assert (data / "history.sqlite3.bad").is_file()
    window.close()


# -- training: a kill or a full disk while the adapter is installed -----------------------


@pytest.mark.slow
def test_a_kill_while_installing_keeps_the_run_and_the_next_run_installs_it(
    tmp_path: Path, llm_path: Path
) -> None:
    """Before the fix the checkpoint was deleted before the install: the run was lost."""
    models = shared_weights(tmp_path / "models")
    env = {**os.environ, "QUIRE_MODELS_DIR": str(models)}
    data = write_examples(tmp_path / "d.jsonl")
    command = [sys.executable, str(REPO / "main.py"), "--data-dir", str(tmp_path / "data"),
               "train", str(data), "--base", str(llm_path), "--max-steps", "1", "--rank", "4",
               "--progress-json"]  # fmt: skip
    adapters = models / "adapters"
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stderr is not None
    try:
        line = ""
        while not line.startswith("PROGRESS"):
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "the run ended before its first step"
        deadline = time.monotonic() + 120
        while not list(adapters.glob(".tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    [leftover] = adapters.glob(".tmp-*")
    checkpoint = adapters / ".checkpoints" / "d.pt"
    assert checkpoint.is_file() and not (adapters / "d.gguf").exists()
    started = time.monotonic()
    again = subprocess.run([*command[:-1], "--json"], capture_output=True, text=True, env=env,
                           cwd=REPO, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads(again.stdout)
    assert result["resumed_from"] == result["steps"] == 1  # installed, not trained again
    assert (adapters / "d.gguf").is_file() and not checkpoint.exists()
    assert not leftover.exists() and not list(adapters.glob(".tmp-*"))
    print(f"install-only rerun: {time.monotonic() - started:.0f} s")


@pytest.mark.slow
def test_a_full_disk_while_installing_says_so_and_keeps_the_run(
    tmp_path: Path, llm_path: Path
) -> None:
    """Before the fix: the checkpoint was gone, and the error named a hidden temp file."""
    models = shared_weights(tmp_path / "models")
    outside = tmp_path / "checkpoints"
    outside.mkdir()
    with tmpfs(models / "adapters", "16m") as adapters:
        (adapters / ".checkpoints").symlink_to(outside)  # the run's state on another disk
        data = write_examples(tmp_path / "d.jsonl")

        def fill_at_the_end(progress: TrainProgress) -> None:
            if progress.step == progress.total_steps:
                with (adapters / "filler").open("wb") as filler, contextlib.suppress(OSError):
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()

        with pytest.raises(UserError) as caught:
            job(data, llm_path, models, max_steps=1, rank=4).run(fill_at_the_end)
        message = str(caught.value)
        assert message.startswith(f"{adapters}: the disk is full; the adapter was not installed")
        assert ".tmp-" not in message and "same command again" in message
        assert (outside / "d.pt").is_file() and not list(adapters.glob(".tmp-*"))
        (adapters / "filler").unlink()
        result = job(data, llm_path, models, max_steps=1, rank=4).run()
        assert result.resumed_from == result.steps == 1 and result.adapter == adapters / "d.gguf"
        assert result.adapter.is_file() and not (outside / "d.pt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("room_mb", [0, 4], ids=["lora", "onnx-export"])
def test_a_full_disk_while_installing_a_reader_says_so_and_keeps_the_run(
    tmp_path: Path, models_dir: Path, room_mb: int
) -> None:
    """The reader already said "disk is full" when an OSError reached it. Before the fix it
    did not say the run was kept, a killed install's hidden folder stayed for ever, and it
    looked at the disk only after deleting its files (so a full disk met without an OSError
    was a traceback: once the ONNX export truncated its file silently and quantizing it
    raised a DecodeError)."""
    pytest.importorskip("torch")
    from engine.core import Engine
    from engine.eval.scoring import load_questions
    from engine.index.retrieval import Retriever
    from engine.reader.job import ReaderJob
    from engine.reader.questions import start_reader
    from engine.reader.train import ReaderConfig, ReaderProgress
    from models.bundled import reader_base
    from tests.cli.test_reader_train_cli import DOCS, write_questions

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    engine = Engine(tmp_path / "data")
    engine.ingest([docs])
    questions = load_questions(write_questions(tmp_path / "mine.jsonl"))
    models, outside = tmp_path / "models", tmp_path / "checkpoints"
    models.mkdir()
    outside.mkdir()

    def reader_job() -> ReaderJob:
        return ReaderJob(questions, Retriever(engine.store, engine.embedder), models,
                         reader_base(models_dir), "mine", ReaderConfig(max_steps=1, batch_size=2),
                         start_from=start_reader())  # fmt: skip

    try:
        with tmpfs(models / "readers", "256m") as readers:  # the float ONNX is 90 MB
            (readers / ".checkpoints").symlink_to(outside)

            def fill_at_the_end(progress: ReaderProgress) -> None:
                if progress.step == progress.total_steps:
                    with (readers / "filler").open("wb") as filler, contextlib.suppress(OSError):
                        while True:
                            filler.write(b"\0" * 65536)
                            filler.flush()
                    size = (readers / "filler").stat().st_size
                    os.truncate(readers / "filler", size - room_mb * 1024 * 1024)

            with pytest.raises(UserError) as caught:
                reader_job().run(fill_at_the_end)
            message = str(caught.value)
            assert message.startswith(f"{readers}: the disk is full; the reader was not installed")
            assert "same command again" in message and not list(readers.glob(".tmp-*"))
            assert (outside / "mine.pt").is_file()
            (readers / "filler").unlink()
            (readers / ".tmp-999999999-killed").mkdir()  # a run killed while installing
            result = reader_job().run()
            assert result.folder == readers / "mine" and (readers / "mine" / "model.onnx").is_file()
            assert result.steps == 1 and not (outside / "mine.pt").exists()
            assert not list(readers.glob(".tmp-*"))
    finally:
        engine.close()


# -- the models folder --------------------------------------------------------------------


@pytest.mark.slow
def test_a_read_only_models_folder_with_stale_stamps_still_answers(
    tmp_path: Path, models_dir: Path, llm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix `ask` stopped: '.quire-tmp-...stamp.json: the disk is read-only'."""
    from models.bundled import EMBEDDER_DIRNAME, LLM_STAMP_SUFFIX, READER_DIRNAME, ensure_reader

    ensure_reader(models_dir)
    with tmpfs(tmp_path / "models", "400m") as models:
        for name in (EMBEDDER_DIRNAME, READER_DIRNAME):
            shutil.copytree(models_dir / name, models / name)
        for name in (llm_path.name, llm_path.name + LLM_STAMP_SUFFIX):
            shutil.copy2(models_dir / name, models / name)
        os.utime(models / llm_path.name)  # a copy that kept no times: its stamp is stale
        monkeypatch.setenv("QUIRE_MODELS_DIR", str(models))
        data = tmp_path / "data"
        library = tmp_path / "library"
        library.mkdir()
        (library / "tides.txt").write_text("The lighthouse keeper logs the weather at dawn.")
        assert quire(data, "ingest", str(library)).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(models)], check=True)
        result = quire(data, "ask", "Who logs the weather?", "--max-tokens", "8", "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["sources"][0]["document"] == "tides.txt"
        [note] = result.stderr.strip().splitlines()  # what the README promises
        assert note.startswith("quire: grounding adapter not merged, applied at runtime: ")


@pytest.mark.slow  # huggingface_hub's retries: 23 s
def test_a_download_without_a_network_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix: each of huggingface_hub's retry warnings twice (plain and as a
    'quire:' line), then the error. (Its five retries still take 23 s.)"""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused
    result = quire(tmp_path / "data", "models", "download", "someone/model-GGUF", "m.gguf")
    [line] = result.stderr.strip().splitlines()
    assert result.returncode == 1 and line == (
        "quire: someone/model-GGUF/m.gguf: cannot reach huggingface.co; check the network "
        "connection and try again"
    )


def test_the_index_is_created_for_the_user_alone(tmp_path: Path) -> None:
    """The index holds the documents' text: created 0600 (it was 0644 until the next start)."""
    from engine.index.store import Store

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    Store(data / "index.sqlite3", "m", 4).close()
    assert mode(data / "index.sqlite3") == 0o600
