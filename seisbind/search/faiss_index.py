"""A FAISS index over L2-normalised embeddings, saved with its id-to-metadata table.

Inner product on unit vectors is cosine similarity. Kinds (FAISS index-factory strings):

* ``flat`` (``"Flat"``): exact search; the choice below 50,000 vectors.
* ``hnsw`` (``"HNSW32,Flat"``): a graph index, recall@10 near 1 at a fraction of the exact cost;
  the choice up to 5 million vectors (it keeps the full vectors: 2 KB each at 512-d).
* ``ivfpq`` (``"IVF{nlist},PQ{m}x8np"``): inverted lists of product-quantised codes, 64 bytes a
  vector at 512-d; the choice beyond 5 million, and for memory-bound collections.

A saved index is a folder: ``index.faiss``, ``metadata.parquet`` (one row per vector, in index
order) and ``index.json`` (kind, count, dimension, the embedding model's config and weights
hashes, and the sha256 of the two other files). Loading checks every file against its hash and
the counts against each other; a query embedded by another architecture is refused, and one by
other weights of the same architecture unless allowed. (The hashes catch swapped, corrupted or
edited files; they are not a signature: someone who rewrites index.json as well is not detected.)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seisbind.io.encode import file_sha256

def import_faiss():
    """The ``faiss`` module, or a one-line error saying which extra provides it (seisbind depends on
    neither faiss-cpu nor faiss-gpu, so that exactly one of them is installed)."""
    try:
        import faiss
    except ImportError:
        raise ImportError("FAISS is not installed: pip install 'seisbind[cpu]' (faiss-cpu) or "
                          "'seisbind[gpu]' (faiss-gpu-cu12)") from None
    return faiss


KINDS = ("flat", "hnsw", "ivfpq")
REQUIRED_INFO_KEYS = ("kind", "count", "dim", "model_config_sha256", "hnsw_ef_search", "ivf_nprobe")
FLAT_MAX, HNSW_MAX = 50_000, 5_000_000
INDEX_FILE, METADATA_FILE, INFO_FILE = "index.faiss", "metadata.parquet", "index.json"


def choose_kind(n: int) -> str:
    return "flat" if n <= FLAT_MAX else "hnsw" if n <= HNSW_MAX else "ivfpq"


# k-means cost grows with (training points x lists): FAISS's own cap, 256 points a list, took
# 66 s at 100k vectors on one core here, and would take over half an hour at 1M. 64 a list stays
# above the 39 below which FAISS warns that the centroids are poorly estimated.
IVF_TRAIN_POINTS_PER_LIST = 64


def ivf_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: FAISS's rule of thumb, 4 sqrt(n)."""
    return int(max(1, min(65536, 4 * np.sqrt(n))))


