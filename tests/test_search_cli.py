"""Export round trip, index build/query from a miniSEED file and from ObsPy's real example, refusals."""

import json

import numpy as np
import obspy
import pytest
import torch

from seisbind.cli import main
from seisbind.data.dataset import load_paired
from seisbind.data.generate import generate
from seisbind.io.embeddings import embedding_matrix, read_embeddings
from seisbind.models import create_model
from seisbind.search.export import read_npy_export
from test_data_generate import TINY_QUAKE


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    generate(root / "data", "quake", 12, config={**TINY_QUAKE, "image_height": 64, "image_width": 64}, progress=False)
    torch.manual_seed(0)
    # A miniSEED query carries no coordinates: the array head then lays its stations on a line
    # station_spacing_m apart. At the data's own spacing that line is the exported geometry.
    spacing = (TINY_QUAKE["width_m"] - 2 * TINY_QUAKE["station_margin_m"]) / (TINY_QUAKE["n_stations"] - 1)
    create_model("tiny", waveform={"station_spacing_m": spacing}).save_pretrained(root / "model")
    assert main(["export", "--model", str(root / "model"), "--data", str(root / "data"), "--split", "train",
                 "--out", str(root / "train.parquet"), "--no-progress"]) == 0  # fmt: skip
    return root


def write_mseed(waveforms: np.ndarray, path, rate=100.0, drop=None, nan=False):
    st = obspy.Stream()
    for k, station in enumerate(waveforms):
        for c, comp in enumerate("ZNE"):
            if drop == comp:
                continue
            data = station[c].astype(np.float32).copy()
            if nan:
                data[10] = np.nan
            st.append(obspy.Trace(data, header={"network": "SB", "station": f"S{k:02d}", "channel": f"HH{comp}",
                                                "sampling_rate": rate, "starttime": obspy.UTCDateTime(2026, 1, 1)}))  # fmt: skip
    st.write(str(path), format="MSEED")


def test_export_round_trip_parquet_and_npy(setup):
    table, meta = read_embeddings(setup / "train.parquet")
    train = load_paired(setup / "data", "train")
    n, s = len(train), TINY_QUAKE["sources_per_geology"]
    assert table.num_rows == n * (1 + s)
    assert table.column("modality").to_pylist().count("waveform") == n * s
    assert meta["model_config_sha256"] and meta["weights"] == "pretrained"
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == len(ids)
    # the stored embedding of a waveform is what the model gives for that row's source
    emb = embedding_matrix(table)
    row = train[0]
    model = __import__("seisbind.models.joint", fromlist=["x"]).SeisBindModel.from_pretrained(setup / "model")
    with torch.no_grad():
        expected = model.encode_waveform(row["waveforms"][1][None], station_x_m=torch.as_tensor(row["station_x_m"])[None]).numpy()[0]
        no_coordinates = model.encode_waveform(row["waveforms"][1][None]).numpy()[0]
    got = emb[ids.index(f"train/geology-{row['geology_id']}/source-1")]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got, no_coordinates, atol=1e-5)  # the data's stations are that line
    assert table.column("vs30").to_pylist()[ids.index(f"train/geology-{row['geology_id']}/image")] == pytest.approx(row["vs30"])
    assert main(["export", "--model", str(setup / "model"), "--data", str(setup / "data"), "--split", "train",
                 "--out", str(setup / "train.npy"), "--no-progress"]) == 0  # fmt: skip
    arr, meta_table, npy_meta = read_npy_export(setup / "train.npy")
    np.testing.assert_allclose(arr, emb, atol=1e-6)
    assert meta_table.column("id").to_pylist() == ids and npy_meta["model_config_sha256"] == meta["model_config_sha256"]


