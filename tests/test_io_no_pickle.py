"""Issue 13: a crafted "waveform" that ObsPy's format guessing would unpickle (and so run code from)
is refused by every path that reads waveform files; real miniSEED and SAC files still read."""

import gzip
import importlib.metadata
import os
import pickle
import shlex

import numpy as np
import obspy
import pandas as pd
import pyarrow as pa
import pytest

from seisbind.cli import main
from seisbind.io.batch import InputError
from seisbind.io.manifest import convert_manifest
from seisbind.io.obspy_streams import WAVEFORM_FORMATS, detect_waveform_format, read_stream
from seisbind.search.index_cli import load_query_waveform


def payload(marker) -> bytes:
    """A pickle that ObsPy's PICKLE check (``b"obspy.core.stream" in first 100 bytes``) loads: it runs ``touch marker``."""

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {shlex.quote(str(marker))}",))

    return pickle.dumps(("obspy.core.stream", Exploit()), protocol=2)


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.mseed"
    path.write_bytes(payload(marker))
    yield path, marker
    assert not marker.exists(), "the pickled payload ran"


def test_the_payload_is_live_under_obspys_own_format_guessing(tmp_path):
    # Guards against a vacuous test: ObsPy's PICKLE check really runs it (as obspy.read(path) did).
    from obspy.core.stream import _is_pickle

    marker = tmp_path / "RAN"
    path = tmp_path / "probe.mseed"
    path.write_bytes(payload(marker))
    _is_pickle(str(path))
    assert marker.exists()


def test_the_reader_refuses_the_payload_with_one_line(evil):
    path, marker = evil
    assert detect_waveform_format(path) is None
    with pytest.raises(InputError) as err:
        read_stream(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "MSEED, SAC" in msg and "PICKLE" not in msg
    with pytest.raises(InputError):
        read_stream(path, headonly=True)  # the manifest's cheap station count
    for name in ("MSEED", "mseed", "SAC"):  # an explicit allowed format reads it as that, never unpickles
        with pytest.raises(InputError, match=r"evil\.mseed: ObsPy cannot read it as (MSEED|SAC)"):
            read_stream(path, format=name)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["PICKLE", "pickle", " Pickle ", "JSON", ""])
def test_formats_outside_the_allow_list_are_refused_before_reading(evil, name):
    path, _ = evil
    with pytest.raises(InputError, match=r"evil\.mseed: waveform format .* is not read") as err:
        read_stream(path, format=name)
    assert "\n" not in str(err.value) and "allowed: MSEED" in str(err.value)
    if name.strip().upper() == "PICKLE":
        assert "runs code" in str(err.value)


