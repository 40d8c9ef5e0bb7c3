"""ObsPy streams to model windows: the bundled real record, miniSEED round trip, component rules,
resampling, and the refusals (gaps, mismatched rates) naming the file."""

import json
import os

import numpy as np
import obspy
import pytest
import torch
from obspy.core.inventory import Channel, Inventory, Network, Station

from seisbind.io.batch import InputError
from seisbind.io.components import choose_components
from seisbind.io.embeddings import EmbeddingWriter, embedding_matrix, read_embeddings
from seisbind.io.encode import BatchEncoder
from seisbind.io.obspy_streams import (
    check_sampling_rate,
    iter_windows,
    prepare_stream,
    read_stream,
    resample_array,
    window_bounds,
    window_fields,
)
from seisbind.models.factory import create_model


def renamed(stream, codes):
    """A copy of ``stream`` with its channels' component letters replaced by ``codes``."""
    out = stream.copy()
    for tr, code in zip(out, codes):
        tr.stats.channel = tr.stats.channel[:-1] + code
    return out


def test_obspy_example_goes_through_the_waveform_path_and_embeds():
    st = obspy.read()  # real BW.RJOB..EH[ZNE], 3000 samples at 100 Hz (29.99 s)
    prepared = prepare_stream(st, 100.0, source="example")
    (item,) = iter_windows(prepared)  # shorter than 30 s but over half of it: embedded whole
    assert item.data.shape == (1, 3, 3000)
    np.testing.assert_array_equal(item.data[0], np.stack([st.select(component=c)[0].data for c in "ZNE"]).astype(np.float32))
    m = item.meta
    assert (m["network"], m["station"], m["channel"], m["components"], m["frame"], m["filled"]) == ("BW", "RJOB", "EH?", "ZNE", "ZNE", "")
    assert m["starttime"] == st[0].stats.starttime.ns and m["n_samples"] == 3000

    model = create_model("tiny").eval()
    rows = []

    class Sink:
        def add(self, ids, metas, emb):
            rows.extend(zip(ids, metas, emb))

    enc = BatchEncoder(model, "waveform", Sink(), batch_size=4)
    enc.add(item.data, item.id, item.meta)
    enc.close()
    (_, _, emb), = rows
    with torch.no_grad():
        expected = model.encode_waveform(torch.from_numpy(item.data[None]))[0].numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert abs(np.linalg.norm(emb) - 1) < 1e-5


def test_miniseed_written_by_obspy_round_trips_into_windows(tmp_path):
    st = obspy.read()
    for tr in st:
        tr.data = tr.data.astype(np.int32)  # STEIM2 stores integers exactly
    path = tmp_path / "rjob.mseed"
    st.write(str(path), format="MSEED", encoding="STEIM2")
    back = read_stream(path)
    prepared = prepare_stream(back, 100.0, source=str(path))
    items = list(iter_windows(prepared, window_seconds=10, stride_seconds=5))
    assert [window_bounds(3000, 1001, 500)] == [[(0, 1001), (500, 1501), (1000, 2001), (1500, 2501), (1999, 3000)]]
    assert len(items) == 5
    raw = np.stack([st.select(component=c)[0].data for c in "ZNE"]).astype(np.float32)
    t0 = st[0].stats.starttime
    for item, (a, b) in zip(items, window_bounds(3000, 1001, 500)):
        np.testing.assert_array_equal(item.data[0], raw[:, a:b])
        assert item.meta["starttime"] == (t0 + a / 100).ns and item.meta["file"] == str(path)
        assert item.id.startswith(f"{path}|BW.RJOB..EH|")


def test_resampling_keeps_the_band_and_removes_what_would_alias():
    t = np.arange(4000) / 200.0
    slow, fast = np.sin(2 * np.pi * 3 * t), np.sin(2 * np.pi * 70 * t)  # 70 Hz would alias at 100 Hz
    st = obspy.Stream([obspy.Trace((slow + fast).astype(np.float64), {"station": "S", "channel": f"HH{c}", "sampling_rate": 200.0})
                       for c in "ZNE"])  # fmt: skip
    (rec,) = prepare_stream(st, 100.0).records
    assert rec.sampling_rate == 100.0 and rec.source_sampling_rate == 200.0 and rec.npts == 2000
    expected = np.sin(2 * np.pi * 3 * np.arange(2000) / 100.0)
    inner = slice(200, -200)  # away from the filter's edges
    assert np.max(np.abs(rec.data[0, inner] - expected[inner])) < 0.02


