"""LoRA adapters: PEFT -> GGUF conversion, adapter metadata, and base-model compatibility.

A GGUF LoRA adapter, as llama.cpp loads it: `general.type=adapter`, `adapter.type=lora`,
`adapter.lora.alpha`, and for every adapted base tensor `<base name>.lora_a` (numpy shape
(r, n_in), so ggml ne [n_in, r]) and `<base name>.lora_b` (numpy (n_out, r), ne [r, n_out]).
llama.cpp scales each pair by `alpha / r` with r read from the tensor, and checks
`base.ne[0] == a.ne[0]`, `base.ne[1] == b.ne[1]`, `a.ne[1] == b.ne[0]`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from models.errors import UserError
from models.gguf_header import GGUFHeader, read_header

# Architectures (GGUF names) whose converted q/k rows differ from Hugging Face's order:
# llama.cpp's HF converter permutes them for its interleaved RoPE, so B must follow.
_ROPE_PERMUTED = {"llama"}
SUPPORTED_ARCHITECTURES = frozenset({"llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3"})

_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
_LORA_SUFFIXES = {".lora_A.weight": "a", ".lora_B.weight": "b"}
_PEFT_PREFIXES = ("base_model.model.",)
# Multimodal checkpoints (Gemma 3 4B+) nest the text model one level deeper.
_LANGUAGE_MODEL_PREFIXES = (("model.language_model.", "model."), ("language_model.", ""))


@dataclass(frozen=True)
class AdapterInfo:
    """What a GGUF LoRA adapter holds; `tensors` are the base tensors it changes."""

    path: Path
    architecture: str
    rank: int  # the largest rank over its tensors (PEFT rank patterns may vary it)
    alpha: float
    tensors: tuple[str, ...]
    base_model: str | None = None


@dataclass(frozen=True)
class _Base:
    """The parts of a base model GGUF that a conversion or check needs."""

    path: Path
    architecture: str
    n_layers: int
    n_head: int
    n_head_kv: int
    shapes: dict[str, tuple[int, ...]]  # tensor name -> ggml ne, e.g. (n_in, n_out)
    name: str | None


@dataclass
class _Pair:
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    module: str = ""  # PEFT module key, e.g. "model.layers.0.self_attn.q_proj"


def _read_base(path: Path) -> _Base:
    header = read_header(path, tensors=True)
    arch = header.fields.get("general.architecture")
    if header.fields.get("general.type") == "adapter":
        raise UserError(f"{path}: this is a LoRA adapter, not a base model")
    if not arch:
        raise UserError(f"{path}: GGUF has no general.architecture")
    n_head = header.fields.get(f"{arch}.attention.head_count")
    n_head_kv = header.fields.get(f"{arch}.attention.head_count_kv")
    return _Base(
        path=path,
        architecture=str(arch),
        n_layers=int(header.fields.get(f"{arch}.block_count") or 0),
        n_head=int(n_head) if isinstance(n_head, int) else 0,
        n_head_kv=int(n_head_kv) if isinstance(n_head_kv, int) else int(n_head or 0),
        shapes=header.shapes,
        name=header.fields.get("general.name"),
    )


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read f32/f16/bf16 tensors; bf16 (no numpy dtype) is widened to f32."""
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        size = int(raw[:8].view("<u8")[0])
        header = json.loads(bytes(raw[8 : 8 + size]))
    except (OSError, ValueError, IndexError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from exc
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a safetensors file (its header is {_json_type(header)})")
    out: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            out[name] = _read_tensor(raw, 8 + size, name, meta, path)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path}: tensor {name} is truncated or malformed ({exc!r})") from exc
    return out


def _read_tensor(raw: np.ndarray, data_start: int, name: str, meta: Any, path: Path) -> np.ndarray:
    """One tensor from a safetensors file; KeyError/TypeError/ValueError if malformed."""
    dtype = _SAFETENSORS_DTYPES.get(meta["dtype"])
    if dtype is None:
        raise UserError(f"{path}: tensor {name} has unsupported dtype {meta['dtype']}")
    start, end = (data_start + int(o) for o in meta["data_offsets"])
    if not data_start <= start <= end <= len(raw):
        raise ValueError(f"data offsets {meta['data_offsets']} lie outside the file")
    data = raw[start:end].view(np.dtype(dtype).newbyteorder("<")).reshape(meta["shape"])
    if meta["dtype"] == "BF16":  # bf16 is the top half of an f32
        data = (data.astype(np.uint32) << 16).view(np.float32)
    return np.array(data)