def training_rows(x: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """The vectors an IVF index is trained on: a seeded sample of 64 per list (all of them if fewer)."""
    if kind != "ivfpq":
        return x
    n_train = IVF_TRAIN_POINTS_PER_LIST * ivf_nlist(len(x))
    if n_train >= len(x):
        return x
    rows = np.sort(np.random.default_rng(seed).choice(len(x), n_train, replace=False))
    return x[rows]


def factory_string(kind: str, n: int, dim: int) -> str:
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return "HNSW32,Flat"
    if kind == "ivfpq":
        nlist = ivf_nlist(n)
        # 8 dimensions per sub-quantiser (64 bytes a 512-d vector), FAISS's usual balance.
        m = next(m for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1) if dim % m == 0 and dim // m >= 8 or m == 1)
        # "np": no polysemous training (a Hamming-distance filter we do not use; it costs minutes).
        return f"IVF{nlist},PQ{m}x8np"
    raise ValueError(f"unknown index kind {kind!r}; choose one of {KINDS} or 'auto'")


def _as_unit_float32(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{what} must be 2-D (count, dim), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{what} have dimension {x.shape[1]} but the index holds {dim}-d vectors")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} hold NaN or infinite values")
    norms = np.linalg.norm(x, axis=1)
    if np.any(np.abs(norms - 1) > 1e-3):
        raise ValueError(f"{what} must be L2-normalised (norms range {norms.min():.3g}..{norms.max():.3g})")
    return x


@dataclass
class EmbeddingIndex:
    index: object  # a faiss.Index
    metadata: object  # a pyarrow.Table, one row per vector
    info: dict

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        metadata,
        model_config_sha256: str,
        kind: str = "auto",
        use_gpu: bool | str = "auto",
        hnsw_ef_search: int = 64,
        ivf_nprobe: int = 32,
        model_weights_sha256: str | None = None,
    ) -> EmbeddingIndex:
        """Index ``embeddings`` (n, d), unit norm, whose row ``i`` is described by ``metadata`` row ``i``.

        ``model_weights_sha256`` (``encode.weights_sha256`` of the model that embedded them) lets
        :meth:`search` refuse queries from another model of the same config."""
        faiss = import_faiss()

        x = _as_unit_float32(embeddings, "embeddings")
        if metadata.num_rows != len(x):
            raise ValueError(f"{len(x)} embeddings but {metadata.num_rows} metadata rows")
        kind = choose_kind(len(x)) if kind == "auto" else kind
        spec = factory_string(kind, len(x), x.shape[1])
        if kind == "ivfpq" and len(x) < 256:  # FAISS needs k-means points for the lists and the 256-entry codebooks
            raise ValueError(f"an ivfpq index needs at least 256 vectors to train its product quantiser; got "
                             f"{len(x)}: use --kind flat (exact) for a collection this small")
        index = faiss.index_factory(x.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
        gpu = use_gpu is True or (use_gpu == "auto" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)
        if gpu and kind != "hnsw":  # FAISS has no GPU HNSW; flat and IVF-PQ build on the GPU
            res = faiss.StandardGpuResources()
            gpu_index = faiss.index_cpu_to_gpu(res, 0, index)
            if not gpu_index.is_trained:
                gpu_index.train(training_rows(x, kind))
            gpu_index.add(x)
            index = faiss.index_gpu_to_cpu(gpu_index)
        else:
            if not index.is_trained:
                index.train(training_rows(x, kind))
            index.add(x)
        info = {
            "kind": kind,
            "factory": spec,
            "count": int(index.ntotal),
            "dim": int(x.shape[1]),
            "model_config_sha256": model_config_sha256,
            "model_weights_sha256": model_weights_sha256,
            "hnsw_ef_search": hnsw_ef_search,
            "ivf_nprobe": ivf_nprobe,
            "built_on_gpu": bool(gpu and kind != "hnsw"),
        }
        built = cls(index, metadata, info)
        built._apply_search_params()
        return built

    def _apply_search_params(self) -> None:
        faiss = import_faiss()

        if self.info["kind"] == "hnsw":
            faiss.downcast_index(self.index).hnsw.efSearch = int(self.info["hnsw_ef_search"])
        elif self.info["kind"] == "ivfpq":
            faiss.extract_index_ivf(self.index).nprobe = int(self.info["ivf_nprobe"])

    def search(self, queries: np.ndarray, k: int, model_config_sha256: str | None = None,
               model_weights_sha256: str | None = None, allow_other_weights: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Scores (cosine) and row numbers of the ``k`` nearest vectors of each query.

        Given the query model's hashes, a query from another architecture is always refused, and
        one from other weights of the same architecture unless ``allow_other_weights``."""
        if model_config_sha256 is not None and model_config_sha256 != self.info["model_config_sha256"]:
            raise ValueError(
                "the query was embedded by another model (config hash "
                f"{model_config_sha256[:12]}...) than the index (config hash {self.info['model_config_sha256'][:12]}...)"
            )
        ours = self.info.get("model_weights_sha256")
        if model_weights_sha256 is not None and not allow_other_weights and ours != model_weights_sha256:
            theirs = f"weights hash {ours[:12]}..." if ours else "no weights hash (an older index: rebuild it)"
            raise ValueError(
                f"the query was embedded by another model (weights hash {model_weights_sha256[:12]}...) than the "
                f"index ({theirs}): same architecture, other weights, another embedding space. Query with the "
                "model the index was built from, or pass --allow-other-weights"
            )
        if not 1 <= k:
            raise ValueError(f"k must be at least 1, got {k}")
        q = _as_unit_float32(queries, "queries", self.info["dim"])
        scores, rows = self.index.search(q, min(k, self.info["count"]))
        return scores, rows

    def nearest(self, query: np.ndarray, k: int, **hashes) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row numbers of one query's ``k`` nearest (``hashes``: as :meth:`search`),
        without the -1 rows FAISS pads with when it finds fewer than ``k`` (HNSW, IVF)."""
        scores, rows = self.search(np.atleast_2d(query), k, **hashes)
        if len(rows) != 1:
            raise ValueError(f"nearest takes one query; got {len(rows)} (use search for a batch)")
        keep = rows[0] >= 0
        return scores[0][keep], rows[0][keep]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the folder; files go in under temporary names and ``index.json`` lands last."""
        faiss = import_faiss()
        import pyarrow.parquet as pq

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tmp_index, tmp_meta = out / f".{INDEX_FILE}.tmp", out / f".{METADATA_FILE}.tmp"
        faiss.write_index(self.index, str(tmp_index))
        pq.write_table(self.metadata, str(tmp_meta))
        os.replace(tmp_index, out / INDEX_FILE)
        os.replace(tmp_meta, out / METADATA_FILE)
        info = {**self.info, "metadata_sha256": file_sha256(out / METADATA_FILE),
                "index_sha256": file_sha256(out / INDEX_FILE)}
        tmp_info = out / f".{INFO_FILE}.tmp"
        tmp_info.write_text(json.dumps(info, indent=2))
        os.replace(tmp_info, out / INFO_FILE)
        self.info = info
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> EmbeddingIndex:
        """Read a saved index, refusing it if its vectors, metadata and description disagree."""
        faiss = import_faiss()
        import pyarrow.parquet as pq

        from seisbind.paths import require_folder

        d = require_folder(directory, "an index folder written by `seisbind index build`")
        for name in (INFO_FILE, INDEX_FILE, METADATA_FILE):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d} is not a complete seisbind index: {name} is missing")
        try:
            info = json.loads((d / INFO_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{d / INFO_FILE} is not valid JSON ({err}); rebuild the index") from None
        missing = [k for k in REQUIRED_INFO_KEYS if k not in info] if isinstance(info, dict) else ["(not an object)"]
        if missing:
            raise ValueError(f"{d / INFO_FILE} lacks {missing}; rebuild the index")
        # Every file of the folder is checked against the hash recorded when it was written, so
        # swapped vectors or relabelled metadata are refused, whatever else they keep consistent.
        for name, key in ((METADATA_FILE, "metadata_sha256"), (INDEX_FILE, "index_sha256")):
            if key not in info:
                raise ValueError(f"{d / INFO_FILE} records no {key} (an index from an older seisbind); rebuild the index")
            if file_sha256(d / name) != info[key]:
                raise ValueError(f"{d / name} does not match the one the index was built with (sha256 differs); "
                                 "rebuild the index")
        index = faiss.read_index(str(d / INDEX_FILE))
        metadata = pq.read_table(str(d / METADATA_FILE))
        if not index.ntotal == metadata.num_rows == info["count"]:
            raise ValueError(
                f"{d}: the index holds {index.ntotal} vectors, the metadata {metadata.num_rows} rows and "
                f"index.json says {info['count']}; rebuild the index"
            )
        if index.d != info["dim"]:
            raise ValueError(f"{d}: the index holds {index.d}-d vectors but index.json says {info['dim']}")
        loaded = cls(index, metadata, info)
        loaded._apply_search_params()
        return loaded
