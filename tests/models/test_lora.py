"""LoRA: PEFT -> GGUF conversion checked against llama.cpp's rules, and live adapter switching
on the real bundled Gemma 3 270M."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from engine.types import UserError
from models.lora import (
    check_compatible,
    convert_peft,
    read_adapter,
    read_safetensors,
    rope_permute,
)
from tests.factory import MODULES, PREFIX, make_lora, write_gemma_peft, write_peft

# ---------------------------------------------------------------- builders


def tiny_shapes(hidden: int = 16, n_head: int = 4, n_head_kv: int = 2) -> dict[str, tuple]:
    """(n_in, n_out) of each adaptable tensor of a tiny transformer layer, by GGUF name."""
    head_dim = hidden // n_head
    kv = n_head_kv * head_dim
    return {
        "attn_q": (hidden, hidden),
        "attn_k": (hidden, kv),
        "attn_v": (hidden, kv),
        "attn_output": (hidden, hidden),
        "ffn_gate": (hidden, 32),
        "ffn_up": (hidden, 32),
        "ffn_down": (32, hidden),
    }


def write_base(
    path: Path,
    arch: str,
    layers: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    shapes: dict[str, tuple] | None = None,
) -> Path:
    """A tiny base model GGUF with real tensor names and shapes (weights are zeros)."""
    shapes = shapes or tiny_shapes(n_head=n_head, n_head_kv=n_head_kv)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(layers)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_tensor("token_embd.weight", np.zeros((8, 16), np.float32))
    for layer in range(layers):
        for name, (n_in, n_out) in shapes.items():
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.zeros((n_out, n_in), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def save_bf16(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """safetensors with BF16 tensors, written by hand (numpy has no bf16)."""
    header: dict[str, Any] = {}
    blobs, offset = [], 0
    for name, data in tensors.items():
        blob = (data.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(data.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))


def gguf_tensors(path: Path) -> dict[str, np.ndarray]:
    """Read back with gguf's own reader (independent of models.lora's header parser)."""
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}


def gguf_field(path: Path, key: str) -> Any:
    return gguf.GGUFReader(path).fields[key].contents()


# ---------------------------------------------------------------- RoPE permutation


def test_rope_permute_matches_closed_form() -> None:
    n_head, head_dim = 3, 8
    rows = np.arange(n_head * head_dim * 2).reshape(n_head * head_dim, 2)
    out = rope_permute(rows, n_head)
    for h in range(n_head):
        for j in range(head_dim // 2):
            for p in range(2):  # row p*d/2 + j of each head lands on 2j + p
                assert (
                    out[h * head_dim + 2 * j + p] == rows[h * head_dim + p * head_dim // 2 + j]
                ).all()


def test_rope_permute_turns_half_split_rope_into_interleaved_rope() -> None:
    """HF rotates pairs (i, i + d/2); llama.cpp rotates (2i, 2i+1). Permuted rows must agree."""
    d, pos = 8, 5
    theta = pos * 10000.0 ** (-np.arange(d // 2) * 2 / d)
    cos, sin = np.cos(theta), np.sin(theta)
    q = np.random.default_rng(1).standard_normal(d)
    lo, hi = q[: d // 2], q[d // 2 :]
    hf = np.concatenate([lo * cos - hi * sin, hi * cos + lo * sin])
    qp = rope_permute(q, 1)
    ev, od = qp[0::2], qp[1::2]
    ggml = np.empty(d)
    ggml[0::2], ggml[1::2] = ev * cos - od * sin, od * cos + ev * sin
    assert np.allclose(ggml, rope_permute(hf, 1))


def test_llama_conversion_permutes_q_and_k_rows_of_b_only(tmp_path: Path) -> None:
    base = write_base(tmp_path / "llama.gguf", "llama", n_head=4, n_head_kv=2)
    modules = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]
    lora = make_lora(tiny_shapes(), modules, layers=2)
    peft = write_peft(tmp_path / "peft", lora, target_modules=["q_proj", "k_proj", "v_proj"])
    out = tmp_path / "adapter.gguf"
    convert_peft(peft, out, base)
    got = gguf_tensors(out)
    for name, heads in (("q_proj", 4), ("k_proj", 2), ("v_proj", None)):
        key = f"{PREFIX}.1.self_attn.{name}"
        gname = f"blk.1.{MODULES['self_attn.' + name]}.weight"
        a, b = lora[f"{key}.lora_A.weight"], lora[f"{key}.lora_B.weight"]
        assert np.array_equal(got[f"{gname}.lora_a"], a)
        want_delta = (b @ a) if heads is None else rope_permute(b @ a, heads)
        assert np.allclose(got[f"{gname}.lora_b"] @ got[f"{gname}.lora_a"], want_delta)


# ---------------------------------------------------------------- scaling, dtypes


def test_rslora_alpha_is_alpha_times_sqrt_r(tmp_path: Path) -> None:
    base = write_base(tmp_path / "qwen.gguf", "qwen2")
    peft = write_peft(
        tmp_path / "peft", make_lora(tiny_shapes(), ["self_attn.q_proj"], 2), use_rslora=True
    )
    info = convert_peft(peft, tmp_path / "a.gguf", base)
    assert info.alpha == pytest.approx(16 * math.sqrt(8))
    assert gguf_field(tmp_path / "a.gguf", "adapter.lora.alpha") == pytest.approx(16 * math.sqrt(8))


@pytest.mark.parametrize("rslora", [False, True])
def test_rank_and_alpha_patterns_keep_peft_scaling(tmp_path: Path, rslora: bool) -> None:
    """llama.cpp applies alpha/r per tensor; the converter folds any other PEFT scale into B."""
    base = write_base(tmp_path / "qwen.gguf", "qwen2")
    lora = make_lora(tiny_shapes(), ["self_attn.q_proj"], 2)
    lora |= make_lora(tiny_shapes(), ["self_attn.v_proj"], 2, r=4, seed=3)
    peft = write_peft(
        tmp_path / "peft",
        lora,
        use_rslora=rslora,
        rank_pattern={"v_proj": 4},
        alpha_pattern={"layers.1.self_attn.q_proj": 32},
    )
    info = convert_peft(peft, tmp_path / "a.gguf", base)
    got = gguf_tensors(tmp_path / "a.gguf")
    for layer, module, r, alpha in (
        (0, "q_proj", 8, 16),
        (1, "q_proj", 8, 32),
        (0, "v_proj", 4, 16),
    ):
        key = f"{PREFIX}.{layer}.self_attn.{module}"
        peft_delta = (
            alpha
            / (math.sqrt(r) if rslora else r)
            * lora[f"{key}.lora_B.weight"]
            @ lora[f"{key}.lora_A.weight"]
        )
        gname = f"blk.{layer}.attn_{module[0]}.weight"
        ggml_delta = info.alpha / r * got[f"{gname}.lora_b"] @ got[f"{gname}.lora_a"]
        assert np.allclose(ggml_delta, peft_delta, rtol=1e-5, atol=1e-7)


def test_bf16_is_read_exactly_and_converts_to_f32(tmp_path: Path) -> None:
    lora = make_lora(tiny_shapes(), ["self_attn.q_proj"], 2)
    exact = {k: (v.view(np.uint32) & 0xFFFF0000).view(np.float32) for k, v in lora.items()}
    peft = write_peft(tmp_path / "peft", lora)
    save_bf16(peft / "adapter_model.safetensors", exact)
    loaded = read_safetensors(peft / "adapter_model.safetensors")
    assert all(np.array_equal(loaded[k], exact[k]) for k in exact)
    convert_peft(peft, tmp_path / "a.gguf", write_base(tmp_path / "q.gguf", "qwen2"))
    got = gguf_tensors(tmp_path / "a.gguf")
    assert np.array_equal(
        got["blk.0.attn_q.weight.lora_a"], exact[f"{PREFIX}.0.self_attn.q_proj.lora_A.weight"]
    )
    assert got["blk.0.attn_q.weight.lora_a"].dtype == np.float32


def test_f16_input_stays_f16(tmp_path: Path) -> None:
    lora = {
        k: v.astype(np.float16)
        for k, v in make_lora(tiny_shapes(), ["self_attn.q_proj"], 2).items()
    }
    convert_peft(
        write_peft(tmp_path / "p", lora),
        tmp_path / "a.gguf",
        write_base(tmp_path / "q.gguf", "qwen2"),
    )
    assert {t.dtype for t in gguf_tensors(tmp_path / "a.gguf").values()} == {np.dtype("f2")}


# ---------------------------------------- qwen2: names, metadata, loader rules


def assert_llama_cpp_loadable(adapter: Path, arch: str, base: Path | None = None) -> None:
    """What llama.cpp's adapter loader checks, read with gguf's own reader (base shapes too,
    when given: gguf's reader takes half a minute on Gemma's 262k-token vocabulary)."""
    reader = gguf.GGUFReader(adapter)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert fields["general.architecture"] == arch
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] > 0
    base_shapes = {t.name: tuple(t.shape) for t in gguf.GGUFReader(base).tensors} if base else None
    tensors = {t.name: t for t in reader.tensors}
    assert all(n.endswith((".lora_a", ".lora_b")) for n in tensors)
    for name in [n[: -len(".lora_a")] for n in tensors if n.endswith(".lora_a")]:
        a, b = tensors[f"{name}.lora_a"], tensors[f"{name}.lora_b"]  # pairs complete
        assert a.tensor_type.name in ("F32", "F16") and b.tensor_type.name in ("F32", "F16")
        assert a.shape[1] == b.shape[0]  # ne: a [n_in, r], b [r, n_out]
        if base_shapes is not None:
            assert (a.shape[0], b.shape[1]) == base_shapes[name][:2]
    assert len(tensors) % 2 == 0


def test_qwen2_conversion_maps_every_module(tmp_path: Path) -> None:
    base = write_base(tmp_path / "qwen.gguf", "qwen2", layers=3)
    lora = make_lora(tiny_shapes(), list(MODULES), layers=3)
    peft = write_peft(tmp_path / "peft", lora, base_model_name_or_path="Qwen/Qwen2-0.5B")
    info = convert_peft(peft, tmp_path / "a.gguf", base)
    assert info.architecture == "qwen2" and info.rank == 8 and info.alpha == 16
    assert info.base_model == "Qwen/Qwen2-0.5B"
    assert len(info.tensors) == 3 * len(MODULES)
    got = gguf_tensors(tmp_path / "a.gguf")
    for module, gname in MODULES.items():  # qwen2: no permutation anywhere
        assert np.array_equal(
            got[f"blk.2.{gname}.weight.lora_b"], lora[f"{PREFIX}.2.{module}.lora_B.weight"]
        )
    assert_llama_cpp_loadable(tmp_path / "a.gguf", "qwen2", base)
    assert read_adapter(tmp_path / "a.gguf") == info
    assert check_compatible(tmp_path / "a.gguf", base) == info


# ---------------------------------------------------------------- refusals


def refusal_cases() -> list[Any]:
    q = ["self_attn.q_proj"]
    shapes = tiny_shapes()
    lone = {k: v for k, v in make_lora(shapes, q, 2).items() if "lora_A" in k}
    embed = make_lora(shapes, q, 2) | {
        "base_model.model.model.embed_tokens.lora_embedding_A": np.zeros((8, 8), np.float32)
    }
    head = make_lora(shapes, q, 2) | {
        "base_model.model.lm_head.lora_A.weight": np.zeros((8, 16), np.float32),
        "base_model.model.lm_head.lora_B.weight": np.zeros((8, 8), np.float32),
    }
    saved = make_lora(shapes, q, 2) | {
        "base_model.model.lm_head.weight": np.zeros((8, 16), np.float32)
    }
    unknown = {k.replace("q_proj", "foo_proj"): v for k, v in make_lora(shapes, q, 2).items()}
    wide = make_lora(tiny_shapes(hidden=32), q, 2)
    return [
        pytest.param(make_lora(shapes, q, 2), {"use_dora": True}, "DoRA", id="dora"),
        pytest.param(
            make_lora(shapes, q, 2),
            {"modules_to_save": ["lm_head"]},
            "modules_to_save",
            id="modules_to_save",
        ),
        pytest.param(lone, {}, "only one of lora_A/lora_B", id="unpaired"),
        pytest.param(embed, {}, "embed_tokens", id="embed_tokens"),
        pytest.param(head, {}, "lm_head", id="lm_head"),
        pytest.param(saved, {}, "not a LoRA A/B weight", id="full_weight"),
        pytest.param(unknown, {}, "unknown for a qwen2 model", id="unknown_module"),
        pytest.param(wide, {}, "another base model", id="wrong_shape"),
    ]


@pytest.mark.parametrize(("tensors", "config", "message"), refusal_cases())
def test_conversion_refuses(tmp_path: Path, tensors: dict, config: dict, message: str) -> None:
    base = write_base(tmp_path / "qwen.gguf", "qwen2")
    out = tmp_path / "out" / "a.gguf"
    out.parent.mkdir()
    out.write_bytes(b"previous adapter")
    with pytest.raises(UserError, match=message) as err:
        convert_peft(write_peft(tmp_path / "peft", tensors, **config), out, base)
    assert "peft" in str(err.value) or "qwen.gguf" in str(err.value)
    assert out.read_bytes() == b"previous adapter"  # untouched, and no temp file left
    assert [p.name for p in out.parent.iterdir()] == ["a.gguf"]


def test_conversion_refuses_unsupported_architecture_and_missing_files(tmp_path: Path) -> None:
    peft = write_peft(tmp_path / "peft", make_lora(tiny_shapes(), ["self_attn.q_proj"], 2))
    with pytest.raises(UserError, match="architecture bert is not supported"):
        convert_peft(peft, tmp_path / "a.gguf", write_base(tmp_path / "bert.gguf", "bert"))
    (peft / "adapter_model.safetensors").unlink()
    with pytest.raises(UserError, match=r"adapter_model\.safetensors: not found"):
        convert_peft(peft, tmp_path / "a.gguf", tmp_path / "bert.gguf")


def test_read_adapter_refuses_non_gguf_and_base_models(tmp_path: Path) -> None:
    (tmp_path / "notes.gguf").write_text("hello")
    with pytest.raises(UserError, match=r"notes\.gguf is not a GGUF file"):
        read_adapter(tmp_path / "notes.gguf")
    base = write_base(tmp_path / "qwen.gguf", "qwen2")
    with pytest.raises(UserError, match=r"qwen\.gguf is a model, not a LoRA adapter"):
        read_adapter(base)


def test_check_compatible_names_both_files_and_the_mismatch(tmp_path: Path) -> None:
    qwen = write_base(tmp_path / "qwen.gguf", "qwen2")
    peft = write_peft(tmp_path / "peft", make_lora(tiny_shapes(), ["self_attn.q_proj"], 2))
    adapter = tmp_path / "a.gguf"
    convert_peft(peft, adapter, qwen)
    llama = write_base(tmp_path / "llama.gguf", "llama")
    with pytest.raises(
        UserError, match=r"a\.gguf does not fit model llama\.gguf: adapter is for qwen2"
    ):
        check_compatible(adapter, llama)
    wide = write_base(tmp_path / "wide.gguf", "qwen2", shapes=tiny_shapes(hidden=32))
    with pytest.raises(
        UserError, match=r"wide.gguf: blk.0.attn_q.weight is 32 -> 32 in the model, 16 -> 16"
    ):
        check_compatible(adapter, wide)


# ---------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def gemma_adapter(llm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (random, seeded) PEFT LoRA for Gemma 3 270M on q, v and o, converted."""
    folder = tmp_path_factory.mktemp("gemma_lora")
    peft = write_gemma_peft(folder / "peft", llm_path)
    convert_peft(peft, folder / "gemma-lora.gguf", llm_path)
    return folder / "gemma-lora.gguf"