def test_window_lengths_must_be_finite():
    from seisbind.io.obspy_streams import window_samples

    assert window_samples(30.0, 100.0) == 3001 and window_samples(0.0, 100.0) == 0
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="window_seconds must be a finite number >= 0"):
            window_samples(bad, 100.0)


def test_one_rate_policy_for_streams_and_arrays():
    """Upsampling beyond MAX_UPSAMPLING (2x) is refused on every path unless allowed; downsampling
    and 2x pass; the original rate is kept on the record; arrays of any leading shape resample."""
    def stream(rate, seconds=40):
        n = int(seconds * rate)
        return obspy.Stream([obspy.Trace(np.sin(np.arange(n) / rate).astype(np.float64),
                                         {"network": "CH", "station": "BALST", "channel": f"LH{c}", "sampling_rate": rate})
                             for c in "ZNE"])  # fmt: skip

    with pytest.raises(InputError, match=r"a 1 Hz record would be upsampled 100x .* pass --max-upsampling 100"):
        prepare_stream(stream(1.0, 400), 100.0, source="balst.mseed")
    with pytest.raises(InputError, match="upsampled 2.01x"):
        check_sampling_rate(49.75, 100.0, "x")
    (rec,) = prepare_stream(stream(1.0, 400), 100.0, max_upsampling=100).records  # forced
    assert rec.source_sampling_rate == 1.0 and rec.sampling_rate == 100.0
    assert prepare_stream(stream(50.0), 100.0).records[0].source_sampling_rate == 50.0  # 2x is allowed
    for bad in (0.0, -5.0, float("nan")):
        with pytest.raises(InputError, match="cannot be resampled"):
            check_sampling_rate(bad, 100.0, "x")
    x = np.random.default_rng(0).standard_normal((4, 3, 1001)).astype(np.float32)  # (stations, channels, time)
    y = resample_array(x, 500.0, 100.0)
    assert y.shape == (4, 3, 201)
    np.testing.assert_allclose(y[2, 1], resample_array(x[2, 1][None], 500.0, 100.0)[0])
    with pytest.raises(InputError, match="upsampled 5x"):
        resample_array(x, 20.0, 100.0)


def test_component_rules_z12_and_zrt():
    assert choose_components("ZNE").label == "ZNE"
    z12 = choose_components("Z12")
    assert (z12.label, z12.frame) == ("Z12", "Z12")
    zrt = choose_components("ZRT")
    assert (zrt.label, zrt.frame) == ("ZRT", "ZRT")
    assert choose_components("ZNE12").label == "ZNE"  # a complete N/E pair wins
    assert choose_components("ZN12").label == "Z12"  # a complete pair beats a partial one
    with pytest.raises(InputError, match="different sets"):
        choose_components("ZN2")
    with pytest.raises(InputError, match="E missing"):
        choose_components("ZN", missing="refuse", where="f.mseed: XX.S..HH?")
    assert choose_components("ZN").filled == "E"
    with pytest.raises(InputError, match="no seismometer components"):
        choose_components("H")

    st = obspy.read()
    raw = {c: st.select(component=c)[0].data.astype(np.float32) for c in "ZNE"}
    # Z12 with unknown orientation: 1 goes to N, 2 to E, and the frame says so.
    (rec,) = prepare_stream(renamed(st, "Z12"), 100.0).records
    assert (rec.choice.label, rec.frame, rec.rotated) == ("Z12", "Z12", False)
    np.testing.assert_array_equal(rec.data, np.stack([raw["Z"], raw["N"], raw["E"]]))
    # Z12 with known orientation (1 points east, 2 points south): rotated to true ZNE.
    chans = [Channel(f"EH{c}", "", 0, 0, 0, 0, azimuth=az, dip=dip, sample_rate=100)
             for c, az, dip in (("Z", 0, -90), ("1", 90, 0), ("2", 180, 0))]  # fmt: skip
    inv = Inventory([Network("BW", [Station("RJOB", 0, 0, 0, channels=chans)])])
    (rec,) = prepare_stream(renamed(st, "Z12"), 100.0, inventory=inv).records
    assert rec.rotated and rec.frame == "ZNE"
    np.testing.assert_allclose(rec.data[1], -raw["E"], atol=1e-3)  # north = -(south-pointing 2)
    np.testing.assert_allclose(rec.data[2], raw["N"], atol=1e-3)  # east = the east-pointing 1
    # ZRT: rotated back to N/E when every trace knows its back azimuth, else kept as R -> N, T -> E.
    rt = renamed(st, "ZRT")
    (rec,) = prepare_stream(rt, 100.0).records  # the example's traces carry back_azimuth 100
    n, e = obspy.signal.rotate.rotate_rt_ne(raw["N"], raw["E"], 100.0)
    assert rec.rotated and rec.frame == "ZNE"
    np.testing.assert_allclose(rec.data[1:], np.stack([n, e]), atol=1e-3)
    for tr in rt:
        tr.stats.pop("back_azimuth")
    (rec,) = prepare_stream(rt, 100.0).records
    assert (rec.frame, rec.rotated) == ("ZRT", False)
    np.testing.assert_array_equal(rec.data[1], raw["N"])