def rope_permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder output rows per head from HF's half-split RoPE to llama.cpp's interleaved one.

    Within each head, row `p * d/2 + j` moves to `2j + p` (d = head dim, p in {0, 1}).
    """
    n_out = rows.shape[0]
    if n_head <= 0 or n_out % (2 * n_head):
        raise ValueError(f"cannot split {n_out} rows into {n_head} RoPE heads")
    shaped = rows.reshape(n_head, 2, n_out // n_head // 2, *rows.shape[1:])
    return shaped.swapaxes(1, 2).reshape(rows.shape)


def _pattern_value(patterns: dict[str, Any], module: str, default: float) -> float:
    """PEFT's rank_pattern/alpha_pattern lookup: a key matches a module's name suffix."""
    for key, value in (patterns or {}).items():
        if key == module or re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return default


def _check_config(config: Any, config_path: Path) -> dict[str, Any]:
    """The config, checked: a JSON object with positive numbers for r and lora_alpha and
    objects of numbers for the rank/alpha patterns (UserError otherwise)."""
    if not isinstance(config, dict):
        raise UserError(f"{config_path}: expected a JSON object, found {_json_type(config)}")
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise UserError(f"{config_path}: peft_type {config.get('peft_type')} is not LoRA")
    if config.get("use_dora"):
        raise UserError(f"{config_path}: DoRA adapters are not supported by llama.cpp")
    if config.get("modules_to_save"):
        raise UserError(
            f"{config_path}: modules_to_save ({config['modules_to_save']}) stores full "
            "weights, which a GGUF LoRA adapter cannot carry"
        )
    for key in ("r", "lora_alpha"):
        if not _is_number(config.get(key)) or config[key] <= 0:
            raise UserError(f"{config_path}: {key} must be a positive number")
    for key in ("rank_pattern", "alpha_pattern"):
        patterns = config.get(key) or {}
        if not isinstance(patterns, dict) or not all(map(_is_number, patterns.values())):
            raise UserError(f"{config_path}: {key} must map module names to numbers")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UserError(f"{config_path}: {key}: bad pattern {pattern!r} ({exc})") from None
    return config


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _module_key(name: str, peft_file: Path) -> tuple[str, str]:
    """Split a PEFT tensor name into (module key, "a" | "b")."""
    for suffix, kind in _LORA_SUFFIXES.items():
        if name.endswith(suffix):
            key = name[: -len(suffix)]
            for prefix in _PEFT_PREFIXES:
                key = key.removeprefix(prefix)
            for old, new in _LANGUAGE_MODEL_PREFIXES:
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
            return key, kind
    if "lora_embedding" in name:
        what = "a LoRA on embed_tokens (not supported)"
    elif "lora_magnitude_vector" in name:
        what = "a DoRA magnitude (not supported)"
    else:
        what = "not a LoRA A/B weight (modules_to_save or a bias?)"
    raise UserError(f"{peft_file}: tensor {name} is {what}")


def _pairs(tensors: dict[str, np.ndarray], peft_file: Path) -> dict[str, _Pair]:
    pairs: dict[str, _Pair] = {}
    for name, data in tensors.items():
        key, kind = _module_key(name, peft_file)
        pair = pairs.setdefault(key, _Pair(module=key))
        setattr(pair, kind, data)
    for key, pair in pairs.items():
        if pair.a is None or pair.b is None:
            raise UserError(f"{peft_file}: {key} has only one of lora_A/lora_B")
    return pairs


def _base_name(module: str, base: _Base, names: gguf.TensorNameMap, peft_file: Path) -> str:
    if module.endswith(("embed_tokens", "lm_head")):
        raise UserError(f"{peft_file}: target module {module} is not supported (embeddings)")
    gguf_name = names.get_name(module + ".weight", try_suffixes=(".weight",))
    if gguf_name is None:
        raise UserError(
            f"{peft_file}: target module {module} is unknown for a {base.architecture} model"
        )
    if gguf_name not in base.shapes:
        raise UserError(f"{peft_file}: target {module} ({gguf_name}) is not in {base.path}")
    return str(gguf_name)


def _check_shapes(name: str, a: np.ndarray, b: np.ndarray, base: _Base, peft_file: Path) -> None:
    if len(base.shapes[name]) != 2:
        raise UserError(f"{peft_file}: {name} in {base.path} is not a matrix; cannot adapt it")
    n_in, n_out = base.shapes[name]
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
        raise UserError(f"{peft_file}: {name}: A {a.shape} and B {b.shape} do not pair up")
    if a.shape[1] != n_in or b.shape[0] != n_out:
        raise UserError(
            f"{peft_file}: {name}: adapter maps {a.shape[1]} -> {b.shape[0]} but {base.path} "
            f"has {n_in} -> {n_out}; the adapter is for another base model"
        )


def _convert_pair(
    pair: _Pair, name: str, base: _Base, config: dict[str, Any], alpha_gguf: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return GGUF (A, B) for one module: RoPE order for llama q/k, per-module scale folded in."""
    assert pair.a is not None and pair.b is not None
    a, b = pair.a, pair.b
    dtype = np.float16 if a.dtype == b.dtype == np.float16 else np.float32
    a, b = a.astype(dtype), b.astype(dtype)
    if base.architecture in _ROPE_PERMUTED and name.endswith(("attn_q.weight", "attn_k.weight")):
        heads = base.n_head if ".attn_q." in name else base.n_head_kv
        try:
            b = rope_permute(b, heads)
        except ValueError as exc:  # per-layer head counts, or none recorded
            raise UserError(f"{base.path}: {name}: {exc}") from exc
    # llama.cpp scales every pair by alpha_gguf / r_module; PEFT by alpha_m / r_m (or
    # alpha_m / sqrt(r_m) for rsLoRA). Fold any difference (rank/alpha patterns) into B.
    rank = a.shape[0]
    alpha_m = _pattern_value(config.get("alpha_pattern") or {}, pair.module, config["lora_alpha"])
    peft_scale = alpha_m / (math.sqrt(rank) if config.get("use_rslora") else rank)
    factor = peft_scale * rank / alpha_gguf
    if not math.isclose(factor, 1.0, rel_tol=1e-6):
        b = (b.astype(np.float32) * factor).astype(dtype)
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def gguf_alpha(config: dict[str, Any]) -> float:
    """The `adapter.lora.alpha` that reproduces PEFT's scale: alpha, or alpha*sqrt(r) for rsLoRA."""
    alpha = float(config["lora_alpha"])
    return alpha * math.sqrt(int(config["r"])) if config.get("use_rslora") else alpha


