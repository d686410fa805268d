"""Training throughput: `train`'s step against a bare torch forward+backward, in one run.

Both sides use the same PEFT model (the bundled GGUF's weights, LoRA r=16 on every
linear layer) and the same batch of examples of about 500 tokens (a ~450-token prompt
from the shared corpus, a ~50-token answer). Quire's side is `Trainer._step` as `train`
runs it; the bare side is the least code that does the same work: decoder forward,
output layer on the answer positions, cross-entropy, backward, AdamW step. A third
variant computes the output layer on every position, as a plain causal-LM loss does, to
show what "logits only where the loss needs them" saves. Steps alternate (ABC, CBA...),
medians are reported, and peak memory is the process's maximum RSS.

    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/training.py --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.answer.generation import ChatFormat, load_vocab
from engine.answer.prompting import RAG_SYSTEM_PROMPT
from engine.finetune.examples import Encoded
from engine.finetune.job import CACHE_DIR
from engine.finetune.trainer import TrainConfig, Trainer
from engine.paths import models_dir
from models.bundled import ensure_llm

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "freedombox-manual"
ANSWER = (
    "Backups are made from the System menu: choose Backups, select the apps to include "
    "and a repository, then press Create Backup; restoring uses the same page [1]."
)


def batch(chat: ChatFormat, size: int, prompt_tokens: int) -> list[Encoded]:
    """`size` examples: manual text cut to `prompt_tokens`, in Quire's chat format."""
    pages = sorted(CORPUS.glob("*.html"))[: size * 2] if CORPUS.is_dir() else []
    texts = [p.read_text(errors="ignore") for p in pages] or ["lorem ipsum dolor " * 2000]
    items = []
    for i in range(size):
        words = " ".join(texts[i % len(texts)].split())
        ids = chat.llm.tokenize(words.encode(), add_bos=False, special=False)[:prompt_tokens]
        text = chat.llm.detokenize(ids).decode("utf-8", "ignore")
        user = f"Sources:\n\n[1] {text}\n\nQuestion: how?"
        messages = [
            {"role": "system", "content": RAG_SYSTEM_PROMPT},
            {"role": "user", "content": user},
        ]
        prompt, answer = chat.encode_example(messages, ANSWER)
        items.append(Encoded(i, prompt, answer))
    return items


def bare_step(torch: Any, model: Any, optimizer: Any, items: list[Encoded], full: bool) -> None:
    """The least code for one optimizer step over `items` (full: logits everywhere)."""
    base = model.get_base_model()
    optimizer.zero_grad(set_to_none=True)
    total = sum(len(x.answer) for x in items)
    for item in items:
        ids = torch.tensor([item.prompt + item.answer])
        hidden = base.get_decoder()(input_ids=ids).last_hidden_state[0]
        start = 0 if full else len(item.prompt) - 1
        logits = base.get_output_embeddings()(hidden[start:-1])
        labels = ids[0, start + 1 :].clone()
        if full:
            labels[: len(item.prompt) - 1] = -100
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum") / total
        loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="measured steps per variant")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=450)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    models = models_dir(Path(tempfile.gettempdir()))
    llm = ensure_llm(models)
    chat = ChatFormat(load_vocab(llm))
    items = batch(chat, args.batch, args.prompt_tokens)
    config = TrainConfig(batch_size=args.batch, epochs=1000)
    cache = models / CACHE_DIR / f"{llm.stem}-{llm.stat().st_size}-{int(llm.stat().st_mtime)}"
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(llm, items, [], config, Path(tmp) / "ck.pt", "bench", cache)
        model = trainer._load_model(torch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    variants = {
        "quire": lambda: trainer._step(torch, model, optimizer, 0),
        "bare": lambda: bare_step(torch, model, optimizer, items, full=False),
        "full_logits": lambda: bare_step(torch, model, optimizer, items, full=True),
    }
    for run in variants.values():  # warm-up
        run()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for rep in range(args.steps):
        for name in order if rep % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            variants[name]()
            seconds[name].append(time.perf_counter() - start)
    tokens = sum(x.tokens for x in items)
    med = {name: statistics.median(s) for name, s in seconds.items()}
    figures = {
        "threads": torch.get_num_threads(),
        "load_1min": os.getloadavg()[0],
        "batch": args.batch,
        "tokens_per_example": tokens / len(items),
        **{f"{name}_tokens_per_s": tokens / s for name, s in med.items()},
        "ratio_quire_vs_bare": med["bare"] / med["quire"],
        "ratio_full_logits_vs_bare": med["bare"] / med["full_logits"],
        "seconds_per_100_examples": med["quire"] / len(items) * 100,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    for key, value in figures.items():
        print(f"{key:>28}: {value:.3f}" if isinstance(value, float) else f"{key:>28}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