def test_compressed_payload_is_refused_and_never_unpacked_into_guessing(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.mseed.gz"  # ObsPy unpacks .gz and would guess the format of what is inside
    path.write_bytes(gzip.compress(payload(marker)))
    with pytest.raises(InputError, match="ObsPy cannot read it as a waveform format seisbind accepts"):
        read_stream(path)
    with pytest.raises(InputError, match="cannot read it as MSEED"):
        read_stream(path, format="MSEED")  # unpacked, but read as miniSEED only
    assert not marker.exists()


def test_embed_waveforms_cli_refuses_the_payload(evil, tmp_path, capsys):
    path, marker = evil
    out = tmp_path / "x.parquet"
    assert main(["embed-waveforms", "--waveforms", str(path), "--model", "tiny", "--out", str(out), "--no-progress"]) != 0
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("skipped file")]
    assert str(path) in line and "MSEED, SAC" in line
    assert not marker.exists()
    # a folder holding it: the same
    assert main(["embed-waveforms", "--waveforms", str(tmp_path), "--model", "tiny", "--out", str(out), "--no-progress"]) != 0
    with pytest.raises(SystemExit) as stop:  # --format PICKLE: refused by the argument parser
        main(["embed-waveforms", "--waveforms", str(path), "--model", "tiny", "--out", str(out), "--format", "pickle"])
    assert stop.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_index_query_refuses_the_payload(evil, tmp_path, capsys):
    from seisbind.io.encode import config_sha256
    from seisbind.models import create_model
    from seisbind.search.faiss_index import EmbeddingIndex

    path, marker = evil
    with pytest.raises(InputError, match=r"evil\.mseed: ObsPy cannot read it as a waveform format"):
        load_query_waveform(str(path), 100.0, 30.0, "refuse", None)
    model = create_model("tiny")
    emb = np.random.default_rng(0).standard_normal((4, model.config.embed_dim)).astype(np.float32)
    meta = pa.table({"id": [f"g{i}" for i in range(4)], "modality": ["image"] * 4})
    EmbeddingIndex.build(emb / np.linalg.norm(emb, axis=1, keepdims=True), meta, config_sha256(model),
                         kind="flat", use_gpu=False).save(tmp_path / "ix")  # fmt: skip
    capsys.readouterr()
    rc = main(["index", "query", "--index", str(tmp_path / "ix"), "--model", "tiny", "--waveform", str(path)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err and err.startswith("seisbind index: error:") and str(path) in err
    assert not marker.exists()


def test_manifest_row_pointing_at_the_payload_fails_alone(evil, tmp_path):
    path, marker = evil
    np.save(tmp_path / "a.npy", np.zeros((16, 16), np.float32))
    obspy.read().write(str(tmp_path / "rjob.mseed"), format="MSEED")
    manifest = tmp_path / "pairs.csv"
    pd.DataFrame([{"image_path": "a.npy", "waveform_path": "rjob.mseed", "pair_id": "ok"},
                  {"image_path": "a.npy", "waveform_path": path.name, "pair_id": "evil"}]).to_csv(manifest, index=False)  # fmt: skip
    report = convert_manifest(manifest, tmp_path / "ds", window_seconds=10, progress=False, log=None)
    assert report.converted == 1
    (failure,) = report.failures
    assert failure.item == "row 1 (evil)" and "\n" not in failure.reason and "MSEED, SAC" in failure.reason
    # a manifest of the payload alone converts nothing, and says why
    only = tmp_path / "only.csv"
    pd.DataFrame([{"image_path": "a.npy", "waveform_path": path.name}]).to_csv(only, index=False)
    with pytest.raises(ValueError, match="no row could be converted"):
        convert_manifest(only, tmp_path / "ds2", window_seconds=10, progress=False, log=None)
    assert not marker.exists()


def test_miniseed_and_sac_written_by_obspy_are_detected_and_read(tmp_path):
    st = obspy.read()
    for tr in st:
        tr.data = tr.data.astype(np.int32)
    st.write(str(tmp_path / "rjob.mseed"), format="MSEED")
    assert detect_waveform_format(tmp_path / "rjob.mseed") == "MSEED"
    back = read_stream(tmp_path / "rjob.mseed")
    assert [tr.id for tr in back] == [tr.id for tr in st]
    np.testing.assert_array_equal(back[0].data, st[0].data)
    assert all(tr.stats._format == "MSEED" for tr in back)

    tr = st[0].copy()
    tr.data = tr.data.astype(np.float32)
    sac = tmp_path / "rjob.EHZ.sac"
    tr.write(str(sac), format="SAC")
    assert detect_waveform_format(sac) == "SAC"
    (got,) = read_stream(sac)
    assert got.id == tr.id and got.stats._format == "SAC"
    np.testing.assert_array_equal(got.data, tr.data)
    (got,) = read_stream(sac, format="sac")  # explicit, any case
    assert got.stats._format == "SAC"
    # a gzipped miniSEED reads when its format is given (ObsPy unpacks it), not by guessing
    gz = tmp_path / "rjob.mseed.gz"
    gz.write_bytes(gzip.compress((tmp_path / "rjob.mseed").read_bytes()))
    assert len(read_stream(gz, format="MSEED")) == 3
    with pytest.raises(InputError, match="give the format"):
        read_stream(gz)


def test_file_names_are_not_globbed(tmp_path):
    st = obspy.read()
    st.write(str(tmp_path / "a1.mseed"), format="MSEED")
    st[:1].write(str(tmp_path / "a[1].mseed"), format="MSEED")  # as a glob pattern, "a[1]" matches "a1"
    assert len(read_stream(tmp_path / "a[1].mseed")) == 1


def test_the_allow_list_matches_obspys_registered_checks_and_has_no_pickle():
    assert "PICKLE" not in WAVEFORM_FORMATS and "MSEED" in WAVEFORM_FORMATS and "SAC" in WAVEFORM_FORMATS
    for name, target in WAVEFORM_FORMATS.items():
        eps = importlib.metadata.entry_points(group=f"obspy.plugin.waveform.{name}")
        (ep,) = [e for e in eps if e.name == "isFormat"]
        assert ep.value == target, name