def convert_peft(peft_dir: Path, out_path: Path, base: Path) -> AdapterInfo:
    """Convert a PEFT LoRA folder into a GGUF adapter for the base model GGUF `base`."""
    peft_dir, out_path, base = Path(peft_dir), Path(out_path), Path(base)
    config_path = peft_dir / "adapter_config.json"
    weights_path = peft_dir / "adapter_model.safetensors"
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise UserError(f"{needed}: not found (a PEFT adapter folder needs it)")
    try:
        config = _check_config(json.loads(config_path.read_text(encoding="utf-8")), config_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{config_path}: not readable JSON ({exc})") from exc
    model = _read_base(base)
    if model.architecture not in SUPPORTED_ARCHITECTURES:
        raise UserError(
            f"{base}: architecture {model.architecture} is not supported for LoRA conversion "
            f"(supported: {', '.join(sorted(SUPPORTED_ARCHITECTURES))})"
        )
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[model.architecture.upper()], model.n_layers)
    alpha = gguf_alpha(config)
    tensors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for pair in _pairs(read_safetensors(weights_path), weights_path).values():
        name = _base_name(pair.module, model, names, weights_path)
        assert pair.a is not None and pair.b is not None
        _check_shapes(name, pair.a, pair.b, model, weights_path)
        tensors[name] = _convert_pair(pair, name, model, config, alpha)
    if not tensors:
        raise UserError(f"{weights_path}: holds no LoRA tensors")
    base_name = config.get("base_model_name_or_path") or model.name
    _write_adapter(out_path, model.architecture, alpha, tensors, base_name)
    return read_adapter(out_path)