def test_query_from_miniseed_finds_the_geology_it_came_from(setup, capsys):
    assert main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(setup / "ix")]) == 0
    row = load_paired(setup / "data", "train")[2]
    write_mseed(row["waveforms"][0].numpy(), setup / "q.mseed")
    capsys.readouterr()
    assert main(["index", "query", "--index", str(setup / "ix"), "--model", str(setup / "model"),
                 "--waveform", str(setup / "q.mseed"), "--k", "50", "--window-seconds", "2",
                 "--png", str(setup / "hits.png")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    # the query's score against its own geology equals the exported dot product (same embedding)
    table, _ = read_embeddings(setup / "train.parquet")
    emb, ids = embedding_matrix(table), table.column("id").to_pylist()
    own = emb[ids.index(f"train/geology-{row['geology_id']}/source-0")] @ emb[ids.index(f"train/geology-{row['geology_id']}/image")]
    line = next(ln for ln in out.splitlines() if f"train/geology-{row['geology_id']}/image" in ln)  # k covers all
    assert f"| {own:.3f} |" in line  # ObsPy file -> same array -> same embedding as the export
    assert (setup / "hits.png").read_bytes()[:4] == b"\x89PNG"


def test_obspy_bundled_real_example_queries(setup, capsys):
    path = setup / "rjob.mseed"
    obspy.read().write(str(path), format="MSEED")  # BW.RJOB..EH[ZNE], 30 s at 100 Hz, real data
    assert main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(setup / "ix2")]) == 0
    assert main(["index", "query", "--index", str(setup / "ix2"), "--model", str(setup / "model"),
                 "--waveform", str(path), "--k", "2"]) == 0  # fmt: skip
    assert "| 1 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kind, message",
    [("missing", "missing"), ("nan", "NaN"), ("rate", "upsampled 5x to the model's 100 Hz, more than the 2x allowed")],
)
def test_bad_query_files_get_clear_errors(setup, capsys, kind, message):
    main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(setup / "ix3")])
    w = load_paired(setup / "data", "train")[0]["waveforms"][0].numpy()
    path = setup / f"bad-{kind}.mseed"
    write_mseed(w, path, rate=20.0 if kind == "rate" else 100.0, drop="E" if kind == "missing" else None, nan=kind == "nan")
    capsys.readouterr()
    rc = main(["index", "query", "--index", str(setup / "ix3"), "--model", str(setup / "model"),
               "--waveform", str(path), "--window-seconds", "2", "--missing", "refuse"])  # fmt: skip
    assert rc == 2
    assert message in capsys.readouterr().err


def test_query_fills_a_missing_component_by_default(setup, capsys):
    """--missing defaults to fill, as embed-waveforms does: a file without E is queried, not refused."""
    main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(setup / "ix-fill")])
    write_mseed(load_paired(setup / "data", "train")[0]["waveforms"][0].numpy(), setup / "no-e.mseed", drop="E")
    capsys.readouterr()
    assert main(["index", "query", "--index", str(setup / "ix-fill"), "--model", str(setup / "model"),
                 "--waveform", str(setup / "no-e.mseed"), "--window-seconds", "2", "--k", "2"]) == 0  # fmt: skip
    assert "| 1 |" in capsys.readouterr().out


def test_every_index_option_has_help():
    import argparse

    from seisbind.cli import build_parser

    index = build_parser()._subparsers._group_actions[0].choices["index"]
    actions = index._subparsers._group_actions[0].choices
    assert set(actions) == {"build", "query"}
    undocumented = [(name, a.option_strings) for name, sub in actions.items() for a in sub._actions
                    if a.option_strings and not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]  # fmt: skip
    assert undocumented == []
    assert actions["query"].get_default("missing") == "fill"


T0 = obspy.UTCDateTime(2026, 1, 1)


