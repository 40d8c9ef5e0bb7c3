"""Embeddings and their metadata, streamed to one Parquet file.

One row per embedded item: ``id`` (string), ``modality`` (``image`` or ``waveform``), the
metadata columns of its source (survey coordinates, or station and time), and ``embedding``
(``list<float32>``, L2-normalised). Rows are written in row groups as they come, into a hidden
temporary file that is renamed into place when the writer closes, so a killed job never leaves a
file that looks finished.

The Parquet schema metadata records which model made the embeddings, so an index built later
(issue 7) can refuse to mix spaces: ``seisbind.model_config_sha256`` (sha256 of the model's config
JSON, keys sorted), ``seisbind.model_config``, ``seisbind.model`` (what ``--model`` named),
``seisbind.weights`` (``pretrained`` or ``random``), ``seisbind.weights_sha256``
(``encode.weights_sha256``: of the weights themselves, random ones too), ``seisbind.embed_dim``, ``seisbind.modality``,
``seisbind.version`` and ``seisbind.options`` (JSON of the reader options).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

METADATA_PREFIX = "seisbind."


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>`` files beside ``path`` that a killed writer left (its process is
    gone); a live writer's file is kept. Returns what was removed."""
    removed = []
    for tmp in Path(path).parent.glob(f".{Path(path).name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except (ValueError, PermissionError):
            continue  # not our name pattern, or another user's live process
    return removed


class EmbeddingWriter:
    """Writes rows of (id, modality, metadata..., embedding) to ``path`` in row groups.

    ``fields`` are the Arrow fields of the metadata columns; ``metadata`` the schema metadata
    (strings). Use as a context manager: the file appears at ``path`` only on a clean exit.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fields: list,
        modality: str,
        metadata: dict[str, str] | None = None,
        rows_per_group: int = 4096,
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(path)
        if self.path.suffix != ".parquet":
            raise ValueError(f"{self.path}: the output must be a .parquet file")
        names = [f.name for f in fields]
        clash = sorted({"id", "modality", "embedding"} & set(names)) or sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f"metadata columns {clash} clash with each other or with id/modality/embedding")
        self.modality = modality
        self.schema = pa.schema(
            [pa.field("id", pa.string()), pa.field("modality", pa.string()), *fields,
             pa.field("embedding", pa.list_(pa.float32()))],
            metadata={k: str(v) for k, v in (metadata or {}).items()},
        )  # fmt: skip
        self.rows_per_group = int(rows_per_group)
        self.rows_written = 0
        self._ids: list[str] = []
        self._modalities: list[str] = []
        self._meta: list[dict] = []
        self._embeddings: list[np.ndarray] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        self._tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}"
        self._writer = pq.ParquetWriter(str(self._tmp), self.schema)

    def add(self, ids: list[str], metas: list[dict], embeddings: np.ndarray, modality: str | None = None) -> None:
        """Queue rows (of ``modality``, the writer's by default); a row group is written whenever
        ``rows_per_group`` rows are waiting."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if not (len(ids) == len(metas) == len(embeddings)):
            raise ValueError(f"{len(ids)} ids, {len(metas)} metadata rows and {len(embeddings)} embeddings")
        self._modalities.extend([modality or self.modality] * len(ids))
        self._ids.extend(ids)
        self._meta.extend(metas)
        self._embeddings.extend(embeddings)
        if len(self._ids) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._ids:
            return
        n = len(self._ids)
        emb = np.stack(self._embeddings).astype(np.float32)
        columns: dict[str, Any] = {"id": pa.array(self._ids, pa.string()), "modality": pa.array(self._modalities, pa.string())}
        for field in self.schema:
            if field.name in ("id", "modality", "embedding"):
                continue
            columns[field.name] = pa.array([m.get(field.name) for m in self._meta], type=field.type)
        offsets = pa.array(np.arange(0, emb.size + 1, emb.shape[1], dtype=np.int32))
        columns["embedding"] = pa.ListArray.from_arrays(offsets, pa.array(emb.reshape(-1), pa.float32()))
        self._writer.write_table(pa.table(columns, schema=self.schema))
        self.rows_written += n
        self._ids, self._meta, self._embeddings, self._modalities = [], [], [], []

    def close(self) -> Path | None:
        """Write what is left and rename the file into place; with no row at all, write nothing
        (an empty table is no result: every input failed) and return None."""
        self._flush()
        if self.rows_written == 0:
            self.abort()
            return None
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; nothing appears at ``path``."""
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_embeddings(path: str | os.PathLike):
    """A Parquet file written here: ``(pyarrow.Table, {key: value})`` with the ``seisbind.*`` metadata."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(path))
    return table, seisbind_metadata(table.schema)


def seisbind_metadata(schema) -> dict[str, str]:
    """The ``seisbind.*`` entries of an Arrow schema's metadata, without the prefix."""
    raw = schema.metadata or {}
    return {k.decode()[len(METADATA_PREFIX):]: v.decode() for k, v in raw.items() if k.decode().startswith(METADATA_PREFIX)}


def embedding_matrix(table) -> np.ndarray:
    """The ``embedding`` column as an (rows, dim) float32 array."""
    col = table.column("embedding").combine_chunks()
    if len(col) == 0:
        return np.zeros((0, 0), np.float32)
    return np.asarray(col.values.to_numpy(zero_copy_only=False), np.float32).reshape(len(col), -1)


def schema_metadata(model_info: dict[str, Any], modality: str, options: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``seisbind.*`` schema metadata for embeddings of ``modality`` made with a loaded model."""
    from seisbind import __version__

    meta = {
        "model_config_sha256": model_info["config_sha256"],
        "model_config": model_info["config_json"],
        "model": model_info["model"],
        "weights": model_info["weights"],
        "weights_sha256": model_info.get("weights_sha256", ""),
        "embed_dim": str(model_info["embed_dim"]),
        "modality": modality,
        "version": __version__,
        "options": json.dumps(options or {}, sort_keys=True, default=str),
    }
    return {METADATA_PREFIX + k: v for k, v in meta.items()}
