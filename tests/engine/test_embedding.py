"""The bundled embedder through fastembed: shape, meaning, and agreement with a reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.index.embedding import Embedder
from engine.types import UserError
from models.bundled import EMBEDDER_FILES, ensure_embedder

LONG = " ".join(f"FreedomBox runs service number {i} on a small home server." for i in range(60))


def reference_embed(folder: Path, texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 by hand: onnxruntime, mean pooling over the mask, L2 norm."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    hidden = session.run(None, feeds)[0]
    summed = (hidden * mask[..., None]).sum(axis=1)
    pooled = summed / mask.sum(axis=1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def test_vectors_are_float32_unit_length(embedder: Embedder):
    vectors = embedder.embed(["a short sentence", "another one, slightly longer than that"])
    assert vectors.shape == (2, 384) == (2, embedder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_query("a short sentence").shape == (384,)
    assert embedder.embed([]).shape == (0, 384)
    assert embedder.name == "all-MiniLM-L6-v2-int8"
    assert embedder.max_tokens == 256


def test_paraphrase_is_closer_than_unrelated_text(embedder: Embedder):
    query, paraphrase, unrelated = embedder.embed(
        [
            "How do I back up my server's data?",
            "Making a backup copy of the files stored on your server",
            "The recipe needs two eggs and a cup of flour.",
        ]
    )
    assert query @ paraphrase > 0.5
    assert query @ paraphrase > query @ unrelated + 0.3


def test_fastembed_matches_onnxruntime_reference(embedder: Embedder):
    texts = ["Tor hides where you browse from.", "Set a static IP address for the box.", LONG]
    ours = embedder.embed(texts)
    ref = reference_embed(embedder.folder, texts)
    cosines = (ours * ref).sum(axis=1)
    assert cosines.min() > 0.9999


def test_length_sorted_batches_keep_the_callers_order(embedder: Embedder):
    texts = [LONG, "tiny", "a sentence of medium length about Matrix chat", "x y"]
    small_batches = Embedder(embedder.folder, batch_size=2)
    batched = small_batches.embed(texts)
    one_by_one = np.stack([embedder.embed_query(t) for t in texts])
    assert (batched * one_by_one).sum(axis=1).min() > 0.9999


def test_count_tokens_includes_cls_and_sep_and_does_not_truncate(embedder: Embedder):
    assert embedder.count_tokens("hello world") == 4  # [CLS] hello world [SEP]
    assert embedder.count_tokens("") == 2
    long_count = embedder.count_tokens(LONG)
    assert long_count > 256  # counted in full, so the chunker can see it is too long
    assert embedder.count_tokens_batch(["hello world", LONG]) == [4, long_count]


def test_loading_writes_nothing_into_the_model_folder(tmp_path: Path):
    folder = ensure_embedder(tmp_path)
    Embedder(folder).embed(["one sentence"])
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([folder.name, *EMBEDDER_FILES])


def test_folder_without_model_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="not an embedding model folder"):
        Embedder(tmp_path)