def write_record(path, seconds=60.0, rate=100.0, stations=1, bump_at=40.0, seed=0):
    """A long record of noise with a distinctive burst at ``bump_at`` s on every station; returns its (stations, 3, n) data."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    data = rng.standard_normal((stations, 3, n)).astype(np.float32)
    t = np.arange(n) / rate
    data += (20 * np.exp(-(((t - bump_at - 1) / 0.3) ** 2)) * np.sin(2 * np.pi * 5 * t)).astype(np.float32)
    st = obspy.Stream()
    for k in range(stations):
        for c, comp in enumerate("ZNE"):
            st.append(obspy.Trace(data[k, c].copy(), header={"network": "SB", "station": f"S{k:02d}", "channel": f"HH{comp}",
                                                             "sampling_rate": rate, "starttime": T0}))  # fmt: skip
    st.write(str(path), format="MSEED")
    return data


def test_starttime_picks_the_query_window_of_a_long_record(setup, tmp_path):
    from seisbind.io.obspy_streams import prepare_stream, read_stream
    from seisbind.search.index_cli import load_query_waveform, query

    path = tmp_path / "long.mseed"
    data = write_record(path, stations=2)
    at40 = load_query_waveform(str(path), 100.0, 5.0, "fill", None, starttime=str(T0 + 40))
    np.testing.assert_array_equal(at40, data[:, :, 4000:4501])  # 5 s from 40 s: 501 samples, the burst inside
    assert np.abs(at40).max() > 10 > np.abs(load_query_waveform(str(path), 100.0, 5.0, "fill", None)).max()
    np.testing.assert_array_equal(load_query_waveform(str(path), 100.0, 5.0, "fill", None, endtime=str(T0 + 45)), at40)
    np.testing.assert_array_equal(
        load_query_waveform(str(path), 100.0, 5.0, "fill", None, starttime="2026-01-01T00:00:40", endtime="2026-01-01T00:00:42"),
        data[:, :, 4000:4201],
    )
    main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(tmp_path / "ix")])
    arr, _, hits, _ = query(str(tmp_path / "ix"), str(setup / "model"), waveform=str(path), k=2, window_seconds=5.0,
                            starttime="2026-01-01T00:00:40")  # fmt: skip
    np.testing.assert_array_equal(arr, data[:, :, 4000:4501])
    # a record resampled to the model's rate: the window equals that of the whole record resampled
    fast = tmp_path / "fast.mseed"
    write_record(fast, rate=250.0, seed=1)
    prepared = prepare_stream(read_stream(fast), 100.0).records[0]
    np.testing.assert_allclose(load_query_waveform(str(fast), 100.0, 5.0, "fill", None, starttime=str(T0 + 40)),
                               prepared.data[None, :, 4000:4501], rtol=0, atol=1e-5)  # fmt: skip


def test_a_query_time_outside_the_record_is_one_line_naming_its_span(setup, tmp_path, capsys):
    path = tmp_path / "long.mseed"
    write_record(path)
    main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(tmp_path / "ix")])
    base = ["index", "query", "--index", str(tmp_path / "ix"), "--model", str(setup / "model"), "--waveform", str(path),
            "--window-seconds", "5"]  # fmt: skip
    span = "which spans 2026-01-01T00:00:00.000000Z .. 2026-01-01T00:00:59.990000Z"
    for extra in (["--starttime", "2026-01-01T00:01:30"], ["--starttime", "2026-01-01T00:00:58"],
                  ["--endtime", "2025-12-31T23:59:59"]):  # fmt: skip
        capsys.readouterr()
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert span in err and len(err.strip().splitlines()) == 1, err
    for extra, message in ((["--starttime", "yesterday"], "--starttime 'yesterday' is not a time ObsPy reads"),
                           (["--starttime", "2026-01-01T00:00:10", "--endtime", "2026-01-01T00:00:05"], "is not after")):  # fmt: skip
        capsys.readouterr()
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_query_on_an_index_of_the_users_own_recordings_shows_stations_and_times(setup, tmp_path, capsys):
    from seisbind.search.answers import tile, waveform_traces
    from seisbind.search.index_cli import query

    path = tmp_path / "day.mseed"
    data = write_record(path, seconds=40.0, stations=2, bump_at=20.0)
    assert main(["embed-waveforms", "--waveforms", str(path), "--model", str(setup / "model"), "--out", str(tmp_path / "w.parquet"),
                 "--window-seconds", "10", "--group", "stream", "--no-progress"]) == 0  # fmt: skip
    assert main(["index", "build", "--embeddings", str(tmp_path / "w.parquet"), "--modality", "waveform",
                 "--out", str(tmp_path / "ix")]) == 0  # fmt: skip
    np.save(tmp_path / "section.npy", np.random.default_rng(0).random((64, 64)).astype(np.float32))
    cmd = ["index", "query", "--index", str(tmp_path / "ix"), "--model", str(setup / "model"),
           "--image", str(tmp_path / "section.npy"), "--k", "4", "--png", str(tmp_path / "hits.png")]  # fmt: skip
    capsys.readouterr()
    assert main(cmd) == 0
    out = capsys.readouterr().out
    assert "| rank | score | file | stations | start | end |" in out and "family" not in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and "day.mseed" in ln]
    assert len(rows) == 4 and all("| SB.S00..HH?, SB.S01..HH? |" in ln for ln in rows)
    assert "| 2026-01-01T00:00:10Z | 2026-01-01T00:00:20Z |" in out  # the window from 10 s, ISO, UTC
    assert (tmp_path / "hits.png").read_bytes()[:4] == b"\x89PNG"

    _, _, hits, _ = query(str(tmp_path / "ix"), str(setup / "model"), image=str(tmp_path / "section.npy"), k=4)
    hit = next(h for h in hits if h["starttime"].value == (T0 + 10).ns)
    traces = waveform_traces(hit)  # read back from the file: each station's Z, 10 s to 20 s
    assert [tr.label for tr in traces] == ["SB.S00..HHZ", "SB.S01..HHZ"]
    for k, tr in enumerate(traces):
        np.testing.assert_array_equal(tr.data, data[k, 0, 1000:2001])
        assert tr.t[0] == 0 and tr.t[-1] == pytest.approx(10.0)
    drawn = tile(hit, 0.5, waveform_query=False)
    assert drawn.kind == "traces" and drawn.title.endswith("SB.S00..HH?, SB.S01..HH?\n2026-01-01T00:00:10Z")

    path.unlink()  # the recording moved: the table stays, the tiles say so
    capsys.readouterr()
    assert main(cmd) == 0
    assert "| 2026-01-01T00:00:10Z |" in capsys.readouterr().out
    gone = tile(hit, 0.5, waveform_query=False)
    assert gone.kind == "text" and "source not found" in gone.text and "start: 2026-01-01T00:00:10Z" in gone.text


def test_npy_queries_at_other_rates_follow_the_one_rate_policy(setup, capsys):
    """A 500 Hz .npy query is resampled (it once failed on a stations/channels mix-up); a rate of 0
    is refused, not taken as the model's; a 20 Hz one is refused unless --max-upsampling allows it."""
    main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(setup / "ix6")])
    w = load_paired(setup / "data", "train")[0]["waveforms"][0].numpy()  # (stations, 3, T) at 100 Hz
    fast = np.repeat(w, 5, axis=-1)  # 500 Hz
    np.save(setup / "q500.npy", fast)
    base = ["index", "query", "--index", str(setup / "ix6"), "--model", str(setup / "model"), "--k", "2"]
    assert main([*base, "--waveform", str(setup / "q500.npy"), "--npy-sampling-rate", "500"]) == 0
    capsys.readouterr()
    assert main([*base, "--waveform", str(setup / "q500.npy"), "--npy-sampling-rate", "0"]) == 2
    assert "sampling rate 0.0 Hz cannot be resampled" in capsys.readouterr().err
    np.save(setup / "q20.npy", w[..., ::5])
    assert main([*base, "--waveform", str(setup / "q20.npy"), "--npy-sampling-rate", "20"]) == 2
    assert "pass --max-upsampling 5 to force it" in capsys.readouterr().err
    assert main([*base, "--waveform", str(setup / "q20.npy"), "--npy-sampling-rate", "20", "--max-upsampling", "5"]) == 0