def _write_adapter(
    out_path: Path,
    arch: str,
    alpha: float,
    tensors: dict[str, tuple[np.ndarray, np.ndarray]],
    base_name: str | None,
) -> None:
    """Write the GGUF to a temporary file beside `out_path`, then rename it into place."""
    try:
        _write_adapter_file(out_path, arch, alpha, tensors, base_name)
    except OSError as exc:
        raise UserError(f"{out_path}: cannot write the adapter ({exc.strerror or exc})") from exc


def _write_adapter_file(
    out_path: Path,
    arch: str,
    alpha: float,
    tensors: dict[str, tuple[np.ndarray, np.ndarray]],
    base_name: str | None,
) -> None:
    if out_path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "it is a folder; give a file name", str(out_path))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(out_path.stem)
        if base_name:
            writer.add_base_model_count(1)
            writer.add_base_model_name(0, str(base_name))
        for name, (a, b) in tensors.items():
            writer.add_tensor(f"{name}.lora_a", a)
            writer.add_tensor(f"{name}.lora_b", b)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _lora_tensors(header: GGUFHeader) -> Iterator[tuple[str, str, tuple[int, ...]]]:
    """(base name, "a" | "b", ggml ne) for every LoRA tensor in an adapter."""
    for name, ne in header.shapes.items():
        for kind in ("a", "b"):
            if name.endswith(f".lora_{kind}"):
                yield name[: -len(f".lora_{kind}")], kind, ne


def _adapter_shapes(path: Path) -> tuple[AdapterInfo, dict[str, dict[str, tuple[int, ...]]]]:
    header = read_header(path, tensors=True)
    fields = header.fields
    if fields.get("general.type") != "adapter" or fields.get("adapter.type") != "lora":
        raise UserError(f"{path.name} is a model, not a LoRA adapter")
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for base, kind, ne in _lora_tensors(header):
        shapes.setdefault(base, {})[kind] = ne
    incomplete = [name for name, pair in shapes.items() if len(pair) != 2]
    if incomplete or not shapes:
        raise UserError(f"{path}: LoRA tensors missing or unpaired: {incomplete[:3]}")
    alpha = fields.get(gguf.Keys.Adapter.LORA_ALPHA)
    info = AdapterInfo(
        path=path,
        architecture=str(fields.get("general.architecture")),
        rank=max(pair["a"][1] for pair in shapes.values()),  # a is ne [n_in, r]
        alpha=float(alpha) if alpha is not None else 0.0,
        tensors=tuple(shapes),
        base_model=fields.get(gguf.Keys.General.BASE_MODEL_NAME.format(id=0)),
    )
    return info, shapes


def read_adapter(path: Path) -> AdapterInfo:
    """Read a GGUF LoRA adapter's metadata; UserError if it is not one."""
    return _adapter_shapes(Path(path))[0]


def check_compatible(adapter: Path, base: Path) -> AdapterInfo:
    """UserError unless every tensor of `adapter` fits `base` (architecture and shapes)."""
    adapter, base = Path(adapter), Path(base)
    info, shapes = _adapter_shapes(adapter)
    model = _read_base(base)
    where = f"adapter {adapter.name} does not fit model {base.name}"
    if info.architecture != model.architecture:
        raise UserError(
            f"{where}: adapter is for {info.architecture}, model is {model.architecture}"
        )
    for name, pair in shapes.items():
        ne = model.shapes.get(name)
        if ne is None:
            raise UserError(f"{where}: the model has no tensor {name}")
        a, b = pair["a"], pair["b"]
        if a[0] != ne[0] or b[1] != ne[1] or a[1] != b[0]:
            raise UserError(
                f"{where}: {name} is {ne[0]} -> {ne[1]} in the model, "
                f"{a[0]} -> {b[1]} (rank {a[1]}/{b[0]}) in the adapter"
            )
    return info
