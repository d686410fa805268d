"""LoRA fine-tuning on the GGUF that Quire answers with, on a laptop CPU (or a CUDA GPU).

The base weights come from the GGUF itself (transformers dequantizes it in memory), PEFT
adds the LoRA, and the result is converted back into a GGUF adapter for that same file.
The output layer is computed only at the answer's positions: the bundled Gemma's 262k-word
vocabulary would otherwise cost more than the rest of the network.

torch, transformers and peft are an optional extra (`pip install quire[train]`); this
module imports them only inside `Trainer.run`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import random
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import disk_full
from engine.finetune.examples import Encoded
from engine.types import UserError

# OpenMP's worker threads spin while they wait; on a laptop that is also doing other work
# that made a 64-token step 20x slower with 2 threads (measured here). Read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EXTRA_HINT = "training needs torch, transformers and peft: pip install 'quire[train]'"


FROZEN_HINT = "training is not in this build of Quire: it needs the developer install (see README)"


def missing_extra() -> str | None:
    """The one-line hint when the training extra is absent, else None. The packaged app
    (frozen) leaves training out on purpose: pip is no answer there."""
    missing = [name for name in ("torch", "transformers", "peft") if not _installed(name)]
    if missing and getattr(sys, "frozen", False):
        return FROZEN_HINT
    return f"{EXTRA_HINT} (missing: {', '.join(missing)})" if missing else None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as absent
        return False


DEFAULT_RANK = 16
CHECKPOINT_EVERY_S = 600.0  # of step time: a kill or a crash loses at most this much


@dataclass
class TrainConfig:
    """Settings of one run; the defaults work on the bundled model without tuning."""

    epochs: int = 3
    max_steps: int | None = None
    rank: int | None = None  # None: DEFAULT_RANK, or a continued adapter's own
    alpha: float = 32.0
    lr: float = 2e-4
    batch_size: int = 4  # examples per optimizer step (gradients accumulated)
    warmup: float = 0.05  # share of the steps with a rising learning rate
    seed: int = 0
    val_fraction: float = 0.1
    threads: int | None = None  # None: every core
    start_from: str | None = None  # a PEFT LoRA folder to continue training (its rank, alpha)

    def __post_init__(self) -> None:
        if self.rank is None and self.start_from is None:
            self.rank = DEFAULT_RANK
        check_counts(self, "2e-4")


def check_counts(config: Any, lr_example: str) -> None:
    """A training config's epochs, rank, batch size and step cap at least 1 (None: unset)
    and its learning rate between 0 and 1; else a UserError naming the option."""
    for name in ("epochs", "rank", "batch_size", "max_steps"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < config.lr < 1:
        raise UserError(f"--lr must be between 0 and 1, e.g. {lr_example}")


@dataclass
class TrainProgress:
    """One report from a run: sent after every optimizer step."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    tokens_per_s: float
    elapsed_s: float
    eta_s: float
    val_loss: float | None = None


@dataclass
class StepLog:
    """What the loop learned: losses, tokens and time, for the card and the result."""

    train_losses: list[float] = field(default_factory=list)
    val_loss: float | None = None
    tokens: int = 0
    seconds: float = 0.0  # time spent in steps, over every resumed part of the run
    resumed_from: int = 0  # the step this process started from

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def recent_loss(self, n: int = 10) -> float:
        tail = self.train_losses[-n:]
        return sum(tail) / len(tail) if tail else float("nan")


ProgressFn = Callable[[TrainProgress], None]


def _rank(peft_dir: Path) -> int:
    return int(json.loads((peft_dir / "adapter_config.json").read_text(encoding="utf-8"))["r"])


def _grow_into(torch: Any, model: Any, peft_dir: Path) -> None:
    """Copy a lower-rank adapter into the first rows (A) and columns (B) of `model`'s LoRA.

    The caller keeps alpha / rank as the old adapter's, so the copied part means what it
    meant; the new part of B is PEFT's zeros, so the grown adapter starts exactly where the
    old one ended, and only training gives the new rank an effect.
    """
    from safetensors.torch import load_file

    old = load_file(str(peft_dir / "adapter_model.safetensors"))
    params = dict(model.named_parameters())
    copied = 0
    for key, value in old.items():
        name = key.replace(".lora_A.weight", ".lora_A.default.weight").replace(
            ".lora_B.weight", ".lora_B.default.weight"
        )
        if name not in params:
            raise UserError(f"{peft_dir}: {key} has no place in a LoRA on this model")
        target = params[name]
        a = ".lora_A." in name
        axis = 0 if a else 1  # the rank's axis: A is (rank, in), B is (out, rank)
        old_r, new_r = value.shape[axis], target.shape[axis]
        fits = value.shape[1 - axis] == target.shape[1 - axis]
        if not fits or old_r > new_r:
            raise UserError(
                f"{peft_dir}: {key} has shape {tuple(value.shape)}, which does not fit this "
                f"model's {tuple(target.shape)} (an adapter for another base model?)"
            )
        with torch.no_grad():
            if a:
                target[:old_r] = value.to(target.dtype)
            else:
                target[:, :old_r] = value.to(target.dtype)
        copied += 1
    if copied == 0:
        raise UserError(f"{peft_dir}: no LoRA weights in adapter_model.safetensors")


