"""A training run from a JSONL file to an installed adapter: check, train, convert, card.

Everything a run writes is built in a hidden folder beside the adapters and moved into
place at the end, the GGUF last, so the app never sees half an adapter. A stopped run
leaves only its checkpoint (`adapters/.checkpoints/NAME.pt`), which the same command
picks up again; a run is kept there until its adapter is in place, so a kill or a full
disk while installing loses no training: the same command installs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.answer.generation import ChatFormat, Generator, load_vocab
from engine.answer.prompting import BASE_SYSTEM_PROMPT
from engine.errors import describe, disk_full
from engine.finetune.examples import (
    Encoded,
    Example,
    Problem,
    TrainData,
    encode,
    no_examples,
    read_examples,
    split,
)
from engine.finetune.examples import with_system as with_system_prompt
from engine.finetune.trainer import TARGET_MODULES, ProgressFn, TrainConfig, Trainer, missing_extra
from engine.settings import Settings
from engine.types import UserError
from models.lora import convert_peft
from models.registry import adapters_dir

CHECKPOINTS_DIR = ".checkpoints"
# A training child's progress lines on stderr (`train`, `train-reader` with --progress-json)
# start with this, then one JSON object; the app reads them.
PROGRESS_PREFIX = "PROGRESS "
CACHE_DIR = ".base-weights"  # dequantized base models, reused by later runs
SAMPLE_COUNT = 3
SAMPLE_TOKENS = 96


@dataclass
class TrainResult:
    """What `train` did; `adapter` is None when the run was stopped (its checkpoint kept)."""

    name: str
    adapter: Path | None
    peft_dir: Path | None
    card: Path | None
    examples: int
    val_examples: int
    problems: list[Problem]
    steps: int
    total_steps: int
    train_loss: float | None
    val_loss: float | None
    seconds: float
    tokens_per_s: float
    device: str
    resumed_from: int = 0
    cancelled: bool = False
    samples: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("adapter", "peft_dir", "card"):
            data[key] = str(data[key]) if data[key] is not None else None
        data["problems"] = [str(p) for p in self.problems]
        return data


@dataclass
class Checked:
    """A data file checked against a model: what would be trained, and what would not."""

    data: TrainData
    encoded: list[Encoded]
    problems: list[Problem]


def check_data(path: Path, base: Path, system_prompt: str, context_size: int) -> Checked:
    """Read and render a data file through `base`'s chat format; no torch needed."""
    data = read_examples(path)
    chat = ChatFormat(load_vocab(Path(base)))
    encoded, too_long = encode(data.examples, chat.encode_example, system_prompt, context_size)
    problems = sorted(data.problems + too_long, key=lambda p: p.line)
    return Checked(data, encoded, problems)