@pytest.fixture(scope="module")
def llm(llm_path: Path) -> Iterator[Any]:
    llama_cpp = pytest.importorskip("llama_cpp")
    model = llama_cpp.Llama(model_path=str(llm_path), n_ctx=512, seed=1234, verbose=False)
    yield model
    model.close()


PROMPT = "The three most important rules of writing are"


def greedy(llm: Any, tokens: int = 16) -> list[int]:
    out = llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, top_k=1)
    return llm.tokenize(out["choices"][0]["text"].encode(), add_bos=False)


@pytest.mark.slow
def test_gemma_adapter_meets_llama_cpp_rules(gemma_adapter: Path, llm_path: Path) -> None:
    assert_llama_cpp_loadable(gemma_adapter, "gemma3")
    info = check_compatible(gemma_adapter, llm_path)
    assert (info.architecture, info.rank, info.alpha) == ("gemma3", 8, 16.0)
    assert len(info.tensors) == 18 * 3 and "blk.17.attn_output.weight" in info.tensors


@pytest.mark.slow
def test_switching_adapters_on_a_live_model(llm: Any, gemma_adapter: Path) -> None:
    from engine.answer.adapters import AdapterSet

    adapters = AdapterSet(llm)
    base = greedy(llm)
    assert adapters.load(gemma_adapter)  # llama_adapter_lora_init returned non-NULL
    adapters.activate(gemma_adapter, 1.0)
    assert adapters.active == (gemma_adapter.resolve(), 1.0)
    tuned = greedy(llm)
    changed = sum(a != b for a, b in zip(base, tuned, strict=False)) + abs(len(base) - len(tuned))
    assert changed >= len(base) // 2, (base, tuned)
    adapters.activate(None)
    assert adapters.active is None
    assert greedy(llm) == base  # no stale prompt state of the adapter survives
    adapters.activate(gemma_adapter, 1.0)
    assert greedy(llm) == tuned
    adapters.activate(gemma_adapter, 0.25)
    assert greedy(llm) != tuned
    adapters.close()
    assert greedy(llm) == base
    # The reference: the adapter applied from the start, by llama-cpp-python itself. Runtime
    # switching must match it; it would not if KV state of another adapter were reused.
    reference = type(llm)(
        model_path=llm.model_path, lora_path=str(gemma_adapter), n_ctx=512, seed=1234, verbose=False
    )
    try:
        assert greedy(reference) == tuned
    finally:
        reference.close()


@pytest.mark.slow
def test_mismatched_adapter_is_refused_and_model_keeps_working(llm: Any, tmp_path: Path) -> None:
    from engine.answer.adapters import AdapterSet

    base = greedy(llm, tokens=8)
    llama_base = write_base(tmp_path / "tiny-llama.gguf", "llama")
    adapter = tmp_path / "llama-lora.gguf"
    convert_peft(
        write_peft(tmp_path / "p", make_lora(tiny_shapes(), ["self_attn.q_proj"], 2)),
        adapter,
        llama_base,
    )
    adapters = AdapterSet(llm)
    with pytest.raises(UserError, match=r"llama-lora\.gguf does not fit model gemma-3-270m"):
        adapters.activate(adapter, 1.0)
    assert adapters.active is None
    assert greedy(llm, tokens=8) == base
    adapters.close()
