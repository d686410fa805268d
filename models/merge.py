"""Fold a GGUF LoRA adapter into a copy of its base model, so that it costs nothing per token.

llama.cpp applies a runtime adapter as two extra small matrix products beside every
adapted weight; on a model as small as Gemma 3 270M that overhead costs about a fifth of
its tokens/s (38.3 against 47.4 merged, docs/benchmarks.md). A merged copy runs at the
base model's speed: every adapted weight becomes `W + scale * alpha / r * B @ A`, computed
in float32 from the dequantized base weight (the weights the adapter was trained against)
and stored as Q8_0, the finest type llama.cpp quantizes into in blocks of 32 (640-wide
Gemma rows rule out the 256-wide K-quants). Every other tensor and every metadata key is
copied byte for byte.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np

from models.lora import check_compatible

MERGED_TYPE = gguf.GGMLQuantizationType.Q8_0
MERGE_VERSION = 1  # bump when what merge_lora writes changes: merged copies are rebuilt
#: Called with (tensors done, tensors total) while a merge runs.
Progress = Callable[[int, int], None]


def merge_lora(
    base: Path, adapter: Path, out: Path, scale: float = 1.0, progress: Progress | None = None
) -> None:
    """Write `base` with `adapter` folded in at `scale` to `out` (atomically: a temp file
    beside it, renamed into place, so a crash leaves no half-written model)."""
    alpha = check_compatible(adapter, base).alpha  # UserError unless every pair fits
    base_gguf = gguf.GGUFReader(base)
    pairs = _pairs(gguf.GGUFReader(adapter))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, str(base_gguf.fields["general.architecture"].contents()))
        _copy_metadata(base_gguf, writer)
        total = len(base_gguf.tensors)
        for done, tensor in enumerate(base_gguf.tensors, 1):
            if tensor.name in pairs:
                a, b = pairs[tensor.name]
                # llama.cpp: scale * alpha / r, or the scale alone when alpha is 0 (unset)
                factor = scale * alpha / a.shape[0] if alpha else scale
                merged = _merged(tensor, a, b, factor)
                writer.add_tensor(tensor.name, merged, raw_dtype=MERGED_TYPE)
            else:
                writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
            if progress is not None:
                progress(done, total)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())  # on disk before the rename makes it the merged model
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pairs(lora: gguf.GGUFReader) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{base tensor name: (A (r, n_in), B (n_out, r))} in float32."""
    parts: dict[str, dict[str, np.ndarray]] = {}
    for tensor in lora.tensors:
        name, _, kind = tensor.name.rpartition(".")
        if kind not in ("lora_a", "lora_b"):
            continue
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)  # F16, F32, ...
        parts.setdefault(name, {})[kind] = np.asarray(values, dtype=np.float32)
    return {name: (p["lora_a"], p["lora_b"]) for name, p in parts.items()}


def _merged(tensor: gguf.ReaderTensor, a: np.ndarray, b: np.ndarray, factor: float) -> np.ndarray:
    """The base weight plus factor * B @ A, quantized to MERGED_TYPE."""
    weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    weight = weight.reshape(b.shape[0], a.shape[1]) + factor * (b @ a)
    return gguf.quants.quantize(weight.astype(np.float32), MERGED_TYPE)


def _copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter) -> None:
    """Every key of the base model but the ones the writer sets itself."""
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        kind = field.types[0]
        sub = field.types[1] if kind == gguf.GGUFValueType.ARRAY and len(field.types) > 1 else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
