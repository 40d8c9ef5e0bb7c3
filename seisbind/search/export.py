"""``seisbind export``: embeddings of a stored split for other projects, streamed in batches.

One row per item: ``id``, ``modality`` (``image`` per geology, ``waveform`` per source, and for a
model with a text tower ``text`` per geology: its stored caption), ``split``,
``geology_id``, ``source`` (-1 for images), labels, the dataset path, and ``embedding``. Parquet
(default) or ``.npy`` plus a metadata Parquet for tools that want plain arrays. Rows go out in
batches, so memory stays bounded whatever the dataset size; the file appears under its name only
when complete, so an interrupted export is simply rerun (no duplicated rows). The model's config
hash is recorded, and the index refuses queries embedded by another model.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from seisbind.argtypes import positive_int
from seisbind.modalities import ModalityType

LABELS = ("family", "fault_present", "n_layers", "vs30", "depth_vs760_m", "caption")


def export_fields():
    import pyarrow as pa

    f64 = pa.float64()
    return [
        pa.field("split", pa.string()), pa.field("geology_id", pa.int64()), pa.field("source", pa.int64()),
        pa.field("family", pa.string()), pa.field("fault_present", pa.bool_()), pa.field("n_layers", pa.int64()),
        pa.field("vs30", f64), pa.field("depth_vs760_m", f64), pa.field("source_depth_m", f64),
        pa.field("caption", pa.string()), pa.field("data", pa.string()),
    ]  # fmt: skip


def _rows_of_batch(rows: dict, split: str, data_dir: str) -> tuple[list, list, list, list]:
    """Ids and metadata of the images and of the waveforms of a batch of geology rows."""
    img_ids, img_meta, wav_ids, wav_meta = [], [], [], []
    for i, gid in enumerate(rows["geology_id"]):
        base = {"split": split, "geology_id": int(gid), "data": data_dir}
        for name in LABELS:
            if name in rows:
                value = rows[name][i]
                base[name] = value.item() if hasattr(value, "item") else value
        img_ids.append(f"{split}/geology-{int(gid)}/image")
        img_meta.append({**base, "source": -1, "source_depth_m": None})
        depths = rows["source_depth_m"][i] if "source_depth_m" in rows else [None] * len(rows["waveforms"][i])
        for s in range(len(rows["waveforms"][i])):
            wav_ids.append(f"{split}/geology-{int(gid)}/source-{s}")
            wav_meta.append({**base, "source": s, "source_depth_m": None if depths[s] is None else float(depths[s])})
    return img_ids, img_meta, wav_ids, wav_meta


def iter_embeddings(model, dataset, split: str, data_dir: str, batch_size: int, progress: bool):
    """Yield ``(modality, ids, metadata rows, embeddings)`` for each batch of geologies."""
    import torch
    from tqdm.auto import tqdm

    from seisbind.evaluation.embed import encode_records, item_positions

    for start in tqdm(range(0, len(dataset), batch_size), desc=f"export {split}", unit="batch", disable=not progress):
        rows = dataset[start : start + batch_size]
        img_ids, img_meta, wav_ids, wav_meta = _rows_of_batch(rows, split, data_dir)
        # no_grad around each computation, not around the yields: grad mode must not leak to the caller
        with torch.no_grad():
            images = model.encode_image(torch.stack(rows["image"])).numpy()
        yield ModalityType.IMAGE, img_ids, img_meta, images
        waves = torch.cat(list(rows["waveforms"]))
        positions = item_positions(rows, [len(w) for w in rows["waveforms"]])
        with torch.no_grad():
            waveforms = encode_records(model, waves, positions, batch_size // 2)
        yield ModalityType.WAVEFORM, wav_ids, wav_meta, waveforms
        if ModalityType.TEXT in model.modalities and "caption" in rows:
            # each geology's stored caption (seisbind.data.labels.caption: a phrasing training never draws)
            text_ids = [i.rsplit("/", 1)[0] + "/caption" for i in img_ids]
            with torch.no_grad():
                texts = model.encode_text(list(rows["caption"])).float().numpy()
            yield ModalityType.TEXT, text_ids, [dict(m) for m in img_meta], texts


def export(
    model_spec: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str,
    out: str | os.PathLike,
    batch_size: int = 8,
    fmt: str | None = None,
    progress: bool = True,
) -> Path:
    """Write the embeddings of ``split``; the format follows ``out``'s suffix (.parquet or .npy)."""
    from seisbind.data.dataset import load_paired
    from seisbind.io.embeddings import EmbeddingWriter, schema_metadata
    from seisbind.io.encode import load_model

    out = Path(out)
    fmt = fmt or out.suffix.lstrip(".")
    if fmt not in ("parquet", "npy"):
        raise ValueError(f"--out must end in .parquet or .npy (or give --format), got {out.name}")
    model, info = load_model(model_spec)
    dataset = load_paired(data_dir, split)
    metadata = schema_metadata(info, "+".join(model.modalities), {"data": str(data_dir), "split": split})
    batches = iter_embeddings(model, dataset, split, str(data_dir), batch_size, progress)
    if fmt == "parquet":
        with EmbeddingWriter(out, export_fields(), ModalityType.IMAGE, metadata) as writer:
            for modality, ids, metas, emb in batches:
                writer.add(ids, metas, emb, modality=modality)
        return out
    # a text row per geology only where iter_embeddings makes one: a text tower and a caption column
    with_text = ModalityType.TEXT in model.modalities and "caption" in dataset.column_names
    per_geology = 1 + dataset.features["waveforms"].shape[0] + with_text
    return _export_npy(out, batches, len(dataset) * per_geology, int(info["embed_dim"]), metadata)


