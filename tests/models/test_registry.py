"""GGUF metadata and the models listing, on the bundled model and small written files."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from engine.types import UserError
from models.bundled import EMBEDDER_DIRNAME, LLM_FILENAME
from models.registry import list_models, read_gguf_info, read_gguf_metadata

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def write_gguf(path: Path, adapter: bool = False) -> Path:
    """A small real GGUF: a llama model with a chat template, or a LoRA adapter for it."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny adapter" if adapter else "tiny model")
    if adapter:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 16.0)
    else:
        writer.add_context_length(2048)
        writer.add_embedding_length(64)
        writer.add_block_count(2)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
        writer.add_chat_template(TEMPLATE)
        writer.add_token_list([f"tok{i}" for i in range(300)])  # a long array to skip
        writer.add_array("tiny.small_list", [1, 2, 3])
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_bundled_model_metadata_is_read_from_the_header(llm_path: Path):
    # Only the header is parsed (gguf.GGUFReader maps every tensor: ~25 s on this file);
    # a wall-clock bound would be a timed unit test on a shared machine, so none here.
    info = read_gguf_info(llm_path)
    assert info.architecture == "gemma3"
    assert info.general_type == "model" and not info.is_adapter
    assert info.chat_template is None  # a base model: generation must supply Gemma turns
    assert info.context_length == 32768
    assert info.embedding_length == 640
    assert info.block_count == 18
    assert info.quantization == "Q4_K_M"
    assert info.size_bytes == llm_path.stat().st_size
    assert json.loads(json.dumps(info.to_json()))["has_chat_template"] is False


def test_written_model_matches_gguf_reader(tmp_path: Path):
    path = write_gguf(tmp_path / "tiny.gguf")
    ours = read_gguf_metadata(path)
    reader = gguf.GGUFReader(path)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "tokenizer.ggml.tokens":
            continue
        assert ours[key] == pytest.approx(field.contents()), key
    assert ours["tokenizer.ggml.tokens"] is None  # long arrays are skipped, not decoded
    info = read_gguf_info(path)
    assert (info.name, info.context_length, info.quantization) == ("tiny model", 2048, "Q8_0")
    assert info.chat_template == TEMPLATE


def test_adapter_is_recognised(tmp_path: Path):
    info = read_gguf_info(write_gguf(tmp_path / "style.gguf", adapter=True))
    assert info.is_adapter
    assert (info.architecture, info.adapter_type, info.lora_alpha) == ("llama", "lora", 16.0)


def test_non_gguf_file_is_rejected_with_its_name(tmp_path: Path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip file")
    with pytest.raises(UserError, match=r"model\.gguf is not a GGUF file"):
        read_gguf_info(fake)


def test_missing_and_damaged_files_are_user_errors(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        read_gguf_info(tmp_path / "absent.gguf")
    whole = write_gguf(tmp_path / "tiny.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:200])  # header promises more key-values than remain
    with pytest.raises(UserError, match=r"cut\.gguf: damaged GGUF header"):
        read_gguf_info(cut)


def test_listing_shows_bundled_models_before_first_use(tmp_path: Path):
    write_gguf(tmp_path / "tiny.gguf")
    write_gguf(tmp_path / "style.gguf", adapter=True)
    (tmp_path / "broken.gguf").write_text("not a model")
    rows = {e.path.name: e for e in list_models(tmp_path)}

    assert rows[LLM_FILENAME].kind == "llm" and rows[LLM_FILENAME].bundled
    assert not rows[LLM_FILENAME].ready
    assert rows[EMBEDDER_DIRNAME].kind == "embedder" and not rows[EMBEDDER_DIRNAME].ready
    assert rows["tiny.gguf"].kind == "llm" and rows["tiny.gguf"].ready
    assert rows["style.gguf"].kind == "adapter"
    assert "not a GGUF file" in (rows["broken.gguf"].error or "")
    json.dumps([e.to_json() for e in rows.values()])


def test_listing_of_the_real_models_dir(llm_path: Path, models_dir: Path, tmp_path: Path):
    extra = write_gguf(tmp_path / "elsewhere.gguf")
    rows = list_models(models_dir, extra=[extra])
    llm = next(e for e in rows if e.path == llm_path)
    assert llm.ready and llm.info is not None and llm.info.architecture == "gemma3"
    emb = next(e for e in rows if e.kind == "embedder" and e.bundled)
    assert emb.ready and emb.to_json()["dim"] == 384 and emb.to_json()["max_tokens"] == 256
    assert any(e.path == extra for e in rows)
    assert "gemma3, Q4_K_M, ctx 32768, no chat template" in llm.summary()


def test_adapters_are_listed_by_file_name_and_a_cut_short_one_says_so(tmp_path: Path):
    """Before the fix every adapter `train` made was listed as "adapter", and one cut short
    after its header was listed ready, with "error": null."""
    from models.registry import ADAPTERS_DIR

    adapters = tmp_path / ADAPTERS_DIR
    adapters.mkdir()
    whole = write_gguf(adapters / "house-style.gguf", adapter=True)
    data = whole.read_bytes()
    (adapters / "cut.gguf").write_bytes(data[: len(data) - 40])  # the last tensor's tail
    (adapters / "header-only.gguf").write_bytes(data[: len(data) - 64])  # no tensor data
    (adapters / "garbage.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    rows = {e.path.name: e for e in list_models(tmp_path) if e.kind == "adapter"}
    assert sorted(rows) == ["cut.gguf", "garbage.gguf", "header-only.gguf", "house-style.gguf"]
    good = rows["house-style.gguf"]
    assert good.name == "house-style" and good.ready and good.error is None
    for name in ("cut.gguf", "header-only.gguf"):
        entry = rows[name].to_json()
        assert not entry["ready"] and entry["error"].startswith(f"{adapters / name}: ")
        assert "train, convert or download it again" in entry["error"]
    assert rows["garbage.gguf"].error and not rows["garbage.gguf"].ready
