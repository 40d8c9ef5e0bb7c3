"""What the app's page asks, without a UI: the model and index loaded once, queries, the map.

:class:`AppBackend` answers three kinds of query, each with an :class:`Answer` (the query array,
the top-k scores, index rows and metadata rows, and for a dataset item where its true match ranked):

* :meth:`AppBackend.query_file`: a file a user gives. A waveform file goes through the CLI's own
  reader (``index_cli.load_query_waveform``: the format allow-list of
  ``obspy_streams.read_stream``, the component, rate and finiteness checks); a ``.npy`` is read by
  ``io.npy.read_npy`` (numbers only, never a pickle); a PNG section must be the model's image size
  (it is refused, not resized: resizing would change the section's scale in metres per pixel).
  Bad files raise the CLI's one-line :class:`~seisbind.io.batch.InputError` / ``ValueError``.
* :meth:`AppBackend.query_item`: a row of the dataset (``--data``), embedded as ``seisbind export``
  embeds it (its stations' positions included), with the rank of its own section (or records).
* :meth:`AppBackend.joint_map`: a 2-D t-SNE (or UMAP) map of the index's vectors, plus those of an
  export with both modalities, computed once and cached; a query is placed on it.

The index holds one modality, so a query is of the other one (sections find records, records find
sections), as ``seisbind index query`` refuses otherwise. Model calls are serialised by a lock:
PyTorch already spreads one call over the machine's cores, and concurrent calls would only compete
for them (benchmarks/bench_app.py measures 4 concurrent users).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np

from seisbind.io.batch import InputError
from seisbind.io.obspy_streams import MAX_UPSAMPLING
from seisbind.evaluation.zeroshot import l2_normalize
from seisbind.modalities import ModalityType

DEFAULT_WINDOW_SECONDS = 30.0  # index query's default, used when no dataset tells the record length
RANK_DEPTH = 1000  # a dataset item's true match is looked for among this many nearest results
MAP_POINTS = 5000  # the map's seeded sample: t-SNE of 5,000 points takes about a minute on 2 cores
MAP_METHODS = ("tsne", "umap", "none")
PLACE_NEIGHBOURS = 5  # t-SNE has no transform: a query sits at the mean of its 5 nearest map points
# Metadata that names or locates an item rather than labelling it: not offered as map colours.
NOT_LABELS = {"id", "caption", "data", "embedding", "file", "starttime", "endtime", "network", "station",
              "location", "channel", "geology_id", "row"}  # fmt: skip
MAX_CATEGORIES = 30  # a text column with more distinct values than this is a name, not a label


@dataclasses.dataclass
class Answer:
    """One query and its nearest results."""

    source: str  # the query as the page names it: a file name, or "test row 3, source 0"
    modality: str  # the query's modality (the index holds the other one)
    query: np.ndarray  # (stations, 3, T) waveforms at the model's rate, or an (H, W) section
    station_x_m: np.ndarray | None  # the stations' positions; None: a line, station_spacing_m apart
    embedding: np.ndarray  # (dim,) unit vector
    scores: np.ndarray  # (k,) cosine similarities, best first
    rows: np.ndarray  # (k,) index rows
    hits: list[dict]  # (k,) index metadata rows
    true_rank: int | None = None  # a dataset item: 1-based rank of its true match, None beyond RANK_DEPTH
    true_match: str = ""  # a dataset item: the sentence saying where its true match ranked

    @property
    def waveform_query(self) -> bool:
        return self.modality == ModalityType.WAVEFORM

    def columns(self) -> list[str]:
        """Table header: rank, score and the columns the hits hold (``answers.table_columns``)."""
        from seisbind.search.answers import table_columns

        return ["rank", "score", *table_columns(self.hits)]

    def table(self) -> list[list[str]]:
        """One row of text cells per hit, as ``answers.format_table`` writes them."""
        from seisbind.search.answers import cell

        columns = self.columns()[2:]
        return [[str(rank), f"{float(score):.3f}", *(cell(hit, c) for c in columns)]
                for rank, (score, hit) in enumerate(zip(self.scores, self.hits, strict=True), start=1)]  # fmt: skip


@dataclasses.dataclass
class JointMap:
    """The joint space in 2-D: one point per item, index items and (optionally) an export's."""

    method: str  # "t-SNE" or "UMAP"
    xy: np.ndarray  # (n, 2)
    vectors: np.ndarray  # (n, dim) unit vectors, to place queries
    table: list[dict]  # (n,) metadata rows, each with a "modality"
    index_rows: np.ndarray  # (n,) index row of each point, -1 for an export's item not in the index
    total: int  # points before the seeded sample
    reducer: object | None = None  # a fitted UMAP (which can transform a query), else None
    hover: dict = dataclasses.field(default_factory=dict, repr=False)  # colour -> hover texts (figures.py)

    def label_columns(self) -> list[str]:
        """Columns to colour by: family and modality first, then every other label with values."""
        names: list[str] = []
        for row in self.table:
            names.extend(k for k, v in row.items() if k not in names and k not in NOT_LABELS
                         and isinstance(v, (str, bool, int, float)))  # fmt: skip
        keep = [c for c in names if len({row.get(c) for row in self.table} - {None}) > 1 and self._is_label(c)]
        first = [c for c in ("family", "modality") if c in names]
        return first + [c for c in keep if c not in first]

    def _is_label(self, column: str) -> bool:
        values = [row.get(column) for row in self.table if row.get(column) is not None]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        return numeric or len(set(values)) <= MAX_CATEGORIES

    def place(self, embedding: np.ndarray) -> np.ndarray:
        """(2,) map position of a vector: UMAP's transform, else (t-SNE has none) the
        similarity-weighted mean of its :data:`PLACE_NEIGHBOURS` nearest map points, or the point
        itself when the vector is on the map."""
        if self.reducer is not None:
            return np.asarray(self.reducer.transform(embedding[None].astype(np.float32))[0], float)
        sims = self.vectors @ embedding
        near = np.argsort(-sims)[:PLACE_NEIGHBOURS]
        if sims[near[0]] > 1 - 1e-5:  # the query is on the map (a dataset item of the export)
            return self.xy[near[0]].astype(float)
        weights = np.clip(sims[near], 1e-6, None)
        return (self.xy[near] * weights[:, None]).sum(0) / weights.sum()

    def points_of_rows(self, rows) -> np.ndarray:
        """Map points of index rows (those of the sample; a row not in it is left out)."""
        where = {int(r): i for i, r in enumerate(self.index_rows) if r >= 0}
        return np.asarray([where[int(r)] for r in rows if int(r) in where], dtype=int)


