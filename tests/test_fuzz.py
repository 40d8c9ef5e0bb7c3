"""Property-based fuzzing of the public API and file readers (Hypothesis, issue 13).

Every case must end in a result whose values are all finite, or in a ``ValueError`` (our
``InputError`` and ``CheckpointError`` are ValueErrors; a missing file is ``FileNotFoundError``):
nothing else, no NaN, no file written outside the test's folder. CI runs a few dozen examples per
property with a fixed seed (``tests/conftest.py``); ``pytest tests/test_fuzz.py --fuzz-long`` runs
thousands. Counts and outcomes are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from seisbind.models import create_model  # noqa: E402

ALLOWED = (ValueError, FileNotFoundError)
MODEL = create_model("tiny", image={"dynamic_img_size": True}).eval()

DTYPES = [np.float32, np.float64, np.float16, np.int16, np.int32, np.uint8, np.bool_]
EXTREMES = [0.0, 1e-40, -1e-30, 3e38, -3e38, 1e-9, 1.0, 1e300]


@st.composite
def arrays(draw, shape):
    """Arrays of any of DTYPES, with NaN, inf and extreme magnitudes among float elements."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    # No subnormal floats: seisbind's CLI flushes them (torch.set_flush_denormal), a process-wide
    # setting under which Hypothesis cannot make them; 1e-40 among EXTREMES stands for them.
    elements = hnp.from_dtype(dtype, allow_subnormal=False) if dtype.kind == "f" else hnp.from_dtype(dtype)
    if dtype.kind == "f":
        extremes = [v for v in EXTREMES if abs(v) <= np.finfo(dtype).max]
        elements = st.one_of(elements, st.sampled_from(extremes))
    return draw(hnp.arrays(dtype, draw(shape), elements=elements))



def _finite_or_refused(call):
    try:
        out = call()
    except ALLOWED:
        return None
    assert torch.isfinite(out).all(), "a result with non-finite values"
    return out


@given(arrays(hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=70)))
def test_encode_image_is_finite_or_refused(array):
    with torch.no_grad():
        _finite_or_refused(lambda: MODEL.encode_image(array))


@given(arrays(st.tuples(st.integers(1, 2), st.integers(0, 5), st.sampled_from([1, 3, 4]), st.integers(0, 400))),
       st.booleans())
def test_encode_waveform_is_finite_or_refused(array, with_mask):
    mask = None
    if with_mask and array.shape[1] > 0:
        mask = np.ones(array.shape[:2], bool)
        mask[:, 0] = False
    with torch.no_grad():
        _finite_or_refused(lambda: MODEL.encode_waveform(array, station_mask=mask))


@given(st.binary(max_size=2048))
def test_waveform_files_of_random_bytes_are_refused(tmp_path_factory, blob):
    from seisbind.io.obspy_streams import read_stream

    path = tmp_path_factory.mktemp("w") / "x.mseed"
    path.write_bytes(blob)
    try:
        read_stream(str(path))  # a few random byte strings are valid records of some format
    except ALLOWED:
        pass


@given(st.integers(0, 4096))
def test_truncated_miniseed_is_read_or_refused(tmp_path_factory, cut):
    import obspy

    from seisbind.io.obspy_streams import read_stream

    folder = tmp_path_factory.mktemp("t")
    full = folder / "full.mseed"
    obspy.read().write(str(full), format="MSEED")
    part = folder / "part.mseed"
    part.write_bytes(full.read_bytes()[:cut])
    try:
        read_stream(str(part))
    except ALLOWED:
        pass


@given(st.binary(max_size=512))
def test_npy_files_of_random_bytes_are_refused(tmp_path_factory, blob):
    from seisbind.io.npy import read_npy

    path = tmp_path_factory.mktemp("n") / "x.npy"
    path.write_bytes(b"\x93NUMPY" + blob)
    try:
        arr = read_npy(path, mmap=False)
    except ALLOWED:
        return
    assert arr.size > 0


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_subnormal=False) | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)


@given(json_values)
def test_model_configs_of_any_json_are_built_or_refused(value):
    from seisbind.models.config import SeisBindConfig

    try:
        SeisBindConfig.from_dict(value if isinstance(value, dict) else {"image": value})
    except ALLOWED:
        pass


@given(st.dictionaries(st.sampled_from(["lr", "batch_size", "max_steps", "warmup_steps", "threads", "seed",
                                        "station_drop_prob", "noise_level", "model_overrides", "data"]),
                       json_values, max_size=4))
def test_train_configs_are_loaded_or_refused(values):
    from seisbind.training.config import make_config

    try:
        make_config(values)
    except ALLOWED:
        pass


@given(json_values)
def test_index_folders_with_any_index_json_are_refused(tmp_path_factory, value):
    from seisbind.search.faiss_index import EmbeddingIndex

    folder = tmp_path_factory.mktemp("ix")
    (folder / "index.json").write_text(json.dumps(value))
    (folder / "index.faiss").write_bytes(b"\x00" * 16)
    (folder / "metadata.parquet").write_bytes(b"PAR1")
    with pytest.raises(ALLOWED):
        EmbeddingIndex.load(folder)


@given(st.binary(max_size=1024), st.sampled_from(["x.mseed", "x.sac", "x.npy", "x.sgy"]))
def test_the_cli_on_random_files_exits_cleanly_and_writes_only_its_output(tmp_path_factory, blob, name):
    """embed-waveforms / index-free paths on random bytes: exit 0, 1 or 2 with no traceback, and no
    file anywhere but the --out path (nothing beside it, nothing in the working folder)."""
    import os
    import warnings

    from seisbind.cli import main

    folder = tmp_path_factory.mktemp("cli")
    src = folder / "in"
    src.mkdir()
    (src / name).write_bytes(blob)
    out = folder / "out" / "w.parquet"
    before = set(folder.rglob("*"))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(["embed-waveforms", "--waveforms", str(src / name), "--model", "tiny", "--out", str(out),
                         "--no-progress"])
    finally:
        os.chdir(cwd)
    assert code in (0, 1, 2)
    new = {p for p in set(folder.rglob("*")) - before if p.is_file()}
    assert new <= {out}, new


@given(st.binary(max_size=4096))
def test_segy_files_of_random_bytes_are_refused(tmp_path_factory, blob):
    from seisbind.io.segy import SegySurvey

    path = tmp_path_factory.mktemp("s") / "x.sgy"
    path.write_bytes(blob)
    try:
        SegySurvey(path)
    except ALLOWED:
        pass


manifest_cells = st.one_of(st.text(max_size=12), st.sampled_from(["x.npy", "missing.mseed", "-1", "nan", "1e9", ""]))


@given(st.lists(st.dictionaries(st.sampled_from(["pair_id", "image_path", "waveform_path", "waveform_start",
                                                 "waveform_sampling_rate", "family", "split"]),
                                manifest_cells, min_size=1, max_size=7), min_size=0, max_size=4))
def test_malformed_manifests_convert_or_are_refused_writing_only_their_folder(tmp_path_factory, rows):
    import csv

    from seisbind.io.manifest import convert_manifest

    folder = tmp_path_factory.mktemp("m")
    np.save(folder / "x.npy", np.ones((64, 64), np.float32))
    names = sorted({k for r in rows for k in r}) or ["pair_id"]
    with open(folder / "m.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    before = {p for p in folder.rglob("*")}
    try:
        convert_manifest(folder / "m.csv", folder / "out", progress=False, log=None)
    except ALLOWED:
        pass
    new = {p for p in set(folder.rglob("*")) - before if p.is_file()}
    assert all(folder / "out" in p.parents for p in new), new
