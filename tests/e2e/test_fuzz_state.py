"""Seeded fuzzing of Quire's own state files (issue 22): settings.json and training JSONL.

Valid files are mutated (values of every JSON type put in every field, bit flips, cut and
repeated ranges, deep nesting, lone surrogates). Whatever comes out, loading either gives
valid values with warnings naming what was wrong, or one UserError naming the file; never
another exception. Seeds are fixed: a failure reproduces.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest

from engine.finetune.examples import read_examples
from engine.settings import LIMITS, Settings, _fits

INPUTS = int(os.environ.get("QUIRE_FUZZ_INPUTS", "700"))

ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 7, 2**63, -(2**70), 0.5, -0.0, 1e308, "five", "", "\ud800",
    "x\u0000y", [], [1, "a"], ["ok"], {}, {"a": 1}, [[[[[]]]]], "🙂" * 50,
]  # fmt: skip


def random_value(rng: random.Random) -> Any:
    if rng.random() < 0.7:
        return rng.choice(ODD_VALUES)
    return json.loads(json.dumps(rng.choice(ODD_VALUES)))  # floats via JSON too


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del out[at : at + rng.randint(1, 20)]
        elif kind == 2:
            out[at:at] = out[at : at + rng.randint(1, 30)] * rng.randint(2, 50)
        else:
            out[at:at] = rng.choice([b"[" * 5000, b'"\\ud800"', b"{", b"\xff\xfe", b"null"])
    return bytes(out)


def assert_valid(settings: Settings) -> None:
    hints = typing.get_type_hints(Settings)
    for f in fields(Settings):
        value = getattr(settings, f.name)
        assert _fits(value, hints[f.name]), (f.name, value)
        low, high = LIMITS.get(f.name, (None, None))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert math.isfinite(value)
            assert low is None or value >= low, (f.name, value)
            assert high is None or value <= high, (f.name, value)


def test_mutated_settings_load_as_valid_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(22)
    names = [f.name for f in fields(Settings)]
    good = json.dumps(asdict(Settings()) | {"top_k": 5, "watched_folders": ["/docs"]}).encode()
    caplog.set_level(logging.WARNING)
    for n in range(INPUTS):
        if n % 2:
            raw = json.loads(good)
            chosen = rng.sample(names, rng.randint(1, 4))
            for name in chosen:
                raw[name] = random_value(rng)
            data = json.dumps(raw).encode()
        else:
            data = mutate_bytes(rng, good)
        (tmp_path / "settings.json").write_bytes(data)
        caplog.clear()
        settings = Settings.load(tmp_path)  # never raises
        assert_valid(settings)
        messages = [r.getMessage() for r in caplog.records]
        assert all(str(tmp_path / "settings.json") in m for m in messages), messages
        if (tmp_path / "settings.json.bad").exists():
            (tmp_path / "settings.json.bad").unlink()
        else:  # each bad field named once, in its own warning
            assert len(messages) == len(set(messages)) <= len(names)
        settings.save(tmp_path)  # what was kept saves and loads again without a warning
        caplog.clear()
        assert Settings.load(tmp_path) == settings and not caplog.records


def training_line(rng: random.Random) -> bytes:
    """A good example, or one mutated (any bytes but a line end)."""
    if rng.random() < 0.5:
        row: Any = {"prompt": "Name a colour.", "completion": "red"}
    else:
        row = {"messages": [{"role": "user", "content": "Hi?"},
                            {"role": "assistant", "content": "Hello."}]}  # fmt: skip
    text = json.dumps(row).encode()
    if rng.random() < 0.5:
        return text
    return mutate_bytes(rng, text).replace(b"\n", b" ")


def test_mutated_training_data_reports_every_bad_line_by_number(tmp_path: Path) -> None:
    rng = random.Random(9)
    path = tmp_path / "data.jsonl"
    for _ in range(max(1, INPUTS // 20)):
        lines = [training_line(rng) for _ in range(rng.randint(1, 30))]
        path.write_bytes(b"\n".join(lines) + b"\n")
        data = read_examples(path)
        seen = sorted([e.line for e in data.examples] + [p.line for p in data.problems])
        assert seen == list(range(1, len(lines) + 1))
        for example in data.examples:  # what is kept can be encoded and printed
            json.dumps(example.messages, ensure_ascii=False).encode("utf-8")