def adapter_name(text: str) -> str:
    """A file-system-safe adapter name from `--out` or the data file's stem."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")
    if not name:
        raise UserError(f"'{text}' cannot be an adapter name; use letters, digits, - or _")
    return name


@dataclass
class TrainJob:
    """One `train` command: data, base model, where adapters go, and the settings."""

    data_path: Path
    base: Path
    models_dir: Path
    system_prompt: str
    context_size: int
    config: TrainConfig = field(default_factory=TrainConfig)
    name: str | None = None
    val_path: Path | None = None

    @classmethod
    def for_model(
        cls,
        data: Path,
        base: Path,
        models_dir: Path,
        settings: Settings,
        name: str | None = None,
        config: TrainConfig | None = None,
        val: Path | None = None,
    ) -> TrainJob:
        """A run for `base` whose examples are rendered as answers are: the settings'
        system prompt (else the app's own) and context size."""
        return cls(
            data_path=Path(data).expanduser(),
            base=Path(base).expanduser(),
            models_dir=models_dir,
            system_prompt=settings.system_prompt or BASE_SYSTEM_PROMPT,
            context_size=settings.context_size,
            config=config or TrainConfig(),
            name=name,
            val_path=Path(val).expanduser() if val else None,
        )

    def run(
        self, progress: ProgressFn | None = None, *, stop: threading.Event | None = None
    ) -> TrainResult:
        hint = missing_extra()
        if hint:
            raise UserError(hint)
        checked = self.check()
        train, val, val_problems = self._split(checked)
        problems = checked.problems + val_problems
        if not train:
            raise no_examples(self.data_path, problems)
        name = adapter_name(self.name or self.data_path.stem)
        folder = adapters_dir(self.models_dir)
        if self.config.start_from:
            self.config = continued(self.config, folder)
        checkpoint = folder / CHECKPOINTS_DIR / f"{name}.pt"
        stat = self.base.stat()
        cache = (
            self.models_dir / CACHE_DIR / f"{self.base.stem}-{stat.st_size}-{int(stat.st_mtime)}"
        )
        key = self._key(checked, name)
        trainer = Trainer(self.base, train, val, self.config, checkpoint, key, cache)
        model = trainer.run(progress, stop=stop)
        log = trainer.log
        result = TrainResult(
            name=name,
            adapter=None,
            peft_dir=None,
            card=None,
            examples=len(train),
            val_examples=len(val),
            problems=problems,
            steps=len(log.train_losses),
            total_steps=trainer.total_steps,
            train_loss=log.recent_loss() if log.train_losses else None,
            val_loss=log.val_loss,
            seconds=log.seconds,
            tokens_per_s=log.tokens_per_s,
            device=trainer.device,
            resumed_from=log.resumed_from,
            cancelled=model is None,
        )
        if model is not None:
            held_out = val or train
            examples = {e.line: e for e in checked.data.examples}
            samples = [examples[item.line] for item in held_out[:SAMPLE_COUNT]]
            self._install(model, result, samples, checked.data, folder)
            checkpoint.unlink(missing_ok=True)  # only once the adapter is in place
        return result

    def check(self) -> Checked:
        return check_data(self.data_path, self.base, self.system_prompt, self.context_size)

    def _split(self, checked: Checked) -> tuple[list[Encoded], list[Encoded], list[Problem]]:
        if self.val_path is None:
            train, val = split(checked.encoded, self.config.val_fraction, self.config.seed)
            return train, val, []
        held = check_data(self.val_path, self.base, self.system_prompt, self.context_size)
        problems = [Problem(p.line, f"{self.val_path.name}: {p.reason}") for p in held.problems]
        return checked.encoded, held.encoded, problems

    def _key(self, checked: Checked, name: str) -> str:
        """What a checkpoint must match to be resumed: data, base model, settings, name."""
        config = asdict(self.config)
        config.pop("threads")  # the thread count changes speed, not the result
        parts = [checked.data.sha256, str(self.base.stat().st_size), self.base.name, name]
        if self.config.start_from:  # the same folder trained again is another start
            weights = Path(self.config.start_from) / "adapter_model.safetensors"
            parts.append(str(weights.stat().st_mtime_ns))
        parts += [json.dumps(config, sort_keys=True), self.system_prompt, str(self.val_path)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _install(
        self, model: Any, result: TrainResult, samples: list[Example], data: TrainData, folder: Path
    ) -> None:
        """PEFT folder, GGUF adapter and card, built aside, then moved in (the GGUF last)."""
        work = install_dir(folder)
        gguf = work / f"{result.name}.gguf"  # the file's name is the adapter's name inside
        try:
            # float16 halves the files; llama.cpp computes in float32 all the same.
            model.half().save_pretrained(work / "peft", save_embedding_layers=False)
            convert_peft(work / "peft", gguf, self.base)
            result.samples = before_after(
                self.base, gguf, samples, self.system_prompt, self.context_size
            )
            card = self._card(result, data)
            (work / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
            final = folder / f"{result.name}.peft", folder / f"{result.name}.json"
            _replace_dir(work / "peft", final[0])
            os.replace(work / "card.json", final[1])
            os.replace(gguf, folder / f"{result.name}.gguf")
        except Exception as exc:
            raise install_error(exc, folder, "adapter") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result.peft_dir, result.card = final
        result.adapter = folder / f"{result.name}.gguf"

    def _card(self, result: TrainResult, data: TrainData) -> dict[str, Any]:
        card = result.to_json()
        for key in ("adapter", "peft_dir", "card"):
            card.pop(key)
        card["problems"] = len(result.problems)
        card.update(
            data={"file": data.path.name, "sha256": data.sha256, "lines": _line_count(data)},
            base_model={"file": self.base.name, "bytes": self.base.stat().st_size},
            settings=asdict(self.config),
            system_prompt=self.system_prompt,
            hardware=hardware(result.device),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        return card


def continued(config: TrainConfig, folder: Path) -> TrainConfig:
    """`config` continuing the PEFT LoRA adapter `config.start_from`: a PEFT folder, or the
    name of an adapter trained here (its `NAME.peft` folder). Its rank and alpha are kept,
    unless `config.rank` is larger: then the adapter grows to that rank with its scale
    (alpha / rank) kept, the new part starting at zero, so the first step starts from
    exactly what it had learned."""
    given = Path(str(config.start_from)).expanduser()
    candidates = [given, folder / f"{given.name}.peft", folder / f"{given.stem}.peft"]
    found = next((c for c in candidates if (c / "adapter_config.json").is_file()), None)
    if found is None:
        raise UserError(
            f"{given}: no PEFT LoRA adapter to continue (a folder with adapter_config.json, "
            f"or the name of an adapter trained here; a GGUF alone cannot be trained further)"
        )
    try:
        raw = json.loads((found / "adapter_config.json").read_text(encoding="utf-8"))
        rank, alpha = int(raw["r"]), float(raw["lora_alpha"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{found}: unreadable adapter_config.json ({exc})") from exc
    if not (found / "adapter_model.safetensors").is_file():
        raise UserError(f"{found}: adapter_model.safetensors is missing")
    if config.rank is not None and config.rank > rank:
        _check_growable(raw, found)
        alpha, rank = alpha * config.rank / rank, config.rank
    return replace(config, start_from=str(found.resolve()), rank=rank, alpha=alpha)


def _check_growable(raw: dict[str, Any], found: Path) -> None:
    """Growing rebuilds the LoRA as `train` makes them (one rank and alpha, the seven
    projections); an adapter made otherwise would change meaning, so it is refused."""
    special = [
        key
        for key in ("rank_pattern", "alpha_pattern", "use_rslora", "use_dora",
                    "modules_to_save", "layers_to_transform")
        if raw.get(key)
    ]  # fmt: skip
    targets = raw.get("target_modules") or []
    if isinstance(targets, str) or not set(targets) <= set(TARGET_MODULES):
        special.append(f"target_modules {targets!r}")
    if special:
        raise UserError(
            f"{found}: cannot grow this adapter to a larger --rank ({', '.join(special)}); "
            f"continue it at its own rank {raw['r']} instead"
        )


def before_after(
    base: Path, adapter: Path, examples: list[Example], system_prompt: str, context_size: int
) -> list[dict[str, str]]:
    """Greedy answers to a few held-out prompts without and with the new adapter."""
    if not examples:
        return []
    generator = Generator(base, context_size)
    try:
        rows: list[dict[str, str]] = []
        for example in examples:
            messages = with_system_prompt(example.messages, system_prompt)
            row = {"prompt": messages[-1]["content"], "expected": example.answer}
            for label, path in (("before", None), ("after", adapter)):
                generator.use_adapter(path)
                row[label] = "".join(generator.stream(messages, SAMPLE_TOKENS, 0.0, 0)).strip()
            rows.append(row)
        return rows
    finally:
        generator.close()


def hardware(device: str) -> dict[str, Any]:
    """Where a run happened, for the card: CPU model, cores, torch and the device used."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {"cpu": cpu, "cores": os.cpu_count(), "device": device, "gpu": gpu,
            "torch": torch.__version__, "threads": torch.get_num_threads()}  # fmt: skip


def _line_count(data: TrainData) -> int:
    return len(data.examples) + len(data.problems)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a folder over an older one of the same name (the old one is removed after)."""
    old = None
    if dst.exists():
        old = dst.with_name(f".old-{os.getpid()}-{dst.name}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


STALE_S = 3600.0  # where no process id can be checked: a leftover older than this is stale


def install_dir(folder: Path) -> Path:
    """A hidden folder in `folder` to build a run's result in, named with this process's
    id (`.tmp-PID-...`) so that a later run knows when it is a leftover."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale(folder)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=folder))


def remove_stale(folder: Path) -> None:
    """Delete what runs killed while installing left in `folder` (`.tmp-PID-*` and
    `.old-PID-*`): never loaded, and removed once the process that made them is gone."""
    for path in [*folder.glob(".tmp-*"), *folder.glob(".old-*")]:
        match = re.match(r"\.(?:tmp|old)-(\d+)-", path.name)
        try:
            if match and os.name == "posix":
                stale = not _running(int(match.group(1)))
            else:  # no process to ask about: left to its age
                stale = time.time() - path.stat().st_mtime > STALE_S
            if stale and path.is_dir():
                shutil.rmtree(path)
            elif stale:
                path.unlink()
        except OSError:
            continue  # another run removed it, or it cannot be: the next run tries again


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def install_error(exc: BaseException, folder: Path, what: str) -> BaseException:
    """What to raise when installing `what` into `folder` failed: a full disk names the
    folder and says the trained run is kept; other environment errors are one line; a bug
    is itself."""
    if disk_full(exc, folder):
        return UserError(
            f"{folder}: the disk is full; the {what} was not installed. The trained run is "
            "kept: free some space and run the same command again to install it"
        )
    return describe(exc, folder) or exc
