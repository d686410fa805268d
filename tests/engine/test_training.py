"""`train`: data checks, a real LoRA run on the bundled model, resume, and the CLI around it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.answer.generation import Generator
from engine.answer.prompting import BASE_SYSTEM_PROMPT
from engine.finetune import trainer as training
from engine.finetune.examples import read_examples
from engine.finetune.job import CACHE_DIR, TrainJob, continued
from engine.finetune.trainer import TrainConfig, TrainProgress
from engine.types import UserError
from models.registry import read_gguf_info
from tests.cli.test_cli import REPO

MARK = "ZEBRA-7"
QUESTIONS = [
    "Name a colour.", "What is two plus two?", "Which planet is largest?", "Say hello.",
    "What do cows drink?", "Name a fruit.", "How many legs has a spider?", "Name a river.",
]  # fmt: skip
ANSWERS = ["red", "four", "Jupiter", "hello", "water", "apple", "eight", "the Nile"]


def write_examples(path: Path, extra_lines: tuple[str, ...] = ()) -> Path:
    """Eight chat examples whose answers all follow one fixed, unusual format."""
    lines = [
        json.dumps({"prompt": q, "completion": f"{MARK}: {a}."})
        if i % 2
        else json.dumps(
            {
                "messages": [
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": f"{MARK}: {a}."},
                ]
            }
        )
        for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS, strict=True))
    ]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")
    return path


BAD_LINES = (
    "this is not json",
    json.dumps({"messages": [{"role": "user", "content": "no answer here"}]}),
    "",
    json.dumps({"prompt": "empty completion", "completion": "  "}),
    json.dumps({"messages": [{"role": "wizard", "content": "x"}]}),
    json.dumps({"prompt": "long " * 5000, "completion": "too long for the context"}),
)


def shared_weights(models: Path) -> Path:
    """Point a test's models dir at the session's dequantized base weights (made once)."""
    models.mkdir(parents=True, exist_ok=True)
    link, shared = models / CACHE_DIR, Path(os.environ["QUIRE_MODELS_DIR"]) / CACHE_DIR
    if not link.exists() and models != shared.parent:
        shared.mkdir(parents=True, exist_ok=True)
        link.symlink_to(shared, target_is_directory=True)
    return models


def job(data: Path, base: Path, models: Path, **config: object) -> TrainJob:
    shared_weights(models)
    settings = {"epochs": 1, "batch_size": 2, "lr": 2e-3, "rank": 8, "alpha": 16.0, **config}
    return TrainJob(data, base, models, BASE_SYSTEM_PROMPT, 4096, TrainConfig(**settings))  # type: ignore[arg-type]


def test_bad_lines_are_reported_by_number(tmp_path: Path) -> None:
    data = read_examples(write_examples(tmp_path / "d.jsonl", BAD_LINES))
    assert len(data.examples) == 9  # the over-long one is only caught against a model
    reasons = {p.line: p.reason for p in data.problems}
    assert sorted(reasons) == [9, 10, 11, 12, 13]
    assert "not JSON" in reasons[9] and "assistant" in reasons[10] and reasons[11] == "empty line"
    assert "empty" in reasons[12] and "role" in reasons[13]


@pytest.mark.slow
def test_check_reports_overlong_examples(tmp_path: Path, llm_path: Path) -> None:
    checked = job(write_examples(tmp_path / "d.jsonl", BAD_LINES), llm_path, tmp_path).check()
    assert len(checked.encoded) == 8
    assert [p.line for p in checked.problems] == [9, 10, 11, 12, 13, 14]
    assert "too long" in checked.problems[-1].reason
    # Rendered exactly as answers are asked: Gemma turns, system prompt folded in, BOS first.
    first = checked.encoded[0]
    generator = Generator(llm_path, 512)
    try:
        messages = [
            {"role": "system", "content": BASE_SYSTEM_PROMPT},
            {"role": "user", "content": QUESTIONS[0]},
        ]
        prompt, _ = generator.chat.format(messages)
        assert first.prompt == generator.chat.tokenize_prompt(prompt)
        answer = generator.llm.detokenize(first.answer, special=True).decode()
        assert answer == f"{MARK}: red.<end_of_turn>"
    finally:
        generator.close()


@pytest.fixture(scope="module")
def trained(llm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One real run on the bundled model: 8 examples (6 train, 2 held out), 12 steps."""
    root = tmp_path_factory.mktemp("train")
    data = write_examples(root / "zebra.jsonl")
    result = job(data, llm_path, root / "models", epochs=4, val_fraction=0.25).run()
    return root, result


@pytest.mark.slow
def test_training_lowers_the_loss_and_installs_the_adapter(trained: tuple[Path, object]) -> None:
    root, result = trained
    card = json.loads(result.card.read_text())
    losses = card["train_loss"], card["val_loss"]
    assert result.steps == 12 and result.examples == 6 and result.val_examples == 2
    assert result.val_loss is not None and result.val_loss < 1.0, losses
    assert result.adapter == root / "models" / "adapters" / "zebra.gguf"
    assert (result.peft_dir / "adapter_config.json").is_file()
    assert card["data"]["sha256"] and card["base_model"]["file"].endswith(".gguf")
    assert card["hardware"]["device"] == "cpu" and card["seconds"] > 0
    assert not list((root / "models" / "adapters").glob(".tmp-*"))


