"""The Python API on a seismologist's data: embed_stream on an ObsPy Stream (with an inventory),
embed_sections on SEG-Y files and arrays; rows equal what the tower gives for the same input."""

from __future__ import annotations

import warnings

import numpy as np
import obspy
import pytest
import torch
from obspy.core.inventory import Channel, Inventory, Network, Site, Station
from obspy.geodetics import gps2dist_azimuth

import seisbind
from seisbind.io.station_positions import positions_along_array_m


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return seisbind.create_model("tiny", image={"img_size": 16, "patch_size": 8}).eval()


def test_the_package_exposes_the_api():
    assert {"create_model", "list_models", "SeisBindModel", "embed_stream", "embed_sections"} <= set(seisbind.__all__)
    from seisbind.io.api import embed_sections, embed_stream

    assert seisbind.embed_stream is embed_stream and seisbind.embed_sections is embed_sections


def test_obspy_example_stream_with_its_inventory_embeds_with_a_table(model):
    """ObsPy's example (BW.RJOB, EH[ZNE], 100 Hz, 30 s) in 10 s windows: three rows, station
    coordinates from ObsPy's example inventory, embeddings equal to the tower's of the same data."""
    stream, inventory = obspy.read(), obspy.read_inventory()
    emb, table = seisbind.embed_stream(model, stream, inventory=inventory, window_seconds=10)
    assert emb.shape == (3, model.config.embed_dim) and len(table) == 3
    assert set(table["network"] + "." + table["station"]) == {"BW.RJOB"} and set(table["channel"]) == {"EH?"}
    assert set(table["frame"]) == {"ZNE"} and set(table["filled"]) == {""}
    coords = inventory.get_coordinates("BW.RJOB..EHZ", stream[0].stats.starttime)
    assert table["latitude"].iloc[0] == pytest.approx(coords["latitude"])
    assert table["longitude"].iloc[0] == pytest.approx(coords["longitude"])
    assert table["elevation_m"].iloc[0] == pytest.approx(coords["elevation"])
    t0 = stream[0].stats.starttime
    assert table["starttime"].iloc[0] == obspy_to_pandas(t0)
    assert table["endtime"].iloc[0] == obspy_to_pandas(t0 + 10)
    assert (table["n_samples"] == 1001).all() and (table["source_sampling_rate"] == 100.0).all()
    # the first row is the tower's embedding of the first 1001 samples, Z, N, E
    z, n, e = (stream.select(component=c)[0].data[:1001].astype(np.float32) for c in "ZNE")
    with torch.no_grad():
        direct = model.encode_waveform(np.stack([z, n, e])[None]).numpy()
    np.testing.assert_allclose(emb[0], direct, atol=1e-5)
    # a model method and a model folder give the same rows; no inventory, no coordinate columns
    emb2, table2 = model.embed_stream(stream, window_seconds=10)
    np.testing.assert_allclose(emb2, emb, atol=1e-6)
    assert "latitude" not in table2.columns


def obspy_to_pandas(t):
    import pandas as pd

    return pd.Timestamp(t.ns, unit="ns", tz="UTC")


def line_inventory(codes: list[str], longitudes: list[float], latitude: float = 0.0) -> Inventory:
    stations = [Station(code, latitude, lon, 0.0, site=Site(code),
                        channels=[Channel(f"HH{c}", "", latitude, lon, 0.0, 0.0) for c in "ZNE"])
                for code, lon in zip(codes, longitudes)]  # fmt: skip
    return Inventory(networks=[Network("XX", stations=stations)], source="test")


def array_stream(codes: list[str], seconds: float = 10.0, rate: float = 100.0) -> obspy.Stream:
    rng = np.random.default_rng(3)
    traces = []
    for code in codes:
        for c in "ZNE":
            header = {"network": "XX", "station": code, "channel": f"HH{c}", "sampling_rate": rate,
                      "starttime": obspy.UTCDateTime(2026, 1, 1)}  # fmt: skip
            traces.append(obspy.Trace(rng.standard_normal(int(seconds * rate) + 1).astype(np.float32), header))
    return obspy.Stream(traces)