def test_index_refuses_a_query_by_other_weights_of_the_same_architecture(setup, capsys):
    from seisbind.io.encode import weights_sha256
    from seisbind.models.joint import SeisBindModel

    main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--modality", "waveform", "--out", str(setup / "ix7")])
    model = SeisBindModel.from_pretrained(setup / "model")
    assert weights_sha256(model) == weights_sha256(SeisBindModel.from_pretrained(setup / "model"))
    assert weights_sha256(create_model("tiny")) != weights_sha256(create_model("tiny"))  # two random inits
    with torch.no_grad():
        model.logit_scale.log_scale.add_(0.01)  # one number changed: same config, other weights
    model.save_pretrained(setup / "retrained")
    np.save(setup / "img7.npy", np.random.default_rng(0).random((64, 64)))
    base = ["index", "query", "--index", str(setup / "ix7"), "--image", str(setup / "img7.npy"), "--k", "2"]
    capsys.readouterr()
    assert main([*base, "--model", str(setup / "retrained")]) == 2
    assert "same architecture, other weights" in capsys.readouterr().err
    assert main([*base, "--model", str(setup / "retrained"), "--allow-other-weights"]) == 0
    assert main([*base, "--model", str(setup / "model")]) == 0


def test_index_refuses_another_models_queries(setup, capsys):
    main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(setup / "ix4")])
    other = setup / "other-model"
    create_model("tiny", embed_dim=256).save_pretrained(other)
    np.save(setup / "img.npy", np.random.default_rng(0).random((64, 64)))
    main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--modality", "waveform", "--out", str(setup / "ix5")])
    capsys.readouterr()
    assert main(["index", "query", "--index", str(setup / "ix5"), "--model", str(other), "--image", str(setup / "img.npy")]) == 2
    assert "another model" in capsys.readouterr().err
    assert main(["index", "query", "--index", str(setup / "ix5"), "--model", str(setup / "model"), "--image", str(setup / "img.npy"), "--k", "3"]) == 0


