"""Reading and writing OpenFWI's ``.npy`` pairs, so its public files train here directly.

OpenFWI ships each family as pairs of files ``data<k>.npy`` (N, 5, 1000, 70) float32 shot
gathers and ``model<k>.npy`` (N, 1, 70, 70) float32 velocity maps (N = 500 in the release).
Files are memory-mapped on read, so a folder larger than RAM imports chunk by chunk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np

from seisbind.data.generate import DEFAULT_SPLIT_FRACTIONS, FORMAT_VERSION, SPLITS, save_atomically, assign_splits
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


def read_pairs(folder: str | os.PathLike) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(gathers (5, T, R), velocity (H, W))`` per sample, checking shapes and values."""
    for data_path, model_path in find_pairs(folder):
        data, model = open_pair(data_path, model_path)
        for i in range(len(data)):
            gathers, velocity = np.asarray(data[i], np.float32), np.asarray(model[i, 0], np.float32)
            if not (np.all(np.isfinite(gathers)) and np.all(np.isfinite(velocity))):
                raise ValueError(f"{data_path.name}/{model_path.name} sample {i} holds NaN or infinite values")
            yield gathers, velocity


def import_openfwi(npy_folder: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Convert OpenFWI ``.npy`` pairs into the on-disk paired dataset ``seisbind generate`` writes.

    Unlabelled OpenFWI samples get family ``"unknown"``; splits are by sample, as for geologies.
    """
    out = Path(out_dir)
    if (out / "dataset").exists():
        raise FileExistsError(f"{out / 'dataset'} exists; choose another output folder")
    opened = [open_pair(d, m) for d, m in find_pairs(npy_folder)]  # every file checked before any work
    layouts = {(d.shape[1:], m.shape[1:]) for d, m in opened}
    if len(layouts) > 1:
        raise ValueError(f"{npy_folder}: files of different layouts {sorted(layouts)}; import one family at a time")
    n_total = sum(len(d) for d, _ in opened)
    n_src, n_t, n_rec = opened[0][0].shape[1:]
    size = opened[0][1].shape[-1]
    splits = assign_splits(n_total, seed)
    features = _features(size, n_rec, n_src, n_t)

    def rows():
        for gid, (gathers, velocity) in enumerate(read_pairs(npy_folder)):
            row = openfwi_row(velocity, gathers, gid, {}, 1.0 / OPENFWI_DT)
            row["split"] = str(splits[gid])
            yield row

    out.mkdir(parents=True, exist_ok=True)
    cache = out / ".cache"  # from_generator's Arrow cache: kept beside the output, removed after
    try:
        full = datasets.Dataset.from_generator(rows, features=features, cache_dir=str(cache))
    except datasets.exceptions.DatasetGenerationError as err:
        shutil.rmtree(cache, ignore_errors=True)
        raise (err.__cause__ or err) from None  # the file problem, not the Arrow wrapper
    split_col = np.asarray(full["split"])
    dd = datasets.DatasetDict({s: full.select(np.flatnonzero(split_col == s)) for s in SPLITS})
    plan = {
        "format_version": FORMAT_VERSION,
        "scenario": "openfwi",
        "imported_from": str(Path(npy_folder).resolve()),
        "num_geologies": n_total,
        "seed": seed,
        "split_fractions": list(DEFAULT_SPLIT_FRACTIONS),
    }
    (out / "generation.json").write_text(json.dumps(plan, indent=2))
    save_atomically(dd, out / "dataset")
    del full, dd
    shutil.rmtree(cache, ignore_errors=True)
    return out / "dataset"


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
