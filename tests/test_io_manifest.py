"""A manifest of pairs converts into the generator's on-disk dataset; bad rows are reported, not fatal."""

import json

import numpy as np
import obspy
import pandas as pd
import pytest
import segyio.tools

from seisbind.cli import main
from seisbind.data.dataset import load_paired
from seisbind.data.generate import read_plan
from seisbind.io.manifest import convert_manifest
from seisbind.io.obspy_streams import resample_array


@pytest.fixture
def sources(tmp_path):
    rng = np.random.default_rng(0)
    images = {name: rng.standard_normal((64, 64)).astype(np.float32) for name in ("a", "b", "c")}
    for name, im in images.items():
        np.save(tmp_path / f"{name}.npy", im)
    line = rng.standard_normal((100, 80)).astype(np.float32)  # 100 traces x 80 samples
    segyio.tools.from_array2D(str(tmp_path / "line.sgy"), line, format=5)
    st = obspy.read()
    st.write(str(tmp_path / "rjob.mseed"), format="MSEED")
    wave50 = rng.standard_normal((3, 1000)).astype(np.float32)  # 20 s at 50 Hz
    np.save(tmp_path / "w50.npy", wave50)
    t0 = st[0].stats.starttime
    rows = [
        {"image_path": "a.npy", "waveform_path": "rjob.mseed", "waveform_start": str(t0 + 5), "pair_id": "p0",
         "family": "flat", "caption": "a quake under a flat basin", "magnitude": 2.0},
        {"image_path": "line.sgy", "image_row": 10, "image_col": 20, "waveform_path": "rjob.mseed", "pair_id": "p1"},
        {"image_path": "missing.npy", "waveform_path": "rjob.mseed", "pair_id": "p2"},
        {"image_path": "b.npy", "waveform_path": "w50.npy", "waveform_sampling_rate": 50.0, "waveform_start": "1.0",
         "pair_id": "p3"},
        {"image_path": "c.npy", "waveform_path": "rjob.mseed", "waveform_start": str(t0 + 3600), "pair_id": "p4"},
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "pairs.csv", index=False)
    return {"images": images, "line": line, "stream": st, "wave50": wave50, "t0": t0, "csv": tmp_path / "pairs.csv"}


def test_manifest_with_a_missing_file_converts_the_rest(sources, tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["import-manifest", str(sources["csv"]), "--out", str(out), "--window-seconds", "10", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1  # some rows failed; the rest was converted
    assert "converted 3 of 5 pair(s)" in captured.out
    assert "row 2 (p2): image_path" in captured.out and "missing.npy does not exist" in captured.out
    assert "row 4 (p4)" in captured.out and "no station covers" in captured.out
    plan = read_plan(out)
    assert plan["scenario"] == "manifest" and plan["failed_rows"] == ["row 2 (p2)", "row 4 (p4)"]

    raw = load_paired(out, decode=False)
    rows = {r["pair_id"]: r for split in raw.values() for r in split.with_format("numpy")}
    assert sorted(rows) == ["p0", "p1", "p3"]
    decoded = load_paired(out)
    by_id = {r["pair_id"]: r for split in decoded.values() for i in range(len(split)) for r in [split[i]]}
    st, t0 = sources["stream"], sources["t0"]
    zne = np.stack([st.select(component=c)[0].data for c in "ZNE"]).astype(np.float32)

    p0 = by_id["p0"]
    assert p0["image"].shape == (1, 64, 64)
    np.testing.assert_array_equal(p0["image"][0].numpy(), np.asarray(rows["p0"]["image"], np.float32))  # as stored
    assert p0["waveforms"].shape == (1, 1, 3, 1001)
    np.testing.assert_allclose(p0["waveforms"][0, 0].numpy(), zne[:, 500:1501], rtol=2e-3, atol=2e-3 * np.abs(zne).max())
    assert rows["p0"]["family"] == "flat" and rows["p0"]["caption"] == "a quake under a flat basin"
    assert json.loads(rows["p0"]["manifest_extra"]) == {"magnitude": 2.0}
    assert rows["p0"]["starttime"] == (t0 + 5).isoformat() and list(rows["p0"]["stations"]) == ["BW.RJOB..EH"]
    assert rows["p0"]["station_mask"].tolist() == [[True]] and rows["p0"]["scenario"] == "manifest"
    np.testing.assert_array_equal(rows["p0"]["image"], sources["images"]["a"])

    p1 = rows["p1"]  # a SEG-Y patch: rows are samples, columns traces
    np.testing.assert_array_equal(p1["image"], sources["line"].T[10:74, 20:84])
    coords = json.loads(p1["image_source"])
    assert (coords["trace_first"], coords["trace_last"], coords["sample_first"]) == (20, 83, 10)
    assert p1["starttime"] == t0.isoformat()  # no start given: the record's start

    p3 = rows["p3"]  # a 50 Hz array resampled to 100 Hz, from 1 s in
    expected = resample_array(sources["wave50"], 50.0, 100.0)[:, 100:1101]
    got = p3["waveforms"][0, 0].astype(np.float32) * p3["waveform_scale"][0, 0]
    np.testing.assert_allclose(got, expected, atol=2e-3 * np.abs(expected).max())
    assert {r["manifest_row"] for r in rows.values()} == {0, 1, 3}


def test_bad_manifests_are_refused_clearly(sources, tmp_path):
    with pytest.raises(ValueError, match="manifest needs columns"):
        pd.DataFrame([{"image": "a.npy"}]).to_csv(tmp_path / "bad.csv", index=False)
        convert_manifest(tmp_path / "bad.csv", tmp_path / "o1", progress=False, log=None)
    pd.DataFrame([{"image_path": "nope.npy", "waveform_path": "rjob.mseed"}]).to_csv(tmp_path / "none.csv", index=False)
    with pytest.raises(ValueError, match=r"(?s)no row could be converted.*row 0: image_path .*nope\.npy does not exist"):
        convert_manifest(tmp_path / "none.csv", tmp_path / "o2", progress=False, log=None)
    assert not (tmp_path / "o2").exists()  # nothing half-made is left behind
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        convert_manifest(sources["csv"], tmp_path / "full", progress=False, log=None)