def test_an_array_record_gets_positions_from_the_inventory(model):
    """group="stream" with an inventory: one row for the array, the stations' coordinates as lists,
    and the tower sees their positions along the line (not equal spacing in stream order)."""
    codes, lons = ["A", "B", "C"], [0.0, 0.01, 0.05]  # uneven spacing along the equator
    stream, inventory = array_stream(codes), line_inventory(codes, lons)
    emb, table = seisbind.embed_stream(model, stream, inventory=inventory, window_seconds=10, group="stream")
    assert len(table) == 1 and table["n_stations"].iloc[0] == 3
    assert table["longitude"].iloc[0] == pytest.approx(lons)
    x = positions_along_array_m([0.0] * 3, lons)
    data = np.stack([np.stack([stream.select(station=s, component=c)[0].data for c in "ZNE"]) for s in codes])
    with torch.no_grad():
        with_positions = model.encode_waveform(data[None], station_x_m=x[None]).numpy()[0]
        on_a_line = model.encode_waveform(data[None]).numpy()[0]
    np.testing.assert_allclose(emb[0], with_positions, atol=1e-5)
    assert not np.allclose(with_positions, on_a_line, atol=1e-4)  # the positions reached the tower


def test_positions_along_an_array_follow_its_line():
    d = gps2dist_azimuth(0.0, 0.0, 0.0, 0.01)[0]  # 0.01 degree of longitude on the equator, m
    x = positions_along_array_m([0.0, 0.0, 0.0], [0.0, 0.01, 0.02])
    np.testing.assert_allclose(np.diff(x), [d, d], rtol=1e-3)  # east-west line: increasing eastwards
    y = positions_along_array_m([0.02, 0.0, 0.01], [5.0, 5.0, 5.0])  # a north-south line, unordered
    assert np.argsort(y).tolist() == [1, 2, 0] and y[0] - y[1] == pytest.approx(2 * (y[2] - y[1]), rel=1e-3)
    diagonal = positions_along_array_m([0.0, 0.01, 0.02], [0.0, 0.01, 0.02])
    assert diagonal[2] - diagonal[0] == pytest.approx(gps2dist_azimuth(0.0, 0.0, 0.02, 0.02)[0], rel=1e-3)
    assert positions_along_array_m([10.0], [20.0]).tolist() == [0.0]
    with pytest.raises(ValueError, match="one latitude and longitude per station"):
        positions_along_array_m([1.0, 2.0], [1.0])


def test_a_station_missing_from_the_inventory_leaves_the_array_on_a_line(model):
    codes = ["A", "B"]
    stream, inventory = array_stream(codes), line_inventory(["A"], [0.0])
    emb, table = seisbind.embed_stream(model, stream, inventory=inventory, window_seconds=10, group="stream")
    assert table["latitude"].iloc[0][0] == 0.0 and table["latitude"].iloc[0][1] is None
    data = np.stack([np.stack([stream.select(station=s, component=c)[0].data for c in "ZNE"]) for s in codes])
    with torch.no_grad():
        np.testing.assert_allclose(emb[0], model.encode_waveform(data[None]).numpy()[0], atol=1e-5)


def test_bad_streams_are_one_line_errors(model):
    bad = obspy.read()
    bad[0].data = bad[0].data.astype(np.float64)
    bad[0].data[100] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite samples"):
        seisbind.embed_stream(model, bad, window_seconds=10)
    slow = obspy.read()
    for tr in slow:
        tr.stats.sampling_rate = 10.0
    with pytest.raises(ValueError, match="upsampled"):
        seisbind.embed_stream(model, slow, window_seconds=10)
    with pytest.raises(TypeError, match="SeisBindModel or a folder"):
        seisbind.embed_stream(object(), obspy.read())


def test_sections_from_segy_carry_survey_coordinates(model, tmp_path):
    from test_io_segy import write_3d

    from seisbind.io.segy import iter_patches

    rng = np.random.default_rng(1)
    ilines, xlines = np.arange(100, 103), np.arange(200, 240, 2)  # 3 inlines, 20 crosslines, 24 samples
    cube = rng.standard_normal((3, 20, 24)).astype(np.float32)
    path = tmp_path / "cube.sgy"
    write_3d(path, cube, ilines, xlines)
    emb, table = seisbind.embed_sections(model, path)
    patches = list(iter_patches(path, (16, 16), slice="inline"))
    assert len(table) == len(patches) == 3 * 2 * 2  # rows 0, 8; columns 0, 4 (aligned to the edges)
    assert table["inline_first"].tolist() == [c["inline_first"] for _, c in patches]
    assert set(table["inline_first"]) == {100, 101, 102} and table["crossline_last"].max() == 238
    assert {"cdp_first", "x_first", "sample_first", "z_first"} <= set(table.columns)
    with torch.no_grad():
        direct = model.encode_image(np.stack([p for p, _ in patches])[:, None]).numpy()
    np.testing.assert_allclose(emb, direct, atol=1e-5)