def _export_npy(out: Path, batches, total_rows: int, dim: int, metadata: dict) -> Path:
    """Embeddings in a memory-mapped ``.npy`` filled batch by batch, metadata beside it in Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seisbind.io.embeddings import remove_stale_temporaries

    out.parent.mkdir(parents=True, exist_ok=True)
    meta_path = out.with_suffix(".metadata.parquet")
    remove_stale_temporaries(out)
    remove_stale_temporaries(meta_path)
    tmp_npy = out.parent / f".{out.name}.tmp-{os.getpid()}"
    tmp_meta = out.parent / f".{meta_path.name}.tmp-{os.getpid()}"
    schema = pa.schema([pa.field("row", pa.int64()), pa.field("id", pa.string()), pa.field("modality", pa.string()),
                        *export_fields()], metadata=metadata)  # fmt: skip
    array = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.float32, shape=(total_rows, dim))
    writer = pq.ParquetWriter(str(tmp_meta), schema)
    row = 0
    try:
        for modality, ids, metas, emb in batches:
            array[row : row + len(ids)] = emb
            table = {"row": list(range(row, row + len(ids))), "id": ids, "modality": [modality] * len(ids)}
            for field in export_fields():
                table[field.name] = [m.get(field.name) for m in metas]
            writer.write_table(pa.table(table, schema=schema))
            row += len(ids)
        if row != total_rows:
            raise ValueError(f"expected {total_rows} rows, embedded {row}")
        array.flush()
        del array
        writer.close()
    except BaseException:
        writer.close()
        tmp_meta.unlink(missing_ok=True)
        tmp_npy.unlink(missing_ok=True)
        raise
    os.replace(tmp_npy, out)
    os.replace(tmp_meta, meta_path)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a save_pretrained folder (or an architecture name: random weights)")
    p.add_argument("--data", required=True, help="a folder written by `seisbind generate` or an import")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"), help="split to export (default test)")
    p.add_argument("--out", required=True, help="FILE.parquet, or FILE.npy (+ FILE.metadata.parquet)")
    p.add_argument("--format", choices=("parquet", "npy"), help="default: from the --out suffix")
    p.add_argument("--batch-size", type=positive_int, default=8, help="geologies per batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    path = export(args.model, args.data, args.split, args.out, args.batch_size, args.format, not args.no_progress)
    print(f"wrote {path}")
    return 0


def read_npy_export(path: str | os.PathLike):
    """``(embeddings memmap, metadata table, seisbind schema metadata)`` of an ``.npy`` export."""
    import pyarrow.parquet as pq

    path = Path(path)
    from seisbind.io.embeddings import seisbind_metadata

    table = pq.read_table(str(path.with_suffix(".metadata.parquet")))
    meta = seisbind_metadata(table.schema)
    emb = np.load(path, mmap_mode="r")
    if emb.shape[0] != table.num_rows:
        raise ValueError(f"{path} holds {emb.shape[0]} rows but its metadata {table.num_rows}")
    return emb, table, meta

