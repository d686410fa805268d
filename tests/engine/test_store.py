"""engine.index.store: a real SQLite file in tmp_path with real sqlite-vec and FTS5."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.index.fts import fts_query
from engine.index.schema import m001_initial, migrations
from engine.index.sqlite import connect, migrate, user_version
from engine.index.store import Store
from engine.types import Chunk, UserError
from tests.conftest import REPO

DIM = 16


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _chunks(*texts: str) -> list[Chunk]:
    return [Chunk(text=t, page=i + 1, section=None, ordinal=i) for i, t in enumerate(texts)]


def _put(
    store: Store, path: Path, texts: list[str], vectors: np.ndarray, collection: str = "default"
) -> None:
    store.replace_document(
        collection,
        path,
        path.name,
        path.stem,
        f"hash-{texts[0]}",
        10,
        1.0,
        len(texts),
        _chunks(*texts),
        vectors,
    )


@pytest.fixture(params=["float", "binary", "float-vec0", "binary-vec0"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    """Vector search from the in-memory matrix, and from vec0 in each quantization."""
    quantization, _, vec0 = str(request.param).partition("-")
    s = Store(
        tmp_path / "index.sqlite3",
        model="test-model",
        dim=DIM,
        quantization=quantization,
        memory_index=not vec0,
    )
    yield s
    s.close()


def test_migrations_are_idempotent_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    with Store(path, model="m", dim=DIM) as first:
        _put(first, tmp_path / "a.txt", ["alpha"], _unit(np.random.default_rng(0), 1))
        version = first.schema_version
    with Store(path, model="m", dim=DIM) as again:
        assert again.schema_version == version >= 1
        assert [d.name for d in again.documents()] == ["a.txt"]
        assert [c.name for c in again.collections()] == ["default"]


def _schema(path: Path) -> list[tuple[str, str, str, str]]:
    conn = connect(path, readonly=True)
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
    schema = rows.fetchall()
    conn.close()
    return schema


def _meta(store: Store) -> dict[str, str]:
    return dict(store.conn.execute("SELECT key, value FROM meta").fetchall())


LATEST = len(migrations("m", DIM, "float"))


def _build(path: Path, version: int | str) -> None:
    """An index at an old version: the first `version` steps, or "meta-1", the only version
    Quire wrote before PRAGMA user_version counted steps (m001, then meta's schema_version)."""
    conn = connect(path)
    if version == "meta-1":
        conn.execute("BEGIN IMMEDIATE")
        m001_initial(conn, model="m", dim=DIM, quantization="float")
        conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
        conn.execute("COMMIT")
    else:
        migrate(conn, migrations("m", DIM, "float")[: int(version)])
    conn.close()


@pytest.mark.parametrize("version", ["meta-1", *range(LATEST)])
def test_an_index_at_every_old_version_upgrades_to_a_fresh_ones_schema(
    tmp_path: Path, version: int | str
) -> None:
    Store(tmp_path / "fresh.sqlite3", model="m", dim=DIM).close()
    old = tmp_path / "old.sqlite3"
    _build(old, version)
    with Store(old, model="m", dim=DIM) as store:  # re-running m001: "table meta already exists"
        _put(store, tmp_path / "a.txt", ["alpha"], _unit(np.random.default_rng(0), 1))
        assert store.schema_version == LATEST
        assert _meta(store) == {
            "embedding_model": "m",
            "embedding_dim": str(DIM),
            "quantization": "float",
        }
        assert store.keyword_search("alpha", 1) and store.vector_search(np.ones(DIM), 1)
    assert _schema(old) == _schema(tmp_path / "fresh.sqlite3")


def test_index_migrations_need_only_a_bare_connection(tmp_path: Path) -> None:
    """The steps never call Store, so an old step reads the same whatever Store becomes."""
    path = tmp_path / "index.sqlite3"
    conn = connect(path)
    migrate(conn, migrations("bare-model", DIM, "binary"))
    assert user_version(conn) == len(migrations("bare-model", DIM, "binary"))
    conn.close()
    with Store(path) as store:  # takes the model, dimension and quantization m001 recorded
        assert (store.model, store.dim, store.quantization) == ("bare-model", DIM, "binary")
        _put(store, tmp_path / "a.txt", ["alpha"], _unit(np.random.default_rng(0), 1))
        assert [d.name for d in store.documents()] == ["a.txt"]


def test_index_schema_does_not_import_store() -> None:
    code = "import sys, engine.index.schema; sys.exit('engine.index.store' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_an_index_from_a_newer_quire_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    Store(path, model="m", dim=DIM).close()
    conn = connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(UserError, match=r"index\.sqlite3 was written by a newer Quire"):
        Store(path, model="m", dim=DIM)


def test_dimension_mismatch_names_the_model(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    Store(path, model="mini-384", dim=DIM).close()
    with pytest.raises(
        UserError, match=r"index .* was built with mini-384.*re-index or pick that model"
    ):
        Store(path, model="big-768", dim=DIM * 2)


def test_replace_document_swaps_versions(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "doc.txt"
    _put(store, path, ["old walrus text", "old second"], _unit(rng, 2))
    _put(store, path, ["new penguin text"], _unit(rng, 1))
    assert store.keyword_search("walrus", 5) == []
    hits = store.keyword_search("penguin", 5)
    assert [r.text for r in store.fetch([i for i, _ in hits])] == ["new penguin text"]
    record = store.document("default", path)
    assert record is not None and record.chunks == 1 and record.hash == "hash-new penguin text"
    assert store.stats().chunks == 1
    assert len(store.vector_search(_unit(rng, 1)[0], 10)) == 1


def _assert_old_version_intact(store: Store, path: Path, vectors: np.ndarray) -> None:
    record = store.document("default", path)
    assert record is not None and record.hash == "hash-old walrus text" and record.chunks == 2
    hits = store.keyword_search("walrus", 5)
    assert len(hits) == 1
    assert store.vector_search(vectors[1], 1)[0][1] == pytest.approx(0.0, abs=1e-5)
    assert store.keyword_search("penguin", 5) == []
    assert store.stats().chunks == 2


def test_replace_document_is_atomic_when_a_write_fails(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "doc.txt"
    old = _unit(rng, 2)
    _put(store, path, ["old walrus text", "old second"], old)

    def crash(*args: object) -> None:  # after old rows are deleted and new chunks + FTS written
        raise OSError("disk full")

    monkeypatch.setattr(store, "_insert_vectors", crash)
    with pytest.raises(OSError, match="disk full"):
        _put(store, path, ["new penguin text"], _unit(rng, 1))
    _assert_old_version_intact(store, path, old)


def test_replace_document_rejects_wrong_vector_count(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "doc.txt"
    old = _unit(rng, 2)
    _put(store, path, ["old walrus text", "old second"], old)
    with pytest.raises(ValueError, match="shape"):
        _put(store, path, ["new penguin text", "two"], _unit(rng, 3))
    _assert_old_version_intact(store, path, old)


def test_record_failure_keeps_the_good_version(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    good, bad = tmp_path / "good.pdf", tmp_path / "bad.pdf"
    _put(store, good, ["zebra facts"], _unit(rng, 1))
    store.record_failure("default", good, "PDF is encrypted")
    store.record_failure("default", bad, "not a PDF")
    assert len(store.keyword_search("zebra", 5)) == 1
    docs = {Path(d.path).name: d for d in store.documents()}
    assert docs["good.pdf"].hash and docs["good.pdf"].chunks == 1
    assert docs["good.pdf"].error == "PDF is encrypted"
    assert docs["bad.pdf"].hash is None and docs["bad.pdf"].error == "not a PDF"
    assert store.stats().failed == 2 and store.stats().documents == 1
    _put(store, good, ["zebra facts again"], _unit(rng, 1))
    assert store.document("default", good).error is None  # type: ignore[union-attr]


def test_collections_filter_vector_and_keyword_search(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    vecs = _unit(rng, 2)
    store.create_collection("work")
    _put(store, tmp_path / "home.txt", ["shared word kiwi"], vecs[:1])
    _put(store, tmp_path / "work.txt", ["shared word mango"], vecs[1:], collection="work")

    def names(ids: list[tuple[int, float]]) -> list[str]:
        return [r.document for r in store.fetch([i for i, _ in ids])]

    assert names(store.keyword_search("shared", 5, collection="work")) == ["work.txt"]
    assert sorted(names(store.keyword_search("shared", 5))) == ["home.txt", "work.txt"]
    assert names(store.vector_search(vecs[0], 5, collection="work")) == ["work.txt"]
    assert names(store.vector_search(vecs[0], 5, collection="default")) == ["home.txt"]
    assert store.fetch([store.keyword_search("mango", 1)[0][0]])[0].collection == "work"
    with pytest.raises(UserError, match="no collection"):
        store.vector_search(vecs[0], 5, collection="nope")


def test_collection_crud(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    store.create_collection("papers")
    with pytest.raises(UserError, match="already exists"):
        store.create_collection("papers")
    _put(store, tmp_path / "p.txt", ["quokka", "two"], _unit(rng, 2), collection="papers")
    store.rename_collection("papers", "reading")
    counts = {c.name: (c.documents, c.chunks) for c in store.collections()}
    assert counts == {"default": (0, 0), "reading": (1, 2)}
    assert store.paths("reading") == [str((tmp_path / "p.txt").resolve())]
    store.delete_collection("reading")
    assert [c.name for c in store.collections()] == ["default"]
    assert store.keyword_search("quokka", 5) == []
    assert store.vector_search(_unit(rng, 1)[0], 5) == []
    assert store.stats().chunks == 0


def test_remove_document(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    path = tmp_path / "gone.txt"
    _put(store, path, ["ocelot"], _unit(rng, 1))
    assert store.remove_document("default", path)
    assert not store.remove_document("default", path)
    assert store.keyword_search("ocelot", 5) == [] and store.documents() == []
    assert store.vector_search(_unit(rng, 1)[0], 5) == []


@pytest.mark.parametrize(
    "text",
    [
        '"foo AND (',
        "NEAR(foo bar)",
        "foo*",
        "-foo",
        "col:foo",
        "^foo",
        "'; DROP TABLE",
        "(((",
        '"',
        "",
    ],
)
def test_keyword_search_never_raises_on_hostile_input(
    store: Store, tmp_path: Path, text: str
) -> None:
    _put(store, tmp_path / "a.txt", ["foo bar baz"], _unit(np.random.default_rng(8), 1))
    hits = store.keyword_search(text, 5)
    assert hits == [] or len(hits) == 1


def test_fts_query_quotes_terms_and_drops_stopwords() -> None:
    assert fts_query('"foo AND (') == '"foo"'
    assert fts_query("What is the ERR_0x7f3a code?") == '"err_0x7f3a" OR "code"'
    assert fts_query("the of and") == ""
    assert fts_query("sqlite-vec sqlite-vec") == '"sqlite-vec"'


def test_keyword_search_ranks_and_matches_stems(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    _put(store, tmp_path / "a.txt", ["running shoes for marathons", "cooking pasta"], _unit(rng, 2))
    hits = store.keyword_search("marathon runs", 5)
    assert [r.text for r in store.fetch([i for i, _ in hits])] == ["running shoes for marathons"]
    assert store.keyword_search("ERR_0x7f3a", 5) == []


def _recall_at_10(store: Store, queries: np.ndarray, data: np.ndarray, ids: list[int]) -> float:
    found = 0
    for q in queries:
        truth = {ids[n] for n in np.argsort(-(data @ q))[:10]}
        found += len(truth & {i for i, _ in store.vector_search(q, 10)})
    return found / (10 * len(queries))


def test_binary_quantized_search_recall_is_close_to_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    centers = _unit(rng, 20, 384)
    data = (
        centers[rng.integers(0, 20, 2000)]
        + rng.standard_normal((2000, 384)).astype(np.float32) * 0.06
    )
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    with Store(tmp_path / "i.sqlite3", dim=384, quantization="float") as store:
        _put(store, tmp_path / "a.txt", [f"c{i}" for i in range(2000)], data)
        ids = [
            i
            for i, _ in sorted(
                store.conn.execute("SELECT id, ordinal FROM chunks"), key=lambda r: r[1]
            )
        ]
        queries = (
            data[rng.integers(0, 2000, 20)]
            + rng.standard_normal((20, 384)).astype(np.float32) * 0.03
        )
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = _recall_at_10(store, queries, data, ids)
        store.set_quantization("binary")
        binary = _recall_at_10(store, queries, data, ids)
        # distances after rescoring are exact cosine, same scale as float KNN
        q = queries[0]
        ((top, dist),) = store.vector_search(q, 1)
        assert dist == pytest.approx(1 - float(store.vectors([top])[0] @ q), abs=1e-5)
    assert exact >= 0.99
    assert binary >= 0.9


def test_touch_document_updates_size_and_mtime_only(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "same.txt"
    _put(store, path, ["unchanged words"], _unit(np.random.default_rng(11), 1))
    store.touch_document("default", path, 99, 123.5)
    record = store.document("default", path)
    assert record is not None and (record.size, record.mtime, record.chunks) == (99, 123.5, 1)
    assert record.hash == "hash-unchanged words"


def test_memory_index_matches_vec0_and_follows_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    path = tmp_path / "index.sqlite3"
    vectors = _unit(rng, 40)
    with Store(path, model="m", dim=DIM) as store:
        for n in range(4):
            _put(
                store,
                tmp_path / f"d{n}.txt",
                [f"t{n}-{i}" for i in range(10)],
                vectors[n * 10 :][:10],
            )
        query = _unit(rng, 1)[0]
        memory = store.vector_search(query, 5)
        store.memory_index = False
        vec0 = store.vector_search(query, 5)
        store.memory_index = True
        assert [i for i, _ in memory] == [i for i, _ in vec0]
        assert np.allclose([d for _, d in memory], [d for _, d in vec0], atol=1e-5)
        nearest = store.fetch([memory[0][0]])[0].path
        store.remove_document("default", nearest)  # our own write: applied, not re-read
        assert store.index.loaded
        assert store.fetch([store.vector_search(query, 1)[0][0]])[0].path != nearest
        with Store(path) as other:  # another connection's write (PRAGMA data_version)
            _put(other, tmp_path / "new.txt", ["fresh"], query[None, :])
        ((top, distance),) = store.vector_search(query, 1)
        assert store.fetch([top])[0].document == "new.txt"
        assert distance == pytest.approx(0.0, abs=1e-5)


def test_keyword_search_drops_common_terms_past_the_row_cap(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(3)
    texts = [f"common filler number {i}" for i in range(8)] + ["common aardvark sighting"]
    _put(store, tmp_path / "many.txt", texts, _unit(rng, len(texts)))
    assert len(store.keyword_search("common aardvark", 20)) == 9  # under the cap: plain OR
    monkeypatch.setattr("engine.index.store.KEYWORD_ROWS", 3)
    hits = store.keyword_search("common aardvark", 20)
    assert [store.fetch([i])[0].text for i, _ in hits] == ["common aardvark sighting"]
    assert len(store.keyword_search("common", 20)) == 9  # the rarest term always stays


def test_a_damaged_page_is_found_when_the_index_opens(tmp_path: Path) -> None:
    """Issue 22: a garbled page of vectors passed every command that did not search."""
    from tests.e2e.test_faults import garble_table

    index = tmp_path / "damaged.sqlite3"
    with Store(index, model="test-model", dim=DIM) as store:
        _put(store, tmp_path / "a.txt", ["alpha"], _unit(np.random.default_rng(0), 1))
    garble_table(index, "embeddings")
    with pytest.raises(UserError, match=f"^{index}: the index is damaged; move it aside"):
        Store(index)