def test_sections_from_arrays(model):
    section = np.random.default_rng(2).standard_normal((40, 32)).astype(np.float32)
    section[:16, 16:] = 0.0  # a muted corner: a constant patch, left out
    emb, table = model.embed_sections(section)
    assert table[["patch_row", "patch_col"]].values.tolist() == [[0, 0], [16, 0], [16, 16], [24, 0], [24, 16]]
    assert table["sample_last"].tolist() == [r + 15 for r in table["patch_row"]]
    with torch.no_grad():
        np.testing.assert_allclose(emb[1], model.encode_image(section[16:32, 0:16]).numpy(), atol=1e-5)
    stack_emb, stack_table = seisbind.embed_sections(model, np.stack([section, section]), stride=16)
    assert sorted(set(stack_table["line"])) == [0, 1] and np.allclose(stack_emb[: len(stack_emb) // 2],
                                                                      stack_emb[len(stack_emb) // 2 :], atol=1e-6)
    with pytest.raises(ValueError, match="smaller than the 16 x 16 patch"):
        seisbind.embed_sections(model, np.zeros((8, 64)))
    with pytest.raises(ValueError, match="expected one section"):
        seisbind.embed_sections(model, np.zeros(64))
    with pytest.raises(ValueError, match="infinite"):
        seisbind.embed_sections(model, np.full((16, 16), np.inf))


def test_embed_waveforms_cli_writes_coordinates_with_an_inventory(tmp_path, capsys):
    import pyarrow.parquet as pq

    from seisbind.cli import main

    codes = ["A", "B"]
    array_stream(codes).write(str(tmp_path / "array.mseed"), format="MSEED")
    line_inventory(codes, [0.0, 0.01]).write(str(tmp_path / "stations.xml"), format="STATIONXML")
    out = tmp_path / "w.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["embed-waveforms", "--waveforms", str(tmp_path / "array.mseed"), "--model", "tiny", "--out",
                     str(out), "--inventory", str(tmp_path / "stations.xml"), "--group", "stream",
                     "--window-seconds", "10", "--no-progress"]) == 0  # fmt: skip
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 1 and rows[0]["longitude"] == [0.0, 0.01] and rows[0]["latitude"] == [0.0, 0.0]
    # an inventory ObsPy could read by guessing (station text) is refused: StationXML is named, not detected
    obspy.read_inventory().write(str(tmp_path / "stations.txt"), format="STATIONTXT")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["embed-waveforms", "--waveforms", str(tmp_path / "array.mseed"), "--model", "tiny", "--out",
                     str(tmp_path / "w2.parquet"), "--inventory", str(tmp_path / "stations.txt"), "--group", "stream",
                     "--window-seconds", "10", "--no-progress"])  # fmt: skip
    assert code == 2 and "cannot read it as StationXML" in capsys.readouterr().err


def test_the_readme_python_examples_run(tmp_path, monkeypatch):
    """The README's embed_stream and embed_sections examples, run as written on files of their names."""
    import re
    from pathlib import Path

    from test_io_segy import write_3d

    obspy.read().write(str(tmp_path / "event.mseed"), format="MSEED")
    obspy.read_inventory().write(str(tmp_path / "stations.xml"), format="STATIONXML")
    cube = np.random.default_rng(0).standard_normal((2, 80, 80)).astype(np.float32)
    write_3d(tmp_path / "survey.sgy", cube, np.arange(1, 3), np.arange(10, 90))
    seisbind.create_model("tiny").save_pretrained(tmp_path / "runs" / "quickstart" / "train" / "best-model")
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "embed_stream" in b or "embed_sections" in b]
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