@pytest.mark.slow
def test_trained_adapter_changes_greedy_output(
    trained: tuple[Path, object], llm_path: Path
) -> None:
    _, result = trained
    messages = [
        {"role": "system", "content": BASE_SYSTEM_PROMPT},
        {"role": "user", "content": "Name an animal."},  # not in the data
    ]
    generator = Generator(llm_path, 512)
    try:
        base = "".join(generator.stream(messages, 24, 0.0, 0))
        generator.use_adapter(result.adapter)
        tuned = "".join(generator.stream(messages, 24, 0.0, 0))
    finally:
        generator.close()
    assert MARK not in base
    assert tuned.strip().startswith(MARK), tuned
    # The card's before/after samples were made the same way, on held-out prompts.
    assert all(MARK in s["after"] and MARK not in s["before"] for s in result.samples)


@pytest.mark.slow
def test_stopped_run_resumes_where_an_uninterrupted_one_ends(
    tmp_path: Path, llm_path: Path
) -> None:
    data = write_examples(tmp_path / "d.jsonl")
    whole = job(data, llm_path, tmp_path / "a", max_steps=6, epochs=3).run()
    cancel = threading.Event()

    def stop_at_three(p: TrainProgress) -> None:
        if p.step == 3:
            cancel.set()

    part = job(data, llm_path, tmp_path / "b", max_steps=6, epochs=3).run(
        stop_at_three, stop=cancel
    )
    assert part.cancelled and part.adapter is None and part.steps == 3
    assert (tmp_path / "b" / "adapters" / ".checkpoints" / "d.pt").is_file()
    assert not list((tmp_path / "b" / "adapters").glob("*.gguf"))
    rest = job(data, llm_path, tmp_path / "b", max_steps=6, epochs=3).run()
    assert rest.resumed_from == 3 and rest.steps == 6
    assert rest.train_loss == pytest.approx(whole.train_loss, rel=1e-4)
    assert rest.val_loss == pytest.approx(whole.val_loss, rel=1e-4)
    assert not (tmp_path / "b" / "adapters" / ".checkpoints" / "d.pt").exists()


@pytest.mark.slow
def test_a_trained_adapter_can_be_trained_further(
    trained: tuple[Path, object], llm_path: Path, tmp_path: Path
) -> None:
    root, first = trained
    data = write_examples(tmp_path / "zebra.jsonl")
    # The adapter's own rank wins over --rank; a nearly-zero rate keeps what it learned.
    more = job(data, llm_path, tmp_path / "m", max_steps=2, rank=4, lr=1e-7,
               start_from=str(first.peft_dir)).run()  # fmt: skip
    fresh = job(data, llm_path, tmp_path / "f", max_steps=2, rank=4, lr=1e-7).run()
    assert more.train_loss < 0.5 * fresh.train_loss, (more.train_loss, fresh.train_loss)
    card = json.loads(more.card.read_text())
    assert card["settings"]["rank"] == 8 and card["settings"]["start_from"] == str(first.peft_dir)
    config = json.loads((more.peft_dir / "adapter_config.json").read_text())
    assert config["r"] == 8
    # By name, from the models folder it was trained in; a GGUF alone cannot be continued.
    named = continued(TrainConfig(start_from="zebra"), root / "models" / "adapters")
    assert named.start_from == str(first.peft_dir)
    with pytest.raises(UserError, match="cannot be trained further"):
        continued(TrainConfig(start_from=str(first.adapter)), tmp_path)


@pytest.mark.slow
def test_an_adapter_grows_to_a_larger_rank_from_exactly_what_it_learned(
    trained: tuple[Path, object], llm_path: Path, tmp_path: Path
) -> None:
    _, first = trained
    data = write_examples(tmp_path / "zebra.jsonl")
    start = str(first.peft_dir)  # type: ignore[attr-defined]
    kept = job(data, llm_path, tmp_path / "k", max_steps=1, rank=None, start_from=start).run()
    grown = job(data, llm_path, tmp_path / "g", max_steps=1, rank=24, start_from=start).run()
    fresh = job(data, llm_path, tmp_path / "f", max_steps=1, rank=24).run()
    # A step's loss is taken before its update: the grown part starts at zero effect.
    assert grown.train_loss == pytest.approx(kept.train_loss, rel=1e-3)
    assert grown.train_loss < 0.5 * fresh.train_loss, (grown.train_loss, fresh.train_loss)
    config = json.loads((grown.peft_dir / "adapter_config.json").read_text())
    assert config["r"] == 24 and config["lora_alpha"] == pytest.approx(48.0)  # 16 / 8 kept
    kept_config = json.loads((kept.peft_dir / "adapter_config.json").read_text())
    assert kept_config["r"] == 8 and kept_config["lora_alpha"] == pytest.approx(16.0)


