"""`main.py train-reader`: check, user errors, back to the default, thumbs-up answers, and
one real (short) training run that the engine then reranks with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.core import Engine
from engine.history import History, Message
from engine.reader.questions import feedback_questions
from engine.settings import Settings
from engine.types import SearchResult
from tests.cli.test_cli import quire

DOCS = {
    "deluge.md": "# Deluge\n\nDeluge is a BitTorrent client. The web interface listens on "
    "port 8112 and the initial password is deluge.\n",
    "backups.md": "# Backups\n\nBackups are taken every night at two o'clock. They are kept "
    "for thirty days and then deleted.\n",
    "minetest.md": "# Minetest\n\nMinetest servers listen on UDP port 30000. Forward that "
    "port on your router so friends can join.\n",
    "garden.md": "# Garden\n\nTomatoes need six hours of sun. Water the zucchini every "
    "morning before nine o'clock.\n",
}
QUESTIONS = [
    {"id": "q1", "question": "what port does the deluge web ui use?", "doc": "deluge.md",
     "answer": "port 8112"},
    {"id": "q2", "question": "how long are backups kept?", "doc": "backups.md",
     "answer": "thirty days"},
    {"id": "q3", "question": "which port do I forward for a minetest server?",
     "doc": "minetest.md", "answer": "UDP port 30000"},
    {"id": "q4", "question": "how much sun do tomatoes need?", "doc": "garden.md",
     "answer": "six hours of sun"},
    {"id": "q5", "question": "what is the capital of Mars?", "kind": "absent"},
    {"id": "q6", "question": "what is the boiling point of lead?", "doc": "metals.pdf",
     "pages": [3], "answer": "1749"},
]  # fmt: skip


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """A data dir with four small notes indexed once for the module."""
    root = tmp_path_factory.mktemp("reader-cli")
    folder = root / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    engine = Engine(root / "data")
    engine.ingest([folder])
    engine.close()
    return root / "data"


@pytest.fixture
def data_dir(indexed: Path, tmp_path: Path) -> Path:
    """A copy of the indexed data dir the test may change (settings, history)."""
    return Path(shutil.copytree(indexed, tmp_path / "data"))


def write_questions(path: Path, rows: list[dict] = QUESTIONS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_check_counts_pairs_and_says_why_questions_gave_none(
    data_dir: Path, tmp_path: Path
) -> None:
    questions = write_questions(tmp_path / "mine.jsonl")
    done = quire(data_dir, "train-reader", str(questions), "--check")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("6 questions: 8 pairs (4 passage, 4 sentence); no pair: ")
    assert "1 absent" in line and "1 document not indexed" in line
    as_json = json.loads(
        quire(data_dir, "train-reader", str(questions), "--check", "--json").stdout
    )
    assert as_json["questions"] == 6 and as_json["pairs"] == 8
    assert as_json["stats"]["document not indexed (no pair)"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such question file"),
        ([], "train-reader needs QUESTIONS.jsonl, --feedback, or --default"),
        (["--feedback", "--check"], "no answers rated 👍 with sources"),
    ],
)
def test_user_errors_are_one_line(data_dir: Path, args: list[str], message: str) -> None:
    done = quire(data_dir, "train-reader", *args)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("quire: ") and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_nothing_indexed_says_to_ingest_first(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "mine.jsonl")
    done = quire(tmp_path / "empty", "train-reader", str(questions), "--check")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "nothing is indexed" in done.stderr and "python main.py ingest" in done.stderr


def test_default_goes_back_to_the_shipped_reader_and_keeps_other_settings(
    data_dir: Path,
) -> None:
    settings = Settings.load(data_dir)
    settings.reader_path, settings.top_k = "/somewhere/my-reader", 5
    settings.save(data_dir)
    done = quire(data_dir, "train-reader", "--default")
    assert done.returncode == 0, done.stderr
    assert "Back to the shipped reader" in done.stderr
    after = Settings.load(data_dir)
    assert after.reader_path is None and after.top_k == 5


def _answer(history: History, question: str, answer: Message, rating: int) -> int:
    conversation = history.create()
    history.add(conversation, Message("user", question))
    message_id = history.add(conversation, answer)
    history.rate(message_id, rating)
    return message_id


def _source(document: str, section: str, text: str, number: int = 1) -> SearchResult:
    return SearchResult(number, document, f"/docs/{document}", None, section, 0.7, text)


def test_thumbs_up_answers_become_questions_with_their_source(data_dir: Path) -> None:
    history = History(data_dir)
    deluge = _source("deluge.md", "Deluge", DOCS["deluge.md"].split("\n\n", 1)[1])
    quoted = Message("assistant", "It listens on port 8112 [1].", sources=[deluge],
                     quote={"document": "deluge.md", "page": None, "section": "Deluge",
                            "text": "The web interface listens on port 8112"})  # fmt: skip
    backups = _source("backups.md", "Backups", DOCS["backups.md"].split("\n\n", 1)[1], 2)
    cited = Message(
        "assistant",
        "Backups are kept for thirty days, then deleted [2].",
        sources=[deluge, backups],
    )
    first = _answer(history, "what port does the deluge web ui use?", quoted, 1)
    second = _answer(history, "how long do backups stay?", cited, 1)
    _answer(history, "what is deluge?", Message("assistant", "A client [1].", sources=[deluge]), -1)
    questions = feedback_questions(history)
    history.close()
    assert [q.id for q in questions] == [f"up-{first}", f"up-{second}"]
    assert questions[0].doc == "deluge.md" and questions[0].section == "Deluge"
    assert questions[0].answer == "The web interface listens on port 8112"
    assert questions[1].doc == "backups.md"  # the cited source, not the first one
    assert questions[1].answer == "They are kept for thirty days and then deleted."
    done = quire(data_dir, "train-reader", "--feedback", "--check", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stats"]["passage pairs"] == 2


@pytest.mark.slow
def test_train_installs_a_reader_the_engine_reranks_with(
    data_dir: Path, tmp_path: Path, models_dir: Path
) -> None:
    pytest.importorskip("torch")
    name = f"test-cli-{tmp_path.name}"[:60]
    folder = models_dir / "readers" / name
    questions = write_questions(tmp_path / "mine.jsonl")
    try:
        done = quire(
            data_dir, "train-reader", str(questions), "--out", name, "--max-steps", "2",
            "--batch-size", "2", "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["folder"] == str(folder) and result["steps"] == 2
        assert (folder / "model.onnx").is_file() and (folder / "reader.json").is_file()
        assert "step 2/2" in done.stderr and "quire:" not in done.stderr
        assert Settings.load(data_dir).reader_path == str(folder)
        engine = Engine(data_dir)
        try:
            assert engine.reader is not None and engine.reader_folder() == folder
            found = engine.search("which port does the deluge web interface listen on?")
            assert found and all(r.rerank is not None for r in found)
        finally:
            engine.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        (models_dir / "readers" / ".checkpoints" / f"{name}.pt").unlink(missing_ok=True)


def test_training_in_the_packaged_app_points_to_the_developer_install(monkeypatch) -> None:
    """The frozen app leaves torch out on purpose: "pip install" is no advice there."""
    import sys

    from engine.finetune import trainer

    monkeypatch.setattr(trainer, "_installed", lambda name: name != "torch")
    assert trainer.missing_extra() == f"{trainer.EXTRA_HINT} (missing: torch)"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert trainer.missing_extra() == (
        "training is not in this build of Quire: it needs the developer install (see README)"
    )
