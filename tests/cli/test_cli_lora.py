"""Issue 4 from the command line: convert a PEFT adapter, then answer in all four modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import make_library, quire
from tests.factory import make_lora, write_gemma_peft, write_peft


@pytest.fixture(scope="module")
def setup(llm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli_lora")
    data = root / "data"
    library = make_library(root / "library")
    quire(data, "ingest", str(library / "manual.pdf"))
    peft = write_gemma_peft(root / "peft", llm_path)
    adapter = root / "style.gguf"
    converted = quire(data, "lora", "convert", str(peft), str(adapter))
    assert converted.returncode == 0, converted.stderr
    return data, adapter


@pytest.mark.slow
def test_lora_modes_need_an_adapter(tmp_path: Path, llm_path: Path) -> None:
    other = tmp_path / "another-model.gguf"  # not the bundled model: no default adapter
    other.symlink_to(llm_path)
    result = quire(tmp_path / "data", "ask", "hi", "--mode", "lora", "--model", str(other))
    assert result.returncode == 1 and "needs a LoRA adapter" in result.stderr
    bundled = quire(tmp_path / "data", "ask", "hi", "--mode", "lora", "--max-tokens", "8")
    assert bundled.returncode == 0, bundled.stderr  # Quire's grounding adapter


def test_converted_adapter_is_described(setup: tuple[Path, Path]) -> None:
    data, adapter = setup
    info = json.loads(quire(data, "lora", "info", str(adapter), "--json").stdout)
    assert info["architecture"] == "gemma3" and info["rank"] == 8 and len(info["tensors"]) == 54


def test_adapter_for_another_base_is_refused(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = setup
    from tests.models.test_lora import tiny_shapes, write_base  # a tiny synthetic llama GGUF

    llama = write_base(tmp_path / "tiny-llama.gguf", "llama")
    peft = write_peft(tmp_path / "p", make_lora(tiny_shapes(), ["self_attn.q_proj"], 2))
    assert (
        quire(
            data,
            "lora",
            "convert",
            str(peft),
            str(tmp_path / "llama-lora.gguf"),
            "--base",
            str(llama),
        ).returncode
        == 0
    )
    result = quire(data, "ask", "hi", "--mode", "lora", "--lora", str(tmp_path / "llama-lora.gguf"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "llama-lora.gguf does not fit model gemma-3-270m" in result.stderr


@pytest.mark.slow
def test_all_modes_side_by_side(setup: tuple[Path, Path]) -> None:
    data, adapter = setup
    result = quire(
        data,
        "ask",
        "How long is the warranty?",
        "--mode",
        "all",
        "--lora",
        str(adapter),
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    modes = json.loads(result.stdout)["modes"]
    assert list(modes) == ["base", "rag", "lora", "hybrid"]
    assert not modes["base"]["sources"] and not modes["lora"]["sources"]
    assert modes["rag"]["sources"][0]["page"] == 3 == modes["hybrid"]["sources"][0]["page"]
    assert modes["lora"]["answer"] != modes["base"]["answer"]  # the adapter changes behaviour
    for entry in modes.values():
        assert entry["timings"]["tokens"] > 0 and entry["timings"]["first_token_s"] > 0


def test_lora_import_keeps_the_adapter_and_uses_it(tmp_path: Path, llm_path: Path) -> None:
    from engine.settings import Settings

    data = tmp_path / "data"
    peft = write_gemma_peft(tmp_path / "my-style", llm_path)
    result = quire(data, "lora", "import", str(peft), "--scale", "0.6")
    assert result.returncode == 0, result.stderr
    saved = Settings.load(data)
    assert saved.lora_path is not None and Path(saved.lora_path).name == "my-style.gguf"
    assert Path(saved.lora_path).is_file() and saved.lora_scale == 0.6
    listed = quire(data, "models", "--json")
    assert "my-style" in listed.stdout
