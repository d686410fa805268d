"""A model's chat template is code from a downloaded file: it renders in a sandbox with a
budget, and a hostile or broken one is one line naming the model, never a hang or a
traceback (issue 22, item 6)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from engine.answer.chat_template import ChatTemplate
from engine.types import UserError
from tests.conftest import REPO
from tests.factory import with_chat_template

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What colour is the sky?"},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "And at night?"},
]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
NO_SYSTEM = (  # Gemma 2's way: a system message is refused
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
)
HOSTILE = {
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
    "{% endfor %}",
    "a huge string": "{{ 'x' * 10**11 }}",
    "a sandbox escape": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "a huge output": "{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}",
    "a loop over a huge list": "{% for c in ['a'] * 10**9 %}{% endfor %}",
    "a syntax error": "{% for m in messages %}{{ m['content'] }",
}


def test_real_templates_render_as_llama_cpp_renders_them() -> None:
    gemma = NO_SYSTEM.replace("{{ raise_exception('System role not supported') }}", "")
    for source in (CHATML, gemma):
        ours, stop = ChatTemplate(source, "<s>", "</s>").render(MESSAGES)
        theirs = Jinja2ChatFormatter(source, eos_token="</s>", bos_token="<s>")(messages=MESSAGES)
        assert ours == theirs.prompt and stop == ["</s>"]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_template_is_one_line_quickly_and_small(name: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(UserError) as caught:
        ChatTemplate(HOSTILE[name], "<s>", "</s>", model="evil.gguf").render(MESSAGES)
    message = str(caught.value)
    assert message.startswith("evil.gguf: this model's chat template is broken or unsafe: ")
    assert "\n" not in message
    assert time.monotonic() - start < 30  # a hang would be hours; the budget is 2 s
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200


def test_a_template_that_refuses_a_system_role_gets_it_folded(llm_path: Path, tmp_path: Path):
    from engine.answer.generation import ChatFormat, load_vocab

    model = with_chat_template(llm_path, tmp_path / "gemma2-like.gguf", NO_SYSTEM)
    vocab = load_vocab(model)  # the chat format a Generator uses, without the weights
    try:
        prompt, _ = ChatFormat(vocab).format(MESSAGES[:2])
        assert "<start_of_turn>user\nAnswer briefly.\n\nWhat colour" in prompt
    finally:
        vocab.close()


@pytest.mark.slow
def test_ask_with_a_hostile_template_says_so_in_one_line(llm_path: Path, tmp_path: Path):
    model = with_chat_template(llm_path, tmp_path / "evil.gguf", HOSTILE["nested loops"])
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--data-dir", str(tmp_path / "data"), "ask",
         "hello?", "--mode", "base", "--model", str(model)],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=os.environ.copy(),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("quire: evil.gguf: this model's chat template is broken")
    assert done.stderr.count("\n") == 1