def modality_other(modality: str) -> str:
    """The modality an index of ``modality`` is searched with (and the reverse)."""
    return ModalityType.WAVEFORM if modality == ModalityType.IMAGE else ModalityType.IMAGE


def _renamed(err: Exception, path: str, name: str) -> Exception:
    """``err`` with the upload's temporary path replaced by the name the user gave the file."""
    text = str(err).replace(path, name) if name and path != name else str(err)
    return (InputError if isinstance(err, InputError) else type(err))(text)


def read_png(path: str | os.PathLike, where: str) -> np.ndarray:
    """A PNG as an (H, W) float32 array: grey levels as stored (colour becomes luminance)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=["PNG"]) as img:  # only the PNG decoder looks at the bytes
            if img.mode in ("I", "I;16", "F"):
                return np.asarray(img, dtype=np.float32)
            return np.asarray(img.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"{where}: not a readable PNG image ({' '.join(str(err).split())})") from None


def index_vectors(index, rows: np.ndarray) -> np.ndarray:
    """(len(rows), dim) unit vectors of index rows read back from FAISS (IVF-PQ: the decoded codes)."""
    from seisbind.search.faiss_index import import_faiss

    faiss = import_faiss()
    if index.info["kind"] == "ivfpq":
        faiss.extract_index_ivf(index.index).make_direct_map()
    out = np.stack([index.index.reconstruct(int(r)) for r in rows]).astype(np.float32)
    return l2_normalize(out).astype(np.float32)


class AppBackend:
    """The model, the index (and the dataset and export, when given), loaded once; queries on them.

    ``k``, ``window_seconds``, ``missing`` and ``max_upsampling`` are the defaults of every query
    (``index query``'s options); ``window_seconds=None`` takes the dataset's record length, else 30 s.
    """

    def __init__(self, model: str | os.PathLike, index: str | os.PathLike, data: str | os.PathLike | None = None,
                 embeddings: str | os.PathLike | None = None, k: int = 5, window_seconds: float | None = None,
                 missing: str = "fill", max_upsampling: float = MAX_UPSAMPLING, allow_other_weights: bool = False):  # fmt: skip
        from seisbind.io.encode import load_model
        from seisbind.search.faiss_index import EmbeddingIndex

        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.index_dir = str(index)
        self.index = EmbeddingIndex.load(index)
        self.index_modality = self.index.info.get("modality", ModalityType.IMAGE)
        self.query_modality = modality_other(self.index_modality)
        self.model, self.model_info = load_model(model)
        self.allow_other_weights = allow_other_weights
        # A model of another architecture or other weights is refused now, in the index's own words.
        probe = np.zeros((1, self.index.info["dim"]), np.float32)
        probe[0, 0] = 1.0
        self._search(probe, 1)
        self.k, self.missing, self.max_upsampling = k, missing, max_upsampling
        self.data_dir = None if data is None else str(data)
        self.data = None
        if data is not None:
            from seisbind.data.dataset import load_paired

            self.data = {name: split for name, split in load_paired(data).items() if len(split)}
        self.window_seconds = float(window_seconds) if window_seconds is not None else self._record_seconds()
        self.embeddings_path = None if embeddings is None else str(embeddings)
        self._model_lock = threading.Lock()
        self._map_lock = threading.Lock()
        self._maps: dict[tuple, JointMap | None] = {}
        self._tile_cache: dict = {}  # datasets and SEG-Y sections that hit tiles read, read once
        self._truth = self._true_match_rows()

    # --- what the page shows about the setup ------------------------------------------------------

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the sections the model takes."""
        return self.model.config.image.img_hw

    @property
    def sampling_rate(self) -> float:
        return self.model.sampling_rate

    @property
    def station_spacing_m(self) -> float:
        """Where the model puts stations without positions: a line this far apart."""
        return float(getattr(self.model.config.waveform, "station_spacing_m", 1.0) or 1.0)

    def splits(self) -> dict[str, int]:
        """Rows per split of the dataset (empty without ``--data``)."""
        return {name: len(split) for name, split in (self.data or {}).items()}

    def indexed_split(self) -> str | None:
        """The dataset split whose items the index holds most of (None: it holds none of the dataset's)."""
        splits = [split for split, _ in self._truth]
        present = [s for s in (self.data or {}) if s in splits]
        return max(present, key=splits.count) if present else None

    def sources_per_item(self) -> int:
        """Waveform records per dataset row (one per source)."""
        if not self.data:
            return 0
        first = next(iter(self.data.values()))
        return int(first.features["waveforms"].shape[0])

    def describe(self) -> str:
        """One line: the model, the index and the dataset."""
        info = self.index.info
        data = f"; dataset {self.data_dir} ({', '.join(f'{s} {n}' for s, n in self.splits().items())})" if self.data else ""
        return (f"model {self.model_info['model']} ({self.model_info['weights']} weights); index {self.index_dir}: "
                f"{info['count']} {self.index_modality} embeddings ({info['factory']}){data}")  # fmt: skip

    def _record_seconds(self) -> float:
        if not self.data:
            return DEFAULT_WINDOW_SECONDS
        first = next(iter(self.data.values()))
        rate = float(first.with_format(None)["sampling_rate"][0])
        return (first.features["waveforms"].shape[-1] - 1) / rate

    # --- queries ------------------------------------------------------------------------------------

    def _embed(self, modality: str, array: np.ndarray, station_x_m: np.ndarray | None = None) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
        with self._model_lock, torch.no_grad():
            if modality == ModalityType.WAVEFORM:
                pos = None if station_x_m is None else torch.as_tensor(station_x_m, dtype=torch.float32)[None]
                return self.model.encode_waveform(x, station_x_m=pos).numpy()[0]
            return self.model.encode_image(x[:, None]).numpy()[0]

    def _search(self, embedding: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.nearest(embedding, k, model_config_sha256=self.model_info["config_sha256"],
                                  model_weights_sha256=self.model_info["weights_sha256"],
                                  allow_other_weights=self.allow_other_weights)  # fmt: skip

    def query_array(self, modality: str, array: np.ndarray, source: str, k: int | None = None,
                    station_x_m: np.ndarray | None = None) -> Answer:  # fmt: skip
        """Embed an array of the query modality and search the index."""
        return self._query(modality, array, source, k, station_x_m)[0]

    def _query(self, modality: str, array: np.ndarray, source: str, k: int | None,
               station_x_m: np.ndarray | None, depth: int = 0) -> tuple[Answer, np.ndarray]:  # fmt: skip
        """The answer's top k, and the index rows of the ``max(k, depth)`` nearest (for a rank)."""
        if modality != self.query_modality:
            raise ValueError(f"{self.index_dir} indexes {self.index_modality} embeddings; a {modality} query "
                             f"searches {modality_other(modality)}s: give a {self.query_modality} query")  # fmt: skip
        k = self.k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        emb = self._embed(modality, array, station_x_m)
        scores, rows = self._search(emb, max(k, depth))
        x_m = None if station_x_m is None else np.asarray(station_x_m, float)
        hits = self.index.metadata.take(rows[:k]).to_pylist()
        return Answer(source, modality, array, x_m, emb, scores[:k], rows[:k], hits), rows

    @property
    def has_text(self) -> bool:
        """Whether the model has a text tower (text queries find what the index holds)."""
        return ModalityType.TEXT in self.model.modalities

    def query_text(self, sentence: str, k: int | None = None) -> Answer:
        """Embed a sentence with the text tower and search the index (sections or records)."""
        import torch

        if not self.has_text:
            raise ValueError(f"the model has no text tower (its modalities: {', '.join(self.model.modalities)}); "
                             "text queries need a model trained with text, such as the quickstart's tiny-text")
        sentence = (sentence or "").strip()
        if not sentence:
            raise ValueError("type a sentence first, e.g. 'layers cut by a reverse fault, site class D'")
        if self.index_modality == ModalityType.TEXT:
            raise ValueError(f"{self.index_dir} indexes text embeddings; a text query searches sections or records")
        k = self.k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        with self._model_lock, torch.no_grad():
            emb = self.model.encode_text([sentence]).numpy()[0]
        scores, rows = self._search(emb, k)
        hits = self.index.metadata.take(rows).to_pylist()
        return Answer(f'"{sentence}"', ModalityType.TEXT, np.array(sentence), None, emb, scores, rows, hits)

    def load_file(self, path: str | os.PathLike, name: str | None = None, window_seconds: float | None = None,
                  starttime: str | None = None, endtime: str | None = None,
                  npy_sampling_rate: float | None = None) -> np.ndarray:  # fmt: skip
        """The query array of a file: a waveform (stations, 3, T) or a section (H, W), by what the
        index needs; errors name the file as ``name`` (an upload's own name, not its temporary path)."""
        from seisbind.io.npy import read_npy
        from seisbind.search.index_cli import load_query_waveform

        path = str(path)
        where = name or path
        try:
            suffix = Path(where).suffix.lower() or Path(path).suffix.lower()
            if suffix == ".png" or (self.query_modality == ModalityType.IMAGE and suffix != ".npy"):
                if suffix != ".png":
                    raise InputError(f"{where}: this index holds {self.index_modality}s, so a query is a section: "
                                     "a .npy (H, W) array or a PNG")  # fmt: skip
                return self._section(read_png(path, where), where, png=True)
            if self.query_modality == ModalityType.IMAGE:
                return self._section(read_npy(path, mmap=False), where)
            if window_seconds is not None and not (np.isfinite(window_seconds) and window_seconds > 0):
                raise ValueError(f"the window length must be a number of seconds above 0, got {window_seconds}")
            seconds = self.window_seconds if window_seconds is None else float(window_seconds)
            return load_query_waveform(path, self.sampling_rate, seconds, self.missing, npy_sampling_rate,
                                       self.max_upsampling, starttime or None, endtime or None)  # fmt: skip
        except (InputError, ValueError, FileNotFoundError) as err:
            raise _renamed(err, path, where) from None

    def _section(self, arr: np.ndarray, where: str, png: bool = False) -> np.ndarray:
        """A section the model takes: 2-D, finite, of the model's image size (refused otherwise)."""
        if png and self.model.config.image.normalize == "fixed":
            raise InputError(f"{where}: this model scales pixels by its data's fixed mean and deviation "
                             "(normalize: fixed), which a PNG's grey levels do not carry; give the section as a .npy "
                             "in the data's units")  # fmt: skip
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise InputError(f"{where}: a section query must be a 2-D (H, W) array, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where}: NaN or infinite samples")
        h, w = self.image_size
        if arr.shape != (h, w):
            raise InputError(f"{where}: the model takes {h} x {w} sections (height x width), this one is "
                             f"{arr.shape[0]} x {arr.shape[1]}; cut or resample it to that size (the page does not "
                             "resize: that would change the section's scale)")  # fmt: skip
        return arr.astype(np.float32)

    def query_file(self, path: str | os.PathLike, name: str | None = None, k: int | None = None,
                   window_seconds: float | None = None, starttime: str | None = None, endtime: str | None = None,
                   npy_sampling_rate: float | None = None) -> Answer:  # fmt: skip
        """Read a file (:meth:`load_file`), embed it and search the index."""
        arr = self.load_file(path, name, window_seconds, starttime, endtime, npy_sampling_rate)
        return self.query_array(self.query_modality, arr, name or os.path.basename(str(path)), k)

    def _true_match_rows(self) -> dict[tuple[str, int], list[int]]:
        """(split, geology_id) -> index rows of that geology: what a dataset item should find."""
        meta = self.index.metadata
        if "geology_id" not in meta.column_names or "split" not in meta.column_names:
            return {}
        out: dict[tuple[str, int], list[int]] = {}
        splits, gids = meta.column("split").to_pylist(), meta.column("geology_id").to_pylist()
        for row, (split, gid) in enumerate(zip(splits, gids, strict=True)):
            if gid is not None:
                out.setdefault((str(split), int(gid)), []).append(row)
        return out

    def query_item(self, split: str, row: int, source: int = 0, k: int | None = None) -> Answer:
        """Query with row ``row`` of ``split`` (its waveform record of ``source``, or its section)
        as ``seisbind export`` embeds it, and say where its own section (or records) ranked."""
        if not self.data:
            raise ValueError("no dataset: start the app with --data DIR to query its items")
        if split not in self.data:
            raise ValueError(f"unknown split {split!r}; the dataset has {', '.join(self.data)}")
        n = len(self.data[split])
        if not 0 <= int(row) < n:
            raise ValueError(f"row {row} is not in the {split} split, which has rows 0..{n - 1}")
        item = self.data[split][int(row)]
        gid = int(item["geology_id"])
        if self.query_modality == ModalityType.WAVEFORM:
            sources = item["waveforms"].shape[0]
            if not 0 <= int(source) < sources:
                raise ValueError(f"source {source} is not in the row, which has sources 0..{sources - 1}")
            arr = item["waveforms"][int(source)].numpy().astype(np.float32)
            x_m = np.asarray(item["station_x_m"], np.float32) if "station_x_m" in item else None
            label = f"{split} row {row} (geology {gid}, {item.get('family', '')}), source {source}"
        else:
            arr, x_m = item["image"][0].numpy().astype(np.float32), None
            label = f"{split} row {row} (geology {gid}, {item.get('family', '')}), its section"
        depth = min(self.index.info["count"], RANK_DEPTH)
        answer, ranked = self._query(self.query_modality, arr, label, k, x_m, depth)
        truth = set(self._truth.get((split, gid), []))
        own = "its own section" if self.index_modality == ModalityType.IMAGE else "its own records"
        if not truth:
            answer.true_match = f"{own} (geology {gid} of {split}) is not in the index"
            return answer
        ranked = [i for i, r in enumerate(ranked) if int(r) in truth]
        count = self.index.info["count"]
        if ranked:
            answer.true_rank = ranked[0] + 1
            answer.true_match = f"{own} (geology {gid}) ranks {answer.true_rank} of {count}"
        else:
            answer.true_match = f"{own} (geology {gid}) is not among the {depth} nearest of {count}"
        return answer

    # --- drawing what the hits are ------------------------------------------------------------------

    def tiles(self, answer: Answer) -> list:
        """One ``answers.Tile`` per hit, read from the hit's source (a text tile when it is gone)."""
        from seisbind.search.answers import tile

        sections = self.index_modality == ModalityType.IMAGE  # what the hits are, whatever the query was
        return [tile(hit, score, sections, self._tile_cache)
                for score, hit in zip(answer.scores, answer.hits, strict=True)]

    # --- the map of the joint space -------------------------------------------------------------------

    def joint_map(self, method: str = "tsne", max_points: int = MAP_POINTS, seed: int = 0) -> JointMap | None:
        """The map (computed on the first call, then cached); None for ``method="none"`` or fewer
        than 4 points. UMAP needs umap-learn."""
        if method not in MAP_METHODS:
            raise ValueError(f"unknown map method {method!r}; choose one of {MAP_METHODS}")
        key = (method, max_points, seed)
        with self._map_lock:
            if key not in self._maps:
                self._maps[key] = None if method == "none" else self._compute_map(method, max_points, seed)
            return self._maps[key]

    def _export_points(self) -> tuple[np.ndarray | None, list[dict]]:
        """The export's vectors and metadata rows of the items the index does not hold (by id)."""
        if not self.embeddings_path:
            return None, []
        from seisbind.search.index_cli import read_export

        emb, meta, info = read_export(self.embeddings_path)
        if info.get("model_config_sha256") != self.index.info["model_config_sha256"]:
            raise ValueError(f"{self.embeddings_path} was embedded by another model than the index "
                             "(config hash differs); export it with the index's model")  # fmt: skip
        index_meta = self.index.metadata
        known = set(index_meta.column("id").to_pylist()) if "id" in index_meta.column_names else set()
        rows = meta.to_pylist()
        keep = [i for i, r in enumerate(rows) if r.get("id") not in known]
        return emb[keep], [rows[i] for i in keep]

    def _compute_map(self, method: str, max_points: int, seed: int) -> JointMap | None:
        n_index = self.index.info["count"]
        extra_vectors, extra_rows = self._export_points()
        total = n_index + len(extra_rows)
        rng = np.random.default_rng(seed)
        pick = np.arange(total) if total <= max_points else np.sort(rng.choice(total, max_points, replace=False))
        if len(pick) < 4:
            return None
        from_index, from_export = pick[pick < n_index], pick[pick >= n_index] - n_index
        table = [{**row, "modality": row.get("modality") or self.index_modality}
                 for row in self.index.metadata.take(from_index).to_pylist()]  # fmt: skip
        table += [extra_rows[i] for i in from_export]
        vectors = [index_vectors(self.index, from_index)] if len(from_index) else []
        if len(from_export):
            vectors.append(np.asarray(extra_vectors[from_export], np.float32))
        x = np.concatenate(vectors)
        x = l2_normalize(x).astype(np.float32)
        index_rows = np.concatenate([from_index, np.full(len(from_export), -1)]).astype(int)
        reducer = None
        if method == "umap":
            try:
                import umap
            except ImportError:
                raise ImportError("--map umap needs umap-learn (pip install umap-learn); or use --map tsne") from None
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), metric="cosine", random_state=seed)
            xy = reducer.fit_transform(x)
            name = "UMAP"
        else:
            from sklearn.manifold import TSNE

            perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
            xy = TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed).fit_transform(x)
            name = "t-SNE"
        return JointMap(name, np.asarray(xy, float), x, table, index_rows, total, reducer)