def test_missing_component_is_filled_or_refused():
    st = obspy.read().select(component="[ZN]")
    (rec,) = prepare_stream(st, 100.0).records
    assert rec.choice.filled == "E" and not rec.data[2].any()  # dead: the model copies a live channel
    with pytest.raises(InputError, match=r"rj\.mseed: BW\.RJOB\.\.EH\?: component\(s\) E missing"):
        prepare_stream(st, 100.0, missing="refuse", source="rj.mseed")


def test_gaps_are_refused_filled_or_split():
    st = obspy.read()
    z = st.select(component="Z")[0]
    t0 = z.stats.starttime
    gappy = st.copy()
    gappy.remove(gappy.select(component="Z")[0])
    gappy += z.slice(t0, t0 + 10) + z.slice(t0 + 12, t0 + 30)
    with pytest.raises(InputError, match=r"gappy\.mseed: BW\.RJOB\.\.EHZ: 1 gap.*gaps='fill'"):
        prepare_stream(gappy, 100.0, source="gappy.mseed")
    (filled,) = prepare_stream(gappy, 100.0, gaps="fill").records
    assert filled.npts == 3000
    parts = prepare_stream(gappy, 100.0, gaps="split").records
    assert [p.npts for p in parts] == [1001, 1800] and parts[1].start == t0 + 12
    # Windows never span the gap: 5 s windows come from each part separately.
    items = list(iter_windows(prepare_stream(gappy, 100.0, gaps="split"), 5.0))
    assert all(not (i.meta["starttime"] < (t0 + 12).ns <= i.meta["endtime"]) for i in items)


def test_mismatched_rates_and_unreadable_files_name_the_file(tmp_path):
    st = obspy.read()
    st.select(component="N")[0].decimate(2)
    with pytest.raises(InputError, match=r"mixed\.mseed: BW\.RJOB\.\.EH\?: channels sampled at different rates \(EHE 100 Hz, EHN 50 Hz"):
        prepare_stream(st, 100.0, source="mixed.mseed")
    junk = tmp_path / "junk.mseed"
    junk.write_text("no waveforms here")
    with pytest.raises(InputError, match=r"junk\.mseed: ObsPy cannot read it"):
        read_stream(junk)
    with pytest.raises(InputError, match="no such file"):
        read_stream(tmp_path / "absent.mseed")
    with pytest.raises(InputError, match="URLs are not read"):
        read_stream("https://example.org/x.mseed")


