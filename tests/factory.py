"""Small real documents made on the fly for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: Path, pages: list[list[str]]) -> Path:
    """Write a real PDF with one Helvetica text line per list item (an empty list: blank page)."""
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    objects[3] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    kids = []
    for i, lines in enumerate(pages):
        page_id, content_id = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page_id} 0 R")
        ops = "".join(f"({_escape(line)}) Tj T* " for line in lines)
        stream = f"BT /F1 10 Tf 14 TL 56 780 Td {ops}ET".encode("latin-1")
        objects[content_id] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {content_id} 0 R"
            " /Resources << /Font << /F1 3 0 R >> >> >>"
        ).encode()
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode()
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in sorted(objects))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def write_scanned_pdf(path: Path, pages: list[list[str]], dpi: int = 150) -> Path:
    """A PDF of page images and no text layer, as a scanner writes: `write_pdf`'s pages
    rendered by PDFium and saved as images by Pillow."""
    import pypdfium2

    text = write_pdf(path.with_name(f"{path.stem}-text.pdf"), pages)
    doc = pypdfium2.PdfDocument(text)
    try:
        images = [doc[i].render(scale=dpi / 72, grayscale=True).to_pil() for i in range(len(doc))]
    finally:
        doc.close()
    text.unlink()
    images[0].save(path, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return path


PREFIX = "base_model.model.model.layers"
# PEFT module -> GGUF base tensor, per layer.
MODULES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def make_lora(
    shapes: dict[str, tuple],
    modules: list[str],
    layers: int,
    r: int = 8,
    std: float = 0.1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded random PEFT tensors: A (r, n_in), B (n_out, r) for every module and layer."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer in range(layers):
        for module in modules:
            n_in, n_out = shapes[MODULES[module]]
            key = f"{PREFIX}.{layer}.{module}"
            out[f"{key}.lora_A.weight"] = (rng.standard_normal((r, n_in)) * std).astype(np.float32)
            out[f"{key}.lora_B.weight"] = (rng.standard_normal((n_out, r)) * std).astype(np.float32)
    return out


def write_peft(folder: Path, tensors: dict[str, np.ndarray], **config: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}
    (folder / "adapter_config.json").write_text(json.dumps(settings | config))
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def write_gemma_peft(folder: Path, llm_path: Path, seed: int = 7) -> Path:
    """A real PEFT LoRA folder (random, seeded) for the bundled Gemma 3 270M on q, v and o."""
    from models.lora import _read_base  # the fast header reader: layer count, shapes

    base = _read_base(llm_path)
    shapes = {n.split(".")[2]: s[:2] for n, s in base.shapes.items() if n.startswith("blk.0.")}
    modules = ["self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj"]
    lora = make_lora(shapes, modules, layers=base.n_layers, std=0.05, seed=seed)
    return write_peft(
        folder,
        lora,
        target_modules=["q_proj", "v_proj", "o_proj"],
        base_model_name_or_path="google/gemma-3-270m",
    )


def with_chat_template(src: Path, dst: Path, template: str) -> Path:
    """Copy a GGUF model adding `tokenizer.chat_template`; tensor data is copied verbatim."""
    import mmap
    import struct

    from models.gguf_header import _Cursor

    with src.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        cur = _Cursor(data)
        cur.pos = 8
        n_tensors, n_kv = cur.scalar("Q"), cur.scalar("Q")
        kv_start = cur.pos
        alignment = 32
        for _ in range(n_kv):
            key = cur.string()
            value = cur.value(cur.scalar("I"))
            if key == "general.alignment":
                alignment = int(value)
        kv_end = cur.pos
        for _ in range(n_tensors):
            cur.string()
            n_dims = cur.scalar("I")
            cur.pos += 8 * n_dims + 12  # dims, ggml type, data offset
        infos_end = cur.pos
        data_start = -(-infos_end // alignment) * alignment
        key_bytes, text = b"tokenizer.chat_template", template.encode("utf-8")
        extra = struct.pack("<Q", len(key_bytes)) + key_bytes + struct.pack("<IQ", 8, len(text))
        header = bytes(data[:8]) + struct.pack("<QQ", n_tensors, n_kv + 1)
        head = header + data[kv_start:kv_end] + extra + text + data[kv_end:infos_end]
        with dst.open("wb") as out:
            out.write(head + b"\0" * (-len(head) % alignment))
            out.write(data[data_start:])
    return dst
