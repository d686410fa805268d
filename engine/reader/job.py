"""A reader training run, from a question file to an installed reader folder.

The questions (the test-set format `eval` reads: `question`, `doc`, `pages` or `section`,
`answer`) become pairs with Quire's own search over the index (engine.reader.pairs); the
reader trains from the shipped reader's LoRA (or MiniLM's float weights), and the result
is built in a hidden folder beside the readers and renamed into place, so the app never
sees half a reader. A stopped run keeps its checkpoint until the reader is installed; the
same command resumes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.eval.scoring import Question
from engine.finetune.job import install_dir, install_error
from engine.finetune.trainer import missing_extra
from engine.index.retrieval import Retriever
from engine.reader.pairs import Pair, build_pairs
from engine.reader.train import (
    ProgressFn,
    ReaderConfig,
    ReaderTrainer,
    export_onnx,
    save_lora,
    split_pairs,
    write_card,
)
from engine.types import UserError

READERS_DIR = "readers"
CHECKPOINTS_DIR = ".checkpoints"
LORA_DIR = "lora"
# What a new reader keeps from the reader it continues: the numbers chosen on held-out
# questions for that reader (a user's few questions cannot choose them again).
INHERITED = ("rerank_weight", "quote_threshold", "quote_threshold_alone", "neighbour_margin",
             "short_words", "passage_weight", "passage_ranker", "sentence_ranker",
             "grounding_refusal", "refusal_model")  # fmt: skip


@dataclass
class ReaderResult:
    name: str
    folder: Path | None  # None: stopped, checkpoint kept
    pairs: int
    val_pairs: int
    steps: int
    total_steps: int
    train_loss: float | None
    val_before: dict[str, float]
    val_after: dict[str, float]
    seconds: float
    stats: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False
    losses: list[float] = field(default_factory=list)  # every step's, rounded

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["folder"] = str(self.folder) if self.folder else None
        return data


def readers_dir(models_dir: Path) -> Path:
    return Path(models_dir) / READERS_DIR


def pairs_hash(pairs: Sequence[Pair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps(pair.to_json(), sort_keys=True).encode())
    return digest.hexdigest()


@dataclass
class ReaderJob:
    """Train a reader on `questions` over `retriever`'s index."""

    questions: list[Question]
    retriever: Retriever
    models_dir: Path
    base_dir: Path  # MiniLM's float weights and tokenizer (models.bundled.reader_base)
    name: str
    config: ReaderConfig = field(default_factory=ReaderConfig)
    start_from: Path | None = None  # a reader folder whose LoRA and card to continue
    collection: str | None = None
    source: str = ""  # where the questions came from, for the card
    # Further question sets, each over its own index (the recipe's other manuals).
    more: Sequence[tuple[list[Question], Retriever]] = ()

    def pairs(self) -> tuple[list[Pair], dict[str, int]]:
        pairs, stats = build_pairs(self.retriever, self.questions, self.collection)
        for questions, retriever in self.more:
            more, more_stats = build_pairs(retriever, questions)
            pairs += more
            stats.update(more_stats)
        return pairs, dict(stats)

    def run(
        self, progress: ProgressFn | None = None, *, stop: threading.Event | None = None
    ) -> ReaderResult:
        hint = missing_extra()
        if hint:
            raise UserError(hint)
        started = time.perf_counter()
        pairs, stats = self.pairs()
        train, val = split_pairs(pairs, self.config.val_fraction, self.config.seed)
        key = self._run_key(pairs)
        checkpoint = readers_dir(self.models_dir) / CHECKPOINTS_DIR / f"{self.name}.pt"
        lora = self.start_from / LORA_DIR if self.start_from else None
        trainer = ReaderTrainer(self.base_dir, train, val, self.config, checkpoint, key, lora)
        model = trainer.run(progress, stop=stop)
        log = trainer.log
        result = ReaderResult(
            self.name, None, len(train), len(val), len(log.train_losses),
            trainer.total_steps, _mean_tail(log.train_losses), log.val_before, log.val_after,
            log.seconds, stats, cancelled=model is None,
            losses=[round(x, 4) for x in log.train_losses],
        )  # fmt: skip
        if model is None:
            return result
        card = self._card(pairs, result, time.perf_counter() - started)
        result.folder = self._install(model, card)
        checkpoint.unlink(missing_ok=True)  # only once the reader is in place
        return result

    def _run_key(self, pairs: Sequence[Pair]) -> str:
        parts = [pairs_hash(pairs), json.dumps(asdict(self.config), sort_keys=True)]
        parts.append(str(self.start_from or ""))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def _card(self, pairs: Sequence[Pair], result: ReaderResult, seconds: float) -> dict:
        inherited: dict[str, Any] = {}
        if self.start_from is not None:
            parent = json.loads((self.start_from / "reader.json").read_text(encoding="utf-8"))
            inherited = {k: parent[k] for k in INHERITED if k in parent}
        return {
            "name": self.name, "kind": "bi-encoder (mean pooling, cosine)",
            "base": "sentence-transformers/all-MiniLM-L6-v2 (float weights)",
            "continued_from": str(self.start_from) if self.start_from else None,
            "questions": self.source, "pairs": len(pairs), "data_sha256": pairs_hash(pairs),
            "settings": asdict(self.config), "train_loss": result.train_loss,
            "train_losses": result.losses,
            "val_accuracy_before": result.val_before, "val_accuracy_after": result.val_after,
            "steps": result.steps, "seconds": round(seconds, 1),
            "hardware": f"{platform.machine()}, {os.cpu_count()} CPU threads, {platform.system()}",
            "quantization": "int8 (onnxruntime quantize_dynamic, QInt8 weights, per channel)",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **inherited,
        }  # fmt: skip

    def _install(self, model: Any, card: dict[str, Any]) -> Path:
        """Build the reader folder beside the others and rename it into place."""
        from models.bundled import TOKENIZER_FILES

        root = readers_dir(self.models_dir)
        tmp = install_dir(root)  # a kill's leftover of an earlier run is removed first
        target = root / self.name
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
            save_lora(model, tmp / LORA_DIR)
            export_onnx(model, tmp / "model.onnx")
            for name in TOKENIZER_FILES:
                shutil.copyfile(self.base_dir / name, tmp / name)
            write_card(tmp, card)
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".old-{os.getpid()}-", dir=root))
                os.replace(target, old / self.name)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, target)
        except Exception as exc:
            error = install_error(exc, root, "reader")  # while the disk is still full
            shutil.rmtree(tmp, ignore_errors=True)
            if error is exc and isinstance(exc, OSError):
                raise UserError(f"{target}: could not install the reader ({exc})") from exc
            raise error from exc
        return target


def _mean_tail(losses: list[float], n: int = 10) -> float | None:
    tail = losses[-n:]
    return round(sum(tail) / len(tail), 4) if tail else None
