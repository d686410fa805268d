"""Training examples: chat JSONL read line by line, checked, split and rendered into tokens.

Two line formats, as hosted fine-tuning services take them:
`{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}` (the last
message is the assistant answer that is trained; a system message is optional) and
`{"prompt": "...", "completion": "..."}`. A bad line is reported with its number and the
good ones are kept. No torch here: the app checks a file before it offers to train.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.types import UserError

ROLES = ("system", "user", "assistant")
# A line longer than this is refused unread: over 250k tokens, it fits no context that can
# be trained on a laptop, and parsing and tokenizing 50 MB took 195 s and 2.45 GB.
MAX_LINE_BYTES = 1 << 20
PROBLEMS_IN_ERROR = 3  # bad lines named in the one-line error when no line is usable
Messages = list[dict[str, str]]
# (messages, answer) -> (prompt tokens, answer tokens): `ChatFormat.encode_example`.
Encoder = Callable[[Messages, str], tuple[list[int], list[int]]]


@dataclass(frozen=True)
class Example:
    """One training example: the turns the model is given, and the answer it learns."""

    line: int
    messages: Messages
    answer: str


@dataclass(frozen=True)
class Problem:
    """A line left out of training, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class TrainData:
    """What a data file holds: the usable examples, the problems, and the file's hash."""

    path: Path
    examples: list[Example]
    problems: list[Problem]
    sha256: str


@dataclass(frozen=True)
class Encoded:
    """An example in tokens; the loss is taken on `answer` only."""

    line: int
    prompt: list[int]
    answer: list[int]

    @property
    def tokens(self) -> int:
        return len(self.prompt) + len(self.answer)


def read_examples(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> TrainData:
    """Parse a JSONL file line by line; UserError only when the file cannot be read."""
    path = Path(path).expanduser()
    examples: list[Example] = []
    problems: list[Problem] = []
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for number, line in enumerate(read_lines(fh, max_line_bytes, digest), 1):
                try:
                    examples.append(parse_line(line, number, max_line_bytes))
                except ValueError as exc:
                    problems.append(Problem(number, str(exc)))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the training data ({exc.strerror or exc})") from exc
    return TrainData(path, examples, problems, digest.hexdigest())


def read_lines(fh: IO[bytes], limit: int, digest: Any = None) -> Iterator[bytes | int]:
    """Each line of a binary file without its line end (and a first line's BOM); a line
    over `limit` bytes is read past, never held, and given as its length. `digest` (a
    hashlib object) sees every byte."""
    first = True
    while line := fh.readline(limit + 1):
        if digest is not None:
            digest.update(line)
        if len(line) > limit and not line.endswith(b"\n"):
            length = len(line)
            while line and not line.endswith(b"\n"):
                line = fh.readline(1 << 20)
                length += len(line)
                if digest is not None:
                    digest.update(line)
            yield length - line.endswith(b"\n")
        else:
            line = line.removesuffix(b"\n").removesuffix(b"\r")
            yield line.removeprefix(b"\xef\xbb\xbf") if first else line
        first = False


def parse_line(line: bytes | int | str, number: int, limit: int = MAX_LINE_BYTES) -> Example:
    """One example from one line (a length: a line too long to read); ValueError says
    what is wrong with it."""
    if isinstance(line, int):
        raise ValueError(f"{line / 1e6:.1f} MB long; a line may hold {limit // 1024} KB")
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text (byte {exc.start + 1})") from exc
    if not line.strip():
        raise ValueError("empty line")
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise ValueError("not JSON (nested too deeply)") from exc
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    if "messages" in row:
        messages = _messages(row["messages"])
    elif "prompt" in row or "completion" in row:
        messages = [
            {"role": "user", "content": _text(row.get("prompt"), "prompt")},
            {"role": "assistant", "content": _text(row.get("completion"), "completion")},
        ]
    else:
        raise ValueError('needs "messages", or "prompt" and "completion"')
    return Example(number, messages[:-1], messages[-1]["content"])


def _messages(value: Any) -> Messages:
    if not isinstance(value, list) or not value:
        raise ValueError('"messages" must be a non-empty list')
    messages: Messages = []
    for turn in value:
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            raise ValueError(f"each message needs a role ({', '.join(ROLES)}) and content")
        messages.append({"role": turn["role"], "content": _text(turn.get("content"), "content")})
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant turn to learn from")
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer")
    if not any(m["role"] == "user" for m in messages[:-1]):
        raise ValueError("no user turn before the assistant's answer")
    return messages


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be text')
    if not value.strip():
        raise ValueError(f'"{name}" is empty')
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON's "\ud800" escape: half a character
        raise ValueError(
            f'"{name}" holds a lone surrogate escape (\\u{ord(value[exc.start]):x})'
        ) from exc
    return value


def no_examples(path: Path, problems: list[Problem]) -> UserError:
    """The one-line error for a data file with no usable line: the first few bad lines,
    and where to see them all."""
    if not problems:
        return UserError(f"{path}: no training examples (the file is empty)")
    shown = "; ".join(map(str, problems[:PROBLEMS_IN_ERROR]))
    more = len(problems) - PROBLEMS_IN_ERROR
    rest = f"; and {more} more (train --check lists every line)" if more > 0 else ""
    return UserError(f"{path}: no usable training examples: {shown}{rest}")


def with_system(messages: Messages, system_prompt: str) -> Messages:
    """The turns as the engine sends them: its system prompt first unless the example has one."""
    if messages and messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def encode(
    examples: list[Example], encoder: Encoder, system_prompt: str, max_tokens: int
) -> tuple[list[Encoded], list[Problem]]:
    """Render every example in the model's chat format; ones over `max_tokens` are problems."""
    encoded: list[Encoded] = []
    problems: list[Problem] = []
    for example in examples:
        prompt, answer = encoder(with_system(example.messages, system_prompt), example.answer)
        total = len(prompt) + len(answer)
        if total > max_tokens:
            problems.append(
                Problem(example.line, f"too long: {total} tokens, the context holds {max_tokens}")
            )
        else:
            encoded.append(Encoded(example.line, prompt, answer))
    return encoded, problems


def split(items: list[Encoded], fraction: float, seed: int) -> tuple[list[Encoded], list[Encoded]]:
    """(train, validation): a seeded `fraction` held out, at least one when there are 5+,
    at most 200; none for smaller sets."""
    if len(items) < 5 or fraction <= 0:
        return list(items), []
    n_val = min(200, max(1, round(len(items) * fraction)))
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    train = [x for i, x in enumerate(items) if i not in held]
    return train, [x for i, x in enumerate(items) if i in held]
