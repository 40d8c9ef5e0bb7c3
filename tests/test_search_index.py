"""FAISS index: exact equals brute force, approximate recall floors, and refusals of mismatches."""

import json

import numpy as np
import pyarrow as pa
import pytest

from seisbind.search.faiss_index import IVF_TRAIN_POINTS_PER_LIST, EmbeddingIndex, choose_kind, factory_string, ivf_nlist, training_rows


def clustered_unit_vectors(n, d=64, seed=0, clusters=50):
    """Unit vectors around 50 fixed centres (queries and collection share them, as in real use)."""
    centres = np.random.default_rng(1234).normal(size=(clusters, d))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def meta(n):
    return pa.table({"id": [f"item-{i}" for i in range(n)], "geology_id": np.arange(n)})


def test_exact_index_returns_numpy_brute_force_neighbours():
    x = clustered_unit_vectors(2000)
    q = clustered_unit_vectors(50, seed=1)
    idx = EmbeddingIndex.build(x, meta(2000), "hash-a", kind="flat")
    scores, rows = idx.search(q, 10)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    np.testing.assert_array_equal(rows, truth)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, truth, 1), rtol=1e-5)


# IVF-PQ keeps 8-byte codes of these 64-d vectors and does not re-rank: a compressed index.
@pytest.mark.parametrize("kind, floor", [("hnsw", 0.95), ("ivfpq", 0.4)])
def test_approximate_recall_at_10_against_exact(kind, floor):
    x = clustered_unit_vectors(3000)
    q = clustered_unit_vectors(200, seed=2)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    _, rows = EmbeddingIndex.build(x, meta(3000), "h", kind=kind).search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)])
    assert recall >= floor, recall


def test_save_load_round_trip_and_refusals(tmp_path):
    x = clustered_unit_vectors(300)
    idx = EmbeddingIndex.build(x, meta(300), "hash-a", kind="hnsw")
    idx.save(tmp_path / "ix")
    back = EmbeddingIndex.load(tmp_path / "ix")
    np.testing.assert_array_equal(back.search(x[:5], 3)[1], idx.search(x[:5], 3)[1])
    assert back.metadata.column("id")[0].as_py() == "item-0"
    with pytest.raises(ValueError, match="another model"):
        back.search(x[:1], 3, model_config_sha256="hash-b")
    with pytest.raises(ValueError, match="dimension"):
        back.search(x[:1, :32], 3)
    with pytest.raises(ValueError, match="L2-normalised"):
        back.search(2 * x[:1], 3)
    # metadata that no longer matches its vectors is refused
    import pyarrow.parquet as pq

    pq.write_table(meta(299), str(tmp_path / "ix" / "metadata.parquet"))
    with pytest.raises(ValueError, match="does not match"):
        EmbeddingIndex.load(tmp_path / "ix")
    info = json.loads((tmp_path / "ix" / "index.json").read_text())
    info["metadata_sha256"] = __import__("hashlib").sha256((tmp_path / "ix" / "metadata.parquet").read_bytes()).hexdigest()
    (tmp_path / "ix" / "index.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="299 rows"):
        EmbeddingIndex.load(tmp_path / "ix")
    (tmp_path / "ix" / "index.faiss").unlink()
    with pytest.raises(FileNotFoundError, match="index.faiss"):
        EmbeddingIndex.load(tmp_path / "ix")


def test_an_index_refuses_swapped_vectors_and_other_weights(tmp_path):
    """Vectors swapped for another index's of the same size and layout are refused by their hash;
    a query by other weights of the same architecture is refused unless allowed."""
    x, y = clustered_unit_vectors(300, seed=1), clustered_unit_vectors(300, seed=2)
    EmbeddingIndex.build(x, meta(300), "cfg", kind="flat", model_weights_sha256="weights-a").save(tmp_path / "a")
    EmbeddingIndex.build(y, meta(300), "cfg", kind="flat", model_weights_sha256="weights-a").save(tmp_path / "b")
    good = EmbeddingIndex.load(tmp_path / "a")
    (tmp_path / "a" / "index.faiss").write_bytes((tmp_path / "b" / "index.faiss").read_bytes())
    with pytest.raises(ValueError, match=r"index.faiss does not match the one the index was built with"):
        EmbeddingIndex.load(tmp_path / "a")
    with pytest.raises(ValueError, match=r"weights hash weights-b.*same architecture, other weights"):
        good.search(x[:1], 3, model_config_sha256="cfg", model_weights_sha256="weights-b")
    scores, rows = good.search(x[:1], 3, model_config_sha256="cfg", model_weights_sha256="weights-b",
                               allow_other_weights=True)
    assert rows[0, 0] == 0
    assert good.search(x[:1], 3, model_config_sha256="cfg", model_weights_sha256="weights-a")[1][0, 0] == 0


def test_build_refuses_bad_input():
    x = clustered_unit_vectors(10)
    with pytest.raises(ValueError, match="metadata rows"):
        EmbeddingIndex.build(x, meta(9), "h")
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        EmbeddingIndex.build(bad, meta(10), "h")


def test_kind_choice_by_size():
    assert [choose_kind(n) for n in (1000, 1_000_000, 10_000_000)] == ["flat", "hnsw", "ivfpq"]
    assert factory_string("ivfpq", 1_000_000, 512) == "IVF4000,PQ64x8np"
    assert factory_string("ivfpq", 10_000, 64) == "IVF400,PQ8x8np"


def test_ivf_trains_on_a_seeded_sample_of_64_vectors_per_list():
    x = np.arange(200_000, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    assert training_rows(x, "hnsw") is x and training_rows(x[:1000], "ivfpq").shape[0] == 1000
    sample = training_rows(x, "ivfpq")
    assert len(sample) == IVF_TRAIN_POINTS_PER_LIST * ivf_nlist(200_000) == 64 * 1788
    rows = sample[:, 0].astype(int)
    assert len(np.unique(rows)) == len(rows) and np.all(np.diff(rows) > 0)  # distinct rows, in order
    np.testing.assert_array_equal(sample, training_rows(x, "ivfpq"))  # same seed, same sample


def test_ivfpq_on_a_handful_of_vectors_is_a_clear_error():
    with pytest.raises(ValueError, match=r"ivfpq index needs at least 256 vectors .* got 4: use --kind flat"):
        EmbeddingIndex.build(clustered_unit_vectors(4), meta(4), "cfg", kind="ivfpq")


def test_nearest_drops_the_rows_faiss_pads_with_when_it_finds_fewer_than_k():
    """An IVF search that probes one list finds fewer than k vectors and FAISS pads with row -1;
    the CLI's query and the app both search through nearest(), which returns the real rows only."""
    import faiss

    x = clustered_unit_vectors(2000)
    idx = EmbeddingIndex.build(x, meta(2000), "hash-a", kind="flat")
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], 50, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    ivf.add(x)
    ivf.nprobe = 1  # one list of about 40 vectors
    idx.index = ivf
    padded = idx.search(x[:1], 200)[1][0]
    assert (padded == -1).any()  # what the raw search gives
    scores, rows = idx.nearest(x[0], 200)
    assert len(rows) == (padded >= 0).sum() and (rows >= 0).all() and rows[0] == 0
    assert np.all(np.diff(scores) <= 1e-6)
    assert idx.metadata.take(rows).num_rows == len(rows)
    with pytest.raises(ValueError, match="one query"):
        idx.nearest(x[:2], 3)