def test_stream_grouping_gathers_stations_that_cover_each_window():
    st = obspy.read()
    other = st.copy()
    for tr in other:
        tr.stats.station = "RJOB2"
        tr.stats.starttime += 10.0
    prepared = prepare_stream(st + other, 100.0)
    assert [r.offset for r in prepared.records] == [0, 1000]
    items = list(iter_windows(prepared, window_seconds=10, stride_seconds=10, group="stream"))
    # 1001-sample windows at 0, 1000, 2000 and (end-aligned) 2999 of the 4000-sample span: only the
    # second lies inside both records.
    assert [i.meta["n_stations"] for i in items] == [1, 2, 1, 1]
    assert items[1].meta["station"] == "RJOB,RJOB2" and items[1].data.shape == (2, 3, 1001)
    raw = np.stack([st.select(component=c)[0].data for c in "ZNE"]).astype(np.float32)
    np.testing.assert_array_equal(items[1].data[0], raw[:, 1000:2001])
    np.testing.assert_array_equal(items[1].data[1], raw[:, :1001])  # the shifted copy's first 10 s
    assert items[3].meta["station"] == "RJOB2"


def test_embedding_writer_streams_rows_with_model_metadata(tmp_path):
    prepared = prepare_stream(obspy.read(), 100.0, source="ex")
    items = list(iter_windows(prepared, window_seconds=5))
    model = create_model("tiny").eval()
    out = tmp_path / "w.parquet"
    with EmbeddingWriter(out, window_fields(), "waveform", {"seisbind.model_config_sha256": "abc"}, rows_per_group=2) as w:
        enc = BatchEncoder(model, "waveform", w, batch_size=3)
        for it in items:
            enc.add(it.data, it.id, it.meta)
        enc.close()
        assert not out.exists()  # appears only when complete
    table, meta = read_embeddings(out)
    assert meta["model_config_sha256"] == "abc" and table.num_rows == len(items) == 6
    emb = embedding_matrix(table)
    assert emb.shape == (6, model.config.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert set(table.column("station").to_pylist()) == {"RJOB"}
    assert str(table.schema.field("starttime").type) == "timestamp[ns, tz=UTC]"


def test_embed_waveforms_cli_embeds_files_and_lists_failures(tmp_path, capsys):
    from seisbind.cli import main

    st = obspy.read()
    st.write(str(tmp_path / "rjob.mseed"), format="MSEED")
    (tmp_path / "notes.txt").write_text("not a waveform")
    out = tmp_path / "w.parquet"
    with pytest.warns(UserWarning, match="random"):
        rc = main(["embed-waveforms", "--waveforms", str(tmp_path), "--model", "tiny", "--out", str(out),
                   "--window-seconds", "10", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "notes.txt: ObsPy cannot read it" in err
    table, meta = read_embeddings(out)
    assert table.num_rows == 3 and meta["modality"] == "waveform"
    assert json.loads(meta["options"])["window_seconds"] == 10.0
    assert table.column("starttime").to_pylist()[0].timestamp() == st[0].stats.starttime.timestamp
    assert set(table.column("station").to_pylist()) == {"RJOB"}


def test_embed_waveforms_writes_nothing_when_every_input_fails(tmp_path, capsys):
    from seisbind.cli import main

    (tmp_path / "notes.txt").write_text("not a waveform")
    out = tmp_path / "w.parquet"
    with pytest.warns(UserWarning, match="random"):
        rc = main(["embed-waveforms", "--waveforms", str(tmp_path / "notes.txt"), "--model", "tiny", "--out", str(out),
                   "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "notes.txt: ObsPy cannot read it" in err and "was not written" in err
    assert not out.exists() and not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*tmp*"))


def test_a_killed_writers_temporary_file_is_cleaned_on_the_next_run(tmp_path):
    import subprocess
    import sys

    from seisbind.io.embeddings import remove_stale_temporaries

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".k0.parquet.tmp-{int(gone.stdout)}"  # a process that has exited
    live = tmp_path / f".k0.parquet.tmp-{os.getppid()}"  # a live process: a writer still at work
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    EmbeddingWriter(tmp_path / "k0.parquet", [], "waveform").abort()
    assert not stale.exists() and live.exists()
    assert remove_stale_temporaries(tmp_path / "k0.parquet") == []
