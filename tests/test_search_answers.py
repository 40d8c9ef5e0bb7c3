"""Hits shown as their source describes them: table columns per kind of row, SEG-Y tiles read back from the file."""

import numpy as np
import pandas as pd
import pytest
import torch

from seisbind.cli import main
from seisbind.models import create_model
from seisbind.search.answers import format_table, hit_columns, hit_kind, hit_title, iso, segy_patch, tile
from test_io_segy import write_3d

DATASET_HIT = {"id": "train/geology-3/image", "modality": "image", "split": "train", "geology_id": 3, "source": -1,
               "family": "layered", "caption": "three layers over a half-space", "data": "/no/data"}  # fmt: skip
WAVEFORM_HIT = {"id": "/rec/day.mseed|*|2026-01-01T00:00:10", "modality": "waveform", "file": "/rec/day.mseed",
                "network": "SB,SB", "station": "S00,S01", "location": ",", "channel": "HH?,HH?", "n_stations": 2,
                "components": "ZNE,ZNE", "frame": "ZNE,ZNE", "filled": ",",
                "starttime": pd.Timestamp("2026-01-01T00:00:10Z"), "endtime": pd.Timestamp("2026-01-01T00:00:20Z"),
                "sampling_rate": 100.0, "source_sampling_rate": 100.0, "n_samples": 1001}  # fmt: skip
SEGY_HIT = {"id": "/s/cube.sgy|inline|101|0|16", "modality": "image", "file": "/s/cube.sgy", "survey": "3d",
            "slice": "inline", "line": 101, "patch_row": 0, "patch_col": 16, "height": 64, "width": 64,
            "inline_first": 101, "inline_last": 101, "crossline_first": 216, "crossline_last": 279,
            "trace_first": 96, "trace_last": 159, "cdp_first": 1096, "cdp_last": 1159, "x_first": 5025.0,
            "y_first": 7200.0, "x_last": 5025.0, "y_last": 7987.5, "sample_first": 0, "sample_last": 63,
            "z_first": 0.0, "z_last": 126.0}  # fmt: skip


def test_columns_follow_what_each_kind_of_hit_holds():
    assert [hit_kind(h) for h in (DATASET_HIT, WAVEFORM_HIT, SEGY_HIT, {"id": "x"})] == ["dataset", "waveform", "segy", "other"]
    assert hit_columns(DATASET_HIT) == ["id", "family", "caption"]
    assert hit_columns(WAVEFORM_HIT) == ["file", "stations", "start", "end"]
    assert hit_columns(SEGY_HIT) == ["file", "slice", "line", "inline", "crossline", "cdp", "samples", "z", "row, col"]
    two_d = {**SEGY_HIT, "survey": "2d", "slice": "line", "line": -1, "inline_first": 0, "inline_last": 0}
    assert hit_columns(two_d) == ["file", "slice", "crossline", "cdp", "samples", "z", "row, col"]  # no line -1, no inline 0

    table = format_table([0.9, 0.8], [WAVEFORM_HIT, {**WAVEFORM_HIT, "station": "S02", "network": "SB",
                                                     "location": "00", "channel": "EH?"}]).splitlines()  # fmt: skip
    assert table[0] == "| rank | score | file | stations | start | end |"
    assert table[2] == "| 1 | 0.900 | day.mseed | SB.S00..HH?, SB.S01..HH? | 2026-01-01T00:00:10Z | 2026-01-01T00:00:20Z |"
    assert "SB.S02.00.EH?" in table[3]
    segy = format_table([0.5], [SEGY_HIT]).splitlines()
    assert segy[0] == "| rank | score | file | slice | line | inline | crossline | cdp | samples | z | row, col |"
    assert segy[2] == "| 1 | 0.500 | cube.sgy | inline | 101 | 101 | 216-279 | 1096-1159 | 0-63 | 0-126 | 0, 16 |"
    assert format_table([0.7], [DATASET_HIT]).splitlines()[0] == "| rank | score | id | family | caption |"


def test_titles_and_times_identify_the_hit_not_a_geology():
    assert iso(pd.Timestamp("2026-01-01T00:00:10.5Z")) == "2026-01-01T00:00:10.500000Z"
    assert iso(1767225610 * 10**9) == "2026-01-01T00:00:10Z"
    assert hit_title(WAVEFORM_HIT, 0.9) == "0.900  SB.S00..HH?, SB.S01..HH?\n2026-01-01T00:00:10Z"
    assert hit_title(SEGY_HIT, 0.5) == "0.500  cube.sgy\ninline 101 crossline 216-279\ncdp 1096-1159 samples 0-63"
    assert hit_title({**SEGY_HIT, "slice": "time", "line": 7}, 0.5).startswith("0.500  cube.sgy time slice 7\n")
    assert hit_title(DATASET_HIT, 0.7) == "0.700  geology 3\nlayered"
    many = {**WAVEFORM_HIT, "network": ",".join(["SB"] * 5), "station": ",".join(f"S{i}" for i in range(5)),
            "location": ",,,,", "channel": ",".join(["HH?"] * 5)}  # fmt: skip
    assert "+2 more" in hit_title(many, 0.1)
    for hit in (WAVEFORM_HIT, SEGY_HIT, DATASET_HIT):  # their sources do not exist here
        t = tile(hit, 0.1, waveform_query=hit is not WAVEFORM_HIT)
        assert t.kind == "text" and "source not found" in t.text and "geology None" not in t.title


