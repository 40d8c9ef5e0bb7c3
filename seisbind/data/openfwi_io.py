"""Reading and writing OpenFWI's ``.npy`` pairs, so its public files train here directly.

OpenFWI ships each family as pairs of files ``data<k>.npy`` (N, 5, 1000, 70) float32 shot
gathers and ``model<k>.npy`` (N, 1, 70, 70) float32 velocity maps (N = 500 in the release).
Files are memory-mapped on read, so a folder larger than RAM imports chunk by chunk.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tqdm.auto import tqdm

from seisbind.data.generate import (
    DEFAULT_SPLIT_FRACTIONS,
    FORMAT_VERSION,
    assign_splits,
    chunk_dataset,
    save_atomically,
)
from seisbind.data.scenarios.openfwi import _features, openfwi_row

OPENFWI_DT = 0.001


def find_pairs(folder: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Matching ``(data*.npy, model*.npy)`` files in ``folder``, ordered by their number."""
    folder = Path(folder)
    data = {re.sub(r"^data", "", p.stem): p for p in folder.glob("data*.npy")}
    model = {re.sub(r"^model", "", p.stem): p for p in folder.glob("model*.npy")}
    unmatched = sorted(set(data) ^ set(model))
    if unmatched:
        raise ValueError(f"{folder}: data/model files without a partner for suffix(es) {unmatched}")
    if not data:
        raise FileNotFoundError(f"no OpenFWI data*.npy/model*.npy pairs in {folder}")

    def key(suffix: str):
        digits = re.findall(r"\d+", suffix)
        return (int(digits[-1]) if digits else -1, suffix)

    return [(data[s], model[s]) for s in sorted(data, key=key)]


def open_pair(data_path: Path, model_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one pair of files and check that their shapes belong together."""
    # allow_pickle=False: a .npy from elsewhere must not run code when opened.
    data = np.load(data_path, mmap_mode="r", allow_pickle=False)
    model = np.load(model_path, mmap_mode="r", allow_pickle=False)
    if data.ndim != 4 or model.ndim != 4 or model.shape[1] != 1:
        raise ValueError(
            f"{data_path.name}/{model_path.name}: expected data (N, shots, time, receivers) and "
            f"model (N, 1, H, W), got {data.shape} and {model.shape}"
        )
    if len(data) != len(model):
        raise ValueError(f"{data_path.name} has {len(data)} samples but {model_path.name} has {len(model)}")
    return data, model


def read_pairs_of(data_path: Path, model_path: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(gathers (5, T, R), velocity (H, W))`` per sample of one file pair, checking values."""
    data, model = open_pair(data_path, model_path)
    for i in range(len(data)):
        gathers, velocity = np.asarray(data[i], np.float32), np.asarray(model[i, 0], np.float32)
        if not (np.all(np.isfinite(gathers)) and np.all(np.isfinite(velocity))):
            raise ValueError(f"{data_path.name}/{model_path.name} sample {i} holds NaN or infinite values")
        yield gathers, velocity


def import_openfwi(npy_folder: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Convert OpenFWI ``.npy`` pairs into the on-disk paired dataset ``seisbind generate`` writes.

    One chunk per OpenFWI file pair. Unlabelled OpenFWI samples get family ``"unknown"``; splits
    are by sample, as for geologies.
    """
    out = Path(out_dir)
    if (out / "generation.json").exists():
        raise FileExistsError(f"{out} already holds a dataset; choose another output folder")
    pairs = find_pairs(npy_folder)
    opened = [open_pair(d, m) for d, m in pairs]  # every file checked before any work
    layouts = {(d.shape[1:], m.shape[1:]) for d, m in opened}
    if len(layouts) > 1:
        raise ValueError(f"{npy_folder}: files of different layouts {sorted(layouts)}; import one family at a time")
    sizes = [len(d) for d, _ in opened]
    if len(set(sizes[:-1])) > 1:
        raise ValueError(f"{npy_folder}: all files but the last must hold the same number of samples, got {sizes}")
    n_total, per_file = sum(sizes), sizes[0]
    n_src, n_t, n_rec = opened[0][0].shape[1:]
    features = _features(opened[0][1].shape[-1], n_rec, n_src, n_t)
    splits = assign_splits(n_total, seed)
    (out / "chunks").mkdir(parents=True)
    for k, (data_path, model_path) in enumerate(tqdm(pairs, desc="OpenFWI files", unit="file")):
        rows = []
        for i, (gathers, velocity) in enumerate(read_pairs_of(data_path, model_path)):
            gid = k * per_file + i
            rows.append({**openfwi_row(velocity, gathers, gid, {}, 1.0 / OPENFWI_DT), "split": str(splits[gid])})
        save_atomically(chunk_dataset(rows, features), out / "chunks" / f"chunk-{k:05d}")
    plan = {
        "format_version": FORMAT_VERSION,
        "scenario": "openfwi",
        "imported_from": str(Path(npy_folder).resolve()),
        "num_geologies": n_total,
        "seed": seed,
        "chunk_size": per_file,
        "split_fractions": list(DEFAULT_SPLIT_FRACTIONS),
    }
    (out / "generation.json").write_text(json.dumps(plan, indent=2))  # written last: marks completion
    return out


def export_openfwi(dataset_dir: str | os.PathLike, out_folder: str | os.PathLike, split: str, per_file: int = 500) -> list[Path]:
    """Write one split of an ``openfwi`` dataset as OpenFWI ``data<k>.npy``/``model<k>.npy`` pairs."""
    from seisbind.data.dataset import load_paired

    ds = load_paired(dataset_dir, split, decode=False)
    if len(ds) and ds[0]["scenario"] != "openfwi":
        raise ValueError(f"{dataset_dir} holds scenario {ds[0]['scenario']!r}; only openfwi exports to OpenFWI files")
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    ds = ds.with_format("numpy", columns=["waveforms", "image"])
    written = []
    for k, start in enumerate(range(0, len(ds), per_file), start=1):
        part = ds[start : start + per_file]
        data = np.ascontiguousarray(part["waveforms"][:, 0].transpose(0, 2, 3, 1), dtype=np.float32)
        model = np.ascontiguousarray(part["image"][:, None], dtype=np.float32)
        for name, arr in ((f"data{k}.npy", data), (f"model{k}.npy", model)):
            tmp = out / f".{name}.tmp"
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            os.replace(tmp, out / name)
            written.append(out / name)
    return written