def test_index_build_stores_the_search_breadth(setup, capsys):
    import faiss

    from seisbind.search.faiss_index import EmbeddingIndex

    ix = setup / "ix-hnsw"
    assert main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(ix), "--kind", "hnsw", "--ef-search", "200"]) == 0
    assert faiss.downcast_index(EmbeddingIndex.load(ix).index).hnsw.efSearch == 200  # survives save and load
    assert main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(setup / "ix-bad"), "--nprobe", "0"]) == 2
    assert "must be at least 1; got 64 and 0" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["parquet", "npy"])
def test_interrupted_export_leaves_nothing_and_reruns_without_duplicates(setup, monkeypatch, suffix):
    import seisbind.search.export as export_module

    real = export_module.iter_embeddings

    def interrupted(*args, **kwargs):
        batches = real(*args, **kwargs)
        yield next(batches)  # one batch is written, then the run dies
        raise KeyboardInterrupt

    folder = setup / f"interrupted-{suffix}"
    out = folder / f"train.{suffix}"
    cmd = ["export", "--model", str(setup / "model"), "--data", str(setup / "data"), "--split", "train", "--out", str(out), "--no-progress"]
    monkeypatch.setattr(export_module, "iter_embeddings", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(cmd)
    assert not out.exists() and list(folder.iterdir()) == []  # no half file, no temporary left behind
    monkeypatch.setattr(export_module, "iter_embeddings", real)
    assert main(cmd) == 0
    ids = read_embeddings(out)[0].column("id").to_pylist() if suffix == "parquet" else read_npy_export(out)[1].column("id").to_pylist()
    expected = read_embeddings(setup / "train.parquet")[0].column("id").to_pylist()
    assert ids == expected and len(set(ids)) == len(ids)


def test_malformed_npy_queries_and_index_folders_get_one_line(setup, tmp_path, capsys):
    main(["index", "build", "--embeddings", str(setup / "train.parquet"), "--out", str(tmp_path / "ix")])
    base = ["index", "query", "--index", str(tmp_path / "ix"), "--model", str(setup / "model")]
    np.save(tmp_path / "empty.npy", np.zeros((0, 3, 100), np.float32))
    np.save(tmp_path / "rec.npy", np.zeros(4, dtype=[("a", "f4"), ("b", "i4")]))
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    for name, message in (("empty", "the array is empty"), ("rec", "a real-valued numeric array is needed"),
                          ("junk", "not a readable .npy array")):
        capsys.readouterr()
        assert main([*base, "--waveform", str(tmp_path / f"{name}.npy")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    info = json.loads((tmp_path / "ix" / "index.json").read_text())
    del info["dim"]
    (tmp_path / "ix" / "index.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert main([*base, "--waveform", str(tmp_path / "empty.npy")]) == 2
    assert "index.json lacks ['dim']; rebuild the index" in capsys.readouterr().err
