"""A reader training run in words: its name, the check line and the accuracy line.

`main.py train-reader` prints them and the app's Fine-tune tab shows them, so both say
the same thing about the same run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.finetune.job import adapter_name


def reader_name(questions: Path | None, out: str | None = None) -> str:
    """`--out`, else the question file's name, else `feedback`."""
    return adapter_name(out or (questions.stem if questions else "feedback"))


def check_line(check: dict[str, Any]) -> str:
    """`12 questions: 20 pairs (11 passage, 9 sentence); no pair: 1 gold passage not found`."""
    stats = check["stats"]
    line = (
        f"{check['questions']} questions: {check['pairs']} pairs "
        f"({stats.get('passage pairs', 0)} passage, {stats.get('sentence pairs', 0)} sentence)"
    )
    reasons = no_pair_reasons(stats)
    return f"{line}; no pair: {reasons}" if reasons else line


def no_pair_reasons(stats: dict[str, int]) -> str:
    return ", ".join(
        f"{count} {why.removesuffix(' (no pair)')}"
        for why, count in stats.items()
        if why.endswith("(no pair)") and count
    )


def accuracy_line(result: dict[str, Any]) -> str:
    """Validation accuracy before → after, per kind of pair."""
    before, after = result.get("val_before") or {}, result.get("val_after") or {}
    if not after:
        return "no validation (it needs 10 questions or more with a pair)"
    parts = [f"{kind} {before.get(kind, 0):.2f} → {after[kind]:.2f}" for kind in after]
    return "validation accuracy " + ", ".join(parts)
