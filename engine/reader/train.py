"""Training Quire's reader on CPU: all-MiniLM-L6-v2 tuned on Quire's own search results.

The reader is a bi-encoder: question and text are embedded apart (mean pooling, L2 norm)
and scored by cosine, so passage vectors can be kept and reranking 20 passages costs one
query embedding. Measured on manuals the team had not seen, a cross-encoder started from
the same weights ranked worse than this (docs/evaluation.md). Training is contrastive:
each question's gold passage (or sentence) against its hard negatives from Quire's search
and the other texts of the batch, with a LoRA on every linear layer, so a trained reader is
a small file that a later run continues. The merged model is exported to ONNX and
quantized to int8 (onnxruntime's tools) for run time; torch is never needed to answer.

torch, transformers and peft are the training extra; they are imported inside the calls.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.finetune.trainer import check_counts, save_checkpoint
from engine.reader.pairs import Pair
from engine.types import UserError

TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense",
           "output.dense")  # fmt: skip
MAX_TOKENS = {"query": 64, "passage": 256, "sentence": 96}
LORA_FILES = ("adapter_config.json", "adapter_model.safetensors")
CHECKPOINT_EVERY_S = 300.0


@dataclass
class ReaderConfig:
    """Settings of one reader run; the defaults are the shipped reader's."""

    epochs: int = 1
    lr: float = 4e-4
    batch_size: int = 16  # questions per step; each brings its positive and negatives
    negatives: int = 3  # hard negatives per question per step, drawn from its list
    rank: int = 16
    alpha: float = 32.0
    scale: float = 20.0  # logits = cosine * scale (sentence-transformers' default)
    warmup: float = 0.1
    seed: int = 0
    val_fraction: float = 0.1
    max_steps: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        check_counts(self, "4e-4")


@dataclass
class ReaderProgress:
    """Sent after every step."""

    step: int
    total_steps: int
    loss: float
    elapsed_s: float
    eta_s: float


@dataclass
class ReaderLog:
    train_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0
    val_before: dict[str, float] = field(default_factory=dict)
    val_after: dict[str, float] = field(default_factory=dict)


ProgressFn = Callable[[ReaderProgress], None]


def split_pairs(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation), split by question id so a question's two pairs stay together."""
    ids = sorted({p.id for p in pairs})
    random.Random(seed).shuffle(ids)
    held = set(ids[: round(len(ids) * fraction)]) if len(ids) >= 10 else set()
    return [p for p in pairs if p.id not in held], [p for p in pairs if p.id in held]


