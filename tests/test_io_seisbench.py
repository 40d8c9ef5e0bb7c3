"""A SeisBench dataset written with SeisBench's own writer is read trace by trace and embedded."""

import os
import tempfile

# SeisBench creates its cache folder on import; keep it out of the home folder. Nothing is fetched:
# the dataset below is a local folder.
os.environ.setdefault("SEISBENCH_CACHE_ROOT", os.path.join(tempfile.gettempdir(), "seisbind-tests-seisbench-cache"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from seisbind.cli import main  # noqa: E402
from seisbind.io.embeddings import embedding_matrix, read_embeddings  # noqa: E402
from seisbind.io.encode import config_sha256  # noqa: E402
from seisbind.models.factory import create_model  # noqa: E402


def write_dataset(path):
    import seisbench.data as sbd

    rng = np.random.default_rng(0)
    traces = [
        ({"trace_name": "ev1_A", "station_code": "AAA", "trace_sampling_rate_hz": 100.0, "source_magnitude": 2.5,
          "trace_component_order": "ZNE"}, rng.standard_normal((3, 3001))),
        ({"trace_name": "ev1_B", "station_code": "BBB", "trace_sampling_rate_hz": 200.0, "source_magnitude": 2.5,
          "trace_component_order": "ZNE"}, rng.standard_normal((3, 6001))),
        ({"trace_name": "ev2_C", "station_code": "CCC", "trace_sampling_rate_hz": 100.0, "source_magnitude": 3.1,
          "trace_component_order": "Z12"}, rng.standard_normal((3, 3001))),
        ({"trace_name": "ev3_bad", "station_code": "DDD", "trace_sampling_rate_hz": 100.0, "source_magnitude": 1.0,
          "trace_component_order": "ZNE"}, np.full((3, 3001), np.nan)),
    ]  # fmt: skip
    with sbd.WaveformDataWriter(path / "metadata.csv", path / "waveforms.hdf5") as writer:
        writer.data_format = {"dimension_order": "CW", "component_order": "ZNE", "measurement": "velocity",
                              "unit": "counts", "instrument_response": "not restituted"}  # fmt: skip
        for meta, wave in traces:
            meta = {**meta, "station_network_code": "XX", "station_channel_code": "HH",
                    "trace_start_time": "2020-01-01T00:00:00.000000Z"}  # fmt: skip
            writer.add_trace(meta, wave.astype(np.float32))
    return traces


def test_seisbench_dataset_is_read_with_metadata_and_embedded(tmp_path, capsys):
    from seisbind.io.obspy_streams import prepare_stream
    from seisbind.io.seisbench_datasets import open_dataset, trace_stream

    folder = tmp_path / "sbds"
    traces = write_dataset(folder)
    ds = open_dataset(folder)
    assert len(ds) == 4
    stream, meta = trace_stream(ds, 2, str(folder))
    assert [tr.stats.channel for tr in stream] == ["HHZ", "HH1", "HH2"] and meta["source_magnitude"] == 3.1
    np.testing.assert_allclose(stream[1].data, traces[2][1][1].astype(np.float32))
    (rec,) = prepare_stream(trace_stream(ds, 1, "x")[0], 100.0).records
    assert rec.npts == 3001 and rec.source_sampling_rate == 200.0  # resampled to the model rate

    out = tmp_path / "sb.parquet"
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random"):
        rc = main(["embed-waveforms", "--seisbench", str(folder), "--model", "tiny", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "ev3_bad" in err and "NaN" in err  # the bad trace is listed; the rest embedded
    table, smeta = read_embeddings(out)
    # SeisBench's writer packs traces into blocks (trace_name "bucket0$0,:3,:3001") and keeps the given
    # name as trace_name_original; ids carry the given name either way.
    ids = table.column("id").to_pylist()
    assert [i.split("|")[1] for i in ids] == ["ev1_A", "ev1_B", "ev2_C"]
    assert ids[0] == f"{folder}|ev1_A|XX.AAA..HH|2020-01-01T00:00:00"
    assert table.column("source_magnitude").to_pylist() == [2.5, 2.5, 3.1]
    assert table.column("frame").to_pylist() == ["ZNE", "ZNE", "Z12"]  # Z12 kept unrotated: no orientation
    assert table.column("station").to_pylist() == ["AAA", "BBB", "CCC"]
    assert set(table.column("file").to_pylist()) == {str(folder)}
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    assert smeta["model_config_sha256"] == config_sha256(model) and smeta["weights"] == "random"
    with torch.no_grad():
        expected = model.encode_waveform(torch.from_numpy(traces[0][1].astype(np.float32)[None, None]))[0].numpy()
    np.testing.assert_allclose(embedding_matrix(table)[0], expected, atol=1e-5)


def test_not_a_seisbench_folder_is_a_clear_error(tmp_path):
    from seisbind.io.batch import InputError
    from seisbind.io.seisbench_datasets import open_dataset

    with pytest.raises(InputError, match="not a SeisBench dataset folder"):
        open_dataset(tmp_path)
    assert main(["embed-waveforms", "--seisbench", str(tmp_path / "nowhere"), "--model", "tiny",
                 "--out", str(tmp_path / "x.parquet"), "--no-progress"]) == 2  # fmt: skip
    assert not (tmp_path / "x.parquet").exists()