class Trainer:
    """One LoRA run over encoded examples, resumable from its checkpoint file."""

    def __init__(
        self,
        base: Path,
        train: list[Encoded],
        val: list[Encoded],
        config: TrainConfig,
        checkpoint: Path,
        run_key: str,
        cache_dir: Path,
    ) -> None:
        if not train:
            raise UserError("no usable training examples left; see the problems listed above")
        self.base, self.train, self.val, self.config = Path(base), train, val, config
        self.checkpoint, self.run_key = checkpoint, run_key
        self.cache_dir = cache_dir
        per_epoch = math.ceil(len(train) / config.batch_size)
        self.total_steps = min(per_epoch * config.epochs, config.max_steps or 1 << 62)
        self.steps_per_epoch = per_epoch
        self.device = "cpu"
        self.log = StepLog()

    def run(
        self, progress: ProgressFn | None = None, *, stop: threading.Event | None = None
    ) -> Any:
        """Train until done or cancelled; returns the PEFT model (its weights hold the run).

        A stop finishes the current step and saves a checkpoint that the next run with
        the same data and settings resumes from.
        """
        import torch

        model = self._load_model(torch)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=0.0)
        step = self._resume(torch, model, optimizer)
        # A run whose install was cut short (a kill, a full disk) resumes at its end.
        finished_before = step >= self.total_steps
        epoch_of_last_val = step if finished_before else -1
        saved_at = self.log.seconds
        while step < self.total_steps:
            if stop is not None and stop.is_set():
                self._save_checkpoint(torch, model, optimizer, step)
                return None
            started = time.perf_counter()
            loss, tokens = self._step(torch, model, optimizer, step)
            self.log.seconds += time.perf_counter() - started
            self.log.tokens += tokens
            self.log.train_losses.append(loss)
            step += 1
            if self.log.seconds - saved_at >= CHECKPOINT_EVERY_S and step < self.total_steps:
                self._save_checkpoint(torch, model, optimizer, step)  # a kill loses little
                saved_at = self.log.seconds
            if step % self.steps_per_epoch == 0 or step == self.total_steps:
                epoch_of_last_val = step
                self.log.val_loss = self.validate(torch, model)
            if progress is not None:
                progress(self._progress(step))
        if epoch_of_last_val != step:
            self.log.val_loss = self.validate(torch, model)
        if not finished_before:
            self._save_checkpoint(torch, model, optimizer, step)  # kept until installed
        return model

    # -- the model ---------------------------------------------------------------------

    def _load_model(self, torch: Any) -> Any:
        with warnings.catch_warnings():  # transformers/peft deprecations are not the user's
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._build_model(torch)

    def _build_model(self, torch: Any) -> Any:
        from peft import LoraConfig, get_peft_model
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # stderr is for Quire's own progress
        torch.manual_seed(self.config.seed)
        if torch.cuda.is_available():
            self.device = "cuda"
        else:
            torch.set_num_threads(self.config.threads or os.cpu_count() or 1)
        if self.config.rank is None:  # a bug: continued() settles a continued run's rank
            raise RuntimeError("TrainConfig.rank is unset; resolve it with continued()")
        model = self._base_weights(torch)
        start = Path(self.config.start_from) if self.config.start_from else None
        if start and _rank(start) == self.config.rank:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(start), is_trainable=True)
            model.peft_config["default"].base_model_name_or_path = self.base.name
            return model.to(torch.float32).to(self.device)
        lora = LoraConfig(
            r=self.config.rank,
            lora_alpha=self.config.alpha,  # type: ignore[arg-type]  # PEFT takes a float too
            target_modules=list(TARGET_MODULES),
            lora_dropout=0.0,  # no dropout: a resumed run repeats an uninterrupted one
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
        model.peft_config["default"].base_model_name_or_path = self.base.name
        if start:
            _grow_into(torch, model, start)
        return model.to(self.device)

    def _base_weights(self, torch: Any) -> Any:
        """The GGUF's weights as a float32 transformers model.

        transformers reads a GGUF's whole vocabulary metadata twice (about 100 s for the
        bundled Gemma on 2 cores), so the dequantized weights are kept as float16
        safetensors in `cache_dir` and later runs load those in seconds.
        """
        from transformers import AutoModelForCausalLM

        if (self.cache_dir / "config.json").is_file():
            return AutoModelForCausalLM.from_pretrained(self.cache_dir, dtype=torch.float32)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # its own progress bar
                model = AutoModelForCausalLM.from_pretrained(
                    str(self.base.parent), gguf_file=self.base.name, dtype=torch.float32
                )
        except (ValueError, OSError, KeyError) as exc:
            raise UserError(
                f"{self.base.name}: transformers cannot load this GGUF for training ({exc})"
            ) from exc
        # Dequantized, these are plain weights: save them as such.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = self.cache_dir.with_name(f".{self.cache_dir.name}.{os.getpid()}.tmp")
        model.to(torch.float16).save_pretrained(tmp)
        os.replace(tmp, self.cache_dir)  # whole or absent
        return model.to(torch.float32)

    def _loss(self, torch: Any, model: Any, item: Encoded) -> Any:
        """Summed cross-entropy over the answer tokens, the output layer only there."""
        ids = torch.tensor([item.prompt + item.answer], device=self.device)
        base = model.get_base_model()
        hidden = base.get_decoder()(input_ids=ids).last_hidden_state[0]
        start = len(item.prompt)
        logits = base.get_output_embeddings()(hidden[start - 1 : ids.shape[1] - 1])
        cap = getattr(base.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        targets = torch.tensor(item.answer, device=self.device)
        return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")

    def _step(self, torch: Any, model: Any, optimizer: Any, step: int) -> tuple[float, int]:
        """One optimizer step over a batch; returns (mean token loss, tokens seen)."""
        batch = self.batch(step)
        answer_tokens = sum(len(item.answer) for item in batch)
        for group in optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for item in batch:
            loss = self._loss(torch, model, item) / answer_tokens
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], max_norm=1.0
        )
        optimizer.step()
        return total, sum(item.tokens for item in batch)

    def validate(self, torch: Any, model: Any) -> float | None:
        """Mean token loss on the held-out examples (None without any)."""
        if not self.val:
            return None
        model.eval()
        with torch.inference_mode():
            summed = sum(float(self._loss(torch, model, item)) for item in self.val)
        return summed / sum(len(item.answer) for item in self.val)

    # -- schedule ----------------------------------------------------------------------

    def batch(self, step: int) -> list[Encoded]:
        """The examples of optimizer step `step`: a seeded shuffle per epoch."""
        epoch, index = divmod(step, self.steps_per_epoch)
        order = list(range(len(self.train)))
        random.Random(self.config.seed * 1000 + epoch).shuffle(order)
        size = self.config.batch_size
        return [self.train[i] for i in order[index * size : (index + 1) * size]]

    def learning_rate(self, step: int) -> float:
        """Linear warm-up, then a cosine decay to a tenth of the peak."""
        warm = max(1, round(self.total_steps * self.config.warmup))
        if step < warm:
            return self.config.lr * (step + 1) / warm
        done = (step - warm) / max(1, self.total_steps - warm)
        return self.config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * done)))

    def _progress(self, step: int) -> TrainProgress:
        per_step = self.log.seconds / step
        return TrainProgress(
            step=step,
            total_steps=self.total_steps,
            epoch=step / self.steps_per_epoch,
            loss=self.log.recent_loss(),
            tokens_per_s=self.log.tokens_per_s,
            elapsed_s=self.log.seconds,
            eta_s=per_step * (self.total_steps - step),
            val_loss=self.log.val_loss,
        )

    # -- checkpoints -------------------------------------------------------------------

    def _save_checkpoint(self, torch: Any, model: Any, optimizer: Any, step: int) -> None:
        """Write the LoRA weights, optimizer state and losses; atomically, by rename."""
        state = {
            "key": self.run_key,
            "step": step,
            "lora": {k: v for k, v in model.state_dict().items() if "lora_" in k},
            "optimizer": optimizer.state_dict(),
            "log": asdict(self.log),
        }
        save_checkpoint(torch, state, self.checkpoint)

    def _resume(self, torch: Any, model: Any, optimizer: Any) -> int:
        """The step to start from: a matching checkpoint's (its last, when only the install
        is left to do), else 0."""
        if not self.checkpoint.is_file():
            return 0
        try:
            state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        except Exception:  # noqa: BLE001 - from another torch, or damaged: start afresh
            return 0
        if state.get("key") != self.run_key:
            return 0
        model.load_state_dict(state["lora"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        self.log = StepLog(**{**state["log"], "resumed_from": int(state["step"])})
        return int(state["step"])


def save_checkpoint(torch: Any, state: dict[str, Any], checkpoint: Path) -> None:
    """Write a run's state atomically, by rename; a full disk is one line naming the
    folder (the checkpoint before stays as it was)."""
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint.with_name(checkpoint.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, checkpoint)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if not disk_full(exc, checkpoint.parent):
            raise
        raise UserError(
            f"{checkpoint.parent}: the disk is full; free some space, then run the same "
            "command again (it resumes from the last checkpoint)"
        ) from exc