@pytest.fixture(scope="module")
def segy_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("segy-answers")
    torch.manual_seed(0)
    create_model("tiny").save_pretrained(root / "model")  # 64 x 64 images
    rng = np.random.default_rng(3)
    ilines, xlines = np.arange(100, 103), np.arange(200, 280)
    cube = rng.standard_normal((3, 80, 70)).astype(np.float32)  # (inlines, crosslines, samples)
    write_3d(root / "cube.sgy", cube, ilines, xlines)
    assert main(["embed-images", "--segy", str(root / "cube.sgy"), "--model", str(root / "model"),
                 "--out", str(root / "patches.parquet"), "--no-progress"]) == 0  # fmt: skip
    assert main(["index", "build", "--embeddings", str(root / "patches.parquet"), "--out", str(root / "ix")]) == 0
    np.save(root / "q.npy", rng.standard_normal((3, 400)).astype(np.float32))
    return root, cube


def test_segy_hits_are_tabulated_and_drawn_from_the_patch_in_the_file(segy_index, capsys):
    from seisbind.io.segy import iter_patches
    from seisbind.search.index_cli import query

    root, cube = segy_index
    capsys.readouterr()
    assert main(["index", "query", "--index", str(root / "ix"), "--model", str(root / "model"),
                 "--waveform", str(root / "q.npy"), "--k", "12", "--png", str(root / "hits.png")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "| rank | score | file | slice | line | inline | crossline | cdp | samples | z | row, col |" in out
    assert "family" not in out and "caption" not in out and "| cube.sgy | inline | 101 | 101 | 216-279 |" in out
    assert (root / "hits.png").read_bytes()[:4] == b"\x89PNG"

    _, _, hits, _ = query(str(root / "ix"), str(root / "model"), waveform=str(root / "q.npy"), k=12)
    patches = {(c["line"], c["patch_row"], c["patch_col"]): p for p, c in iter_patches(root / "cube.sgy", 64)}
    assert len(hits) == len(patches) == 12
    cache: dict = {}
    for hit in hits:
        expected = patches[(hit["line"], hit["patch_row"], hit["patch_col"])]
        i = hit["line"] - 100
        np.testing.assert_array_equal(expected, cube[i, hit["patch_col"] : hit["patch_col"] + 64, hit["patch_row"] : hit["patch_row"] + 64].T)
        np.testing.assert_array_equal(segy_patch(hit), expected)
        t = tile(hit, 0.5, waveform_query=True, cache=cache)
        assert t.kind == "seismic" and f"inline {hit['line']} crossline" in t.title
        np.testing.assert_array_equal(t.data, expected)


def test_segy_tiles_say_when_the_file_changed_or_is_gone(segy_index, capsys, tmp_path):
    import shutil

    from seisbind.search.index_cli import query

    root, cube = segy_index
    work = tmp_path / "ix"
    shutil.copytree(root / "ix", work)
    _, _, hits, _ = query(str(work), str(root / "model"), waveform=str(root / "q.npy"), k=3)
    backup = tmp_path / "cube.sgy"
    shutil.copy(root / "cube.sgy", backup)
    try:
        # the same survey without its first trace: every trace number under a patch moves
        write_3d(root / "cube.sgy", cube, np.arange(100, 103), np.arange(200, 280), skip=[(100, 200)])
        changed = tile(hits[0], 0.5, waveform_query=True)
        assert changed.kind == "text" and "the file changed since it was embedded" in changed.text
        (root / "cube.sgy").unlink()
        gone = tile(hits[0], 0.5, waveform_query=True)
        assert gone.kind == "text" and "source not found" in gone.text and "inline: " in gone.text
        capsys.readouterr()
        assert main(["index", "query", "--index", str(work), "--model", str(root / "model"), "--waveform",
                     str(root / "q.npy"), "--k", "3", "--png", str(tmp_path / "gone.png")]) == 0  # fmt: skip
        assert (tmp_path / "gone.png").read_bytes()[:4] == b"\x89PNG" and "| cube.sgy |" in capsys.readouterr().out
    finally:
        shutil.copy(backup, root / "cube.sgy")