class ReaderTrainer:
    """One run over training pairs, from MiniLM's float weights or a reader's LoRA."""

    def __init__(
        self,
        base_dir: Path,
        train: list[Pair],
        val: list[Pair],
        config: ReaderConfig,
        checkpoint: Path,
        run_key: str,
        start_lora: Path | None = None,
    ) -> None:
        if not train:
            raise UserError("no training pairs: no question's gold passage was found")
        self.base_dir, self.train, self.val, self.config = base_dir, train, val, config
        self.checkpoint, self.run_key, self.start_lora = checkpoint, run_key, start_lora
        self.batches = self._batches()
        per_epoch = len(self.batches)
        self.total_steps = min(per_epoch * config.epochs, config.max_steps or 1 << 62)
        self.log = ReaderLog()

    def _batches(self) -> list[list[int]]:
        """One epoch's batches: pairs of one kind together (alike lengths pad little)."""
        rng = random.Random(self.config.seed)
        out: list[list[int]] = []
        for kind in ("passage", "sentence"):
            idx = [i for i, p in enumerate(self.train) if p.kind == kind]
            rng.shuffle(idx)
            size = self.config.batch_size
            out += [idx[i : i + size] for i in range(0, len(idx), size)]
        rng.shuffle(out)
        return out

    def run(
        self, progress: ProgressFn | None = None, *, stop: threading.Event | None = None
    ) -> Any:
        """Train until done or cancelled (then None, a checkpoint kept); returns the
        PEFT model."""
        # OpenMP's threads sleep instead of spinning between steps (a shared 2-core
        # machine). Set here, for this training process only: set on import it leaked into
        # every child the app started (llama.cpp servers then ran at 0.55x).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        torch.manual_seed(self.config.seed)
        torch.set_num_threads(self.config.threads or os.cpu_count() or 1)
        model, tokenizer = self._load(torch)
        self.tokenizer = tokenizer
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=0.01)
        step = self._resume(torch, model, optimizer)
        if step >= self.total_steps and self.log.val_after:
            return model  # trained before; only its install was cut short (a kill, a full disk)
        if step == 0:
            self.log.val_before = self.validate(torch, model)
        saved_at = self.log.seconds
        while step < self.total_steps:
            if stop is not None and stop.is_set():
                self._save_checkpoint(torch, model, optimizer, step)
                return None
            started = time.perf_counter()
            loss = self._step(torch, model, optimizer, step)
            self.log.seconds += time.perf_counter() - started
            self.log.train_losses.append(loss)
            step += 1
            if self.log.seconds - saved_at >= CHECKPOINT_EVERY_S and step < self.total_steps:
                self._save_checkpoint(torch, model, optimizer, step)
                saved_at = self.log.seconds
            if progress is not None:
                progress(self._progress(step))
        self.log.val_after = self.validate(torch, model)
        self._save_checkpoint(torch, model, optimizer, step)  # kept until installed
        return model

    # -- the model ---------------------------------------------------------------------

    def _load(self, torch: Any) -> tuple[Any, Any]:
        from peft import LoraConfig, PeftModel, get_peft_model
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(str(self.base_dir))
            model = AutoModel.from_pretrained(str(self.base_dir), dtype=torch.float32)
            if self.start_lora is not None:
                model = PeftModel.from_pretrained(model, str(self.start_lora), is_trainable=True)
            else:
                lora = LoraConfig(
                    r=self.config.rank, lora_alpha=self.config.alpha,  # type: ignore[arg-type]
                    target_modules=list(TARGETS), lora_dropout=0.0, bias="none",
                )  # fmt: skip
                model = get_peft_model(model, lora)
        return model, tokenizer

    def _embed(self, torch: Any, model: Any, texts: list[str], kind: str) -> Any:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS[kind],
            return_tensors="pt",
        )  # fmt: skip
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def _step(self, torch: Any, model: Any, optimizer: Any, step: int) -> float:
        """In-batch and hard negatives: every question against every text of the batch."""
        index = step % len(self.batches)
        pairs = [self.train[i] for i in self.batches[index]]
        rng = random.Random(self.config.seed * 1000 + step)
        texts = [p.positive for p in pairs]
        for pair in pairs:
            texts += rng.sample(pair.negatives, min(self.config.negatives, len(pair.negatives)))
        for group in optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        queries = self._embed(torch, model, [p.question for p in pairs], "query")
        docs = self._embed(torch, model, texts, pairs[0].kind)
        logits = queries @ docs.T * self.config.scale
        labels = torch.arange(len(pairs))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        return float(loss.detach())

    def validate(self, torch: Any, model: Any) -> dict[str, float]:
        """Share of held-out pairs whose positive scores above all its negatives."""
        if not self.val:
            return {}
        model.eval()
        wins: dict[str, list[float]] = {"passage": [], "sentence": []}
        with torch.inference_mode():
            for pair in self.val:
                q = self._embed(torch, model, [pair.question], "query")
                d = self._embed(torch, model, [pair.positive, *pair.negatives], pair.kind)
                scores = (q @ d.T)[0]
                wins[pair.kind].append(float(bool(scores[0] >= scores.max())))
        return {k: round(sum(v) / len(v), 4) for k, v in wins.items() if v}

    def learning_rate(self, step: int) -> float:
        warm = max(1, round(self.total_steps * self.config.warmup))
        if step < warm:
            return self.config.lr * (step + 1) / warm
        done = (step - warm) / max(1, self.total_steps - warm)
        return self.config.lr * (0.05 + 0.475 * (1 + math.cos(math.pi * done)))

    def _progress(self, step: int) -> ReaderProgress:
        per_step = self.log.seconds / max(1, step)  # seconds cover the resumed part too
        tail = self.log.train_losses[-10:]
        return ReaderProgress(
            step, self.total_steps, sum(tail) / len(tail), self.log.seconds,
            per_step * (self.total_steps - step),
        )  # fmt: skip

    # -- checkpoints -------------------------------------------------------------------

    def _save_checkpoint(self, torch: Any, model: Any, optimizer: Any, step: int) -> None:
        state = {
            "key": self.run_key, "step": step,
            "lora": {k: v for k, v in model.state_dict().items() if "lora_" in k},
            "optimizer": optimizer.state_dict(), "log": asdict(self.log),
        }  # fmt: skip
        save_checkpoint(torch, state, self.checkpoint)

    def _resume(self, torch: Any, model: Any, optimizer: Any) -> int:
        if not self.checkpoint.is_file():
            return 0
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - damaged or from another torch: start afresh
            return 0
        if state.get("key") != self.run_key:
            return 0
        model.load_state_dict(state["lora"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        self.log = ReaderLog(**{**state["log"], "resumed_from": int(state["step"])})
        return int(state["step"])


# -- export ----------------------------------------------------------------------------


def save_lora(model: Any, folder: Path) -> None:
    """The PEFT LoRA files (what a later run continues from), readable by all, without
    PEFT's generated model card."""
    model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)
    for path in folder.iterdir():
        path.chmod(0o644)


def export_onnx(model: Any, out: Path, quantize: bool = True) -> None:
    """The merged model as ONNX (token embeddings, fastembed's input names), int8 by
    default."""
    import torch

    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    merged.eval()
    wrapper = _TokenEmbeddings(merged)
    ids = torch.ones((2, 16), dtype=torch.long)
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    float_path = out.with_name(out.stem + ".float.onnx") if quantize else out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, str(float_path), input_names=names,
            output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
            dynamo=False,
        )  # fmt: skip
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(float_path), str(out), weight_type=QuantType.QInt8, per_channel=True)
        float_path.unlink()


class _TokenEmbeddings:
    """A torch module returning only the last hidden state (what ONNX should output)."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                out = self.model(
                    input_ids=input_ids, attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                )  # fmt: skip
                return out.last_hidden_state

        return Wrapped()


def write_card(folder: Path, card: dict[str, Any]) -> None:
    (folder / "reader.json").write_text(
        json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def copy_files(src: Path, dest: Path, names: Sequence[str]) -> None:
    for name in names:
        shutil.copyfile(src / name, dest / name)