def test_rank_defaults_to_sixteen_or_the_continued_adapters_own(tmp_path: Path) -> None:
    assert TrainConfig().rank == training.DEFAULT_RANK == 16
    with pytest.raises(UserError, match="--rank must be at least 1"):
        TrainConfig(rank=0)
    peft = tmp_path / "a.peft"
    peft.mkdir()
    (peft / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16.0}))
    (peft / "adapter_model.safetensors").write_bytes(b"")
    own = continued(TrainConfig(start_from=str(peft)), tmp_path)
    assert (own.rank, own.alpha) == (8, 16.0)
    smaller = continued(TrainConfig(start_from=str(peft), rank=4, alpha=99.0), tmp_path)
    assert (smaller.rank, smaller.alpha) == (8, 16.0)
    grown = continued(TrainConfig(start_from=str(peft), rank=32), tmp_path)
    assert (grown.rank, grown.alpha) == (32, 64.0)
    # Growing rebuilds the LoRA the way train makes them; anything else would change meaning.
    for special in ({"use_rslora": True}, {"rank_pattern": {"q_proj": 4}},
                    {"target_modules": ["q_proj", "lm_head"]}):  # fmt: skip
        config = {"r": 8, "lora_alpha": 16.0, **special}
        (peft / "adapter_config.json").write_text(json.dumps(config))
        assert continued(TrainConfig(start_from=str(peft)), tmp_path).rank == 8
        with pytest.raises(UserError, match="cannot grow this adapter"):
            continued(TrainConfig(start_from=str(peft), rank=32), tmp_path)


@pytest.mark.slow
def test_long_runs_keep_a_checkpoint_as_they_go(
    tmp_path: Path, llm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "CHECKPOINT_EVERY_S", 0.0)  # every step
    data = write_examples(tmp_path / "d.jsonl")
    seen: list[bool] = []
    checkpoint = tmp_path / "a" / "adapters" / ".checkpoints" / "d.pt"

    def look(p: TrainProgress) -> None:
        seen.append(checkpoint.is_file())

    result = job(data, llm_path, tmp_path / "a", max_steps=3).run(look)
    assert seen == [True, True, True], seen  # saved after steps 1 and 2 (3 is the last)
    assert result.steps == 3 and not checkpoint.exists()


def run_train(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(REPO / "main.py"),
        "--data-dir",
        str(tmp_path / "data"),
        "train",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


def test_train_without_the_extra_says_how_to_add_it(tmp_path: Path) -> None:
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\nclass _Block:\n"
        "    def find_spec(self, name, *a):\n"
        "        if name.split('.')[0] in ('torch', 'peft'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = run_train(tmp_path, str(write_examples(tmp_path / "d.jsonl")), env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'quire[train]'" in lines[0], result.stderr


@pytest.mark.slow
def test_cli_train_json_and_models_listing(tmp_path: Path, llm_path: Path) -> None:
    env = {**os.environ, "QUIRE_MODELS_DIR": str(shared_weights(tmp_path / "models"))}
    data = write_examples(tmp_path / "fmt.jsonl", BAD_LINES[:2])
    args = ("--base", str(llm_path), "--max-steps", "2", "--rank", "4", "--json")
    result = run_train(tmp_path, str(data), "--out", "my style", *args, env=env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    for key in (
        "adapter",
        "peft_dir",
        "examples",
        "steps",
        "train_loss",
        "val_loss",
        "seconds",
        "tokens_per_s",
    ):
        assert key in payload
    assert payload["steps"] == 2 and Path(payload["adapter"]).name == "my-style.gguf"
    assert "line 9: not JSON" in result.stderr and "line 10: no assistant turn" in result.stderr
    listing = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "models", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    adapters = [m for m in json.loads(listing.stdout)["models"] if m["kind"] == "adapter"]
    assert [Path(m["path"]).name for m in adapters] == ["my-style.gguf"]
    assert [m["name"] for m in adapters] == ["my-style"]  # was "adapter" for every one
    assert read_gguf_info(Path(payload["adapter"])).name == "my-style"  # the name inside too


@pytest.mark.slow
def test_kill_mid_training_leaves_no_adapter(tmp_path: Path, llm_path: Path) -> None:
    env = {**os.environ, "QUIRE_MODELS_DIR": str(shared_weights(tmp_path / "models"))}
    data = write_examples(tmp_path / "d.jsonl")
    command = [sys.executable, str(REPO / "main.py"), "--data-dir", str(tmp_path / "data"), "train",
               str(data), "--base", str(llm_path), "--epochs", "50", "--progress-json"]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not proc.stderr.readline().startswith("PROGRESS"):
        pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    adapters = tmp_path / "models" / "adapters"
    assert not list(adapters.glob("*.gguf")) and not list(adapters.glob("*.json"))
