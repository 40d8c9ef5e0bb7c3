"""SEG-Y written by segyio round-trips to the right patches and survey coordinates."""

import numpy as np
import pytest
import segyio
import segyio.tools

from seisbind.io.batch import InputError
from seisbind.io.segy import PatchCounts, SegySurvey, iter_patches, patch_starts


def write_3d(path, data, ilines, xlines, skip=(), dup=None, dt_us=2000, delrt=100):
    """A post-stack 3-D file with chosen line numbers and CDP x/y (scalar -100), optionally missing
    the (il, xl) positions in ``skip`` or repeating one position (``dup``)."""
    positions = [(i, j) for i in range(len(ilines)) for j in range(len(xlines)) if (ilines[i], xlines[j]) not in skip]
    if dup is not None:
        positions.append(dup)
    spec = segyio.spec()
    spec.format = 5  # IEEE float: exact round trip
    spec.samples = list(range(data.shape[2]))
    spec.tracecount = len(positions)
    with segyio.create(str(path), spec) as f:
        for k, (i, j) in enumerate(positions):
            f.header[k] = {
                segyio.su.iline: int(ilines[i]), segyio.su.xline: int(xlines[j]),
                segyio.su.cdp: 1000 + k, segyio.su.scalco: -100,
                segyio.su.cdpx: 500000 + 2500 * i, segyio.su.cdpy: 700000 + 1250 * j,
                segyio.su.ns: data.shape[2], segyio.su.dt: dt_us, segyio.su.delrt: delrt,
            }  # fmt: skip
            f.trace[k] = data[i, j]
        f.bin.update(hdt=dt_us, hns=data.shape[2])
    return positions


def test_patch_starts_cover_the_edge():
    assert patch_starts(10, 4, 4) == [0, 4, 6]
    assert patch_starts(12, 4, 4) == [0, 4, 8]
    assert patch_starts(3, 4, 1) == []


def test_2d_line_round_trips_to_patches_and_trace_ranges(tmp_path):
    rng = np.random.default_rng(0)
    traces = rng.standard_normal((50, 40)).astype(np.float32)  # (traces, samples)
    path = tmp_path / "line.sgy"
    segyio.tools.from_array2D(str(path), traces, format=5, dt=4000)
    counts = PatchCounts()
    patches = list(iter_patches(path, (16, 16), stride=8, counts=counts))
    image = traces.T  # rows = samples, columns = traces
    rows, cols = [0, 8, 16, 24], [0, 8, 16, 24, 32, 34]
    assert counts.patches == len(patches) == len(rows) * len(cols) and counts.sections == 1
    seen = set()
    for patch, c in patches:
        r0, c0 = c["patch_row"], c["patch_col"]
        seen.add((r0, c0))
        np.testing.assert_array_equal(patch, image[r0 : r0 + 16, c0 : c0 + 16])
        assert (c["survey"], c["slice"], c["line"]) == ("2d", "line", -1)
        assert (c["trace_first"], c["trace_last"]) == (c0, c0 + 15)
        assert (c["sample_first"], c["sample_last"]) == (r0, r0 + 15)
        assert (c["z_first"], c["z_last"]) == (4.0 * r0, 4.0 * (r0 + 15))  # 4 ms samples
        assert (c["crossline_first"], c["crossline_last"]) == (c0 + 1, c0 + 16)  # from_array2D numbers from 1
    assert seen == {(r, c) for r in rows for c in cols}


def test_3d_inline_crossline_and_time_slices_keep_survey_coordinates(tmp_path):
    rng = np.random.default_rng(1)
    ilines, xlines = np.arange(100, 106), np.arange(200, 240, 2)  # 6 inlines, 20 crosslines
    cube = rng.standard_normal((6, 20, 24)).astype(np.float32)
    path = tmp_path / "cube.sgy"
    write_3d(path, cube, ilines, xlines)
    with SegySurvey(path) as sv:
        assert sv.kind == "3d" and sv.regular
        np.testing.assert_array_equal(sv.ilines, ilines)
        assert sv.samples[0] == 100.0 and sv.samples[1] == 102.0  # delrt 100 ms, 2 ms step

    inl = list(iter_patches(path, (8, 10), stride=(8, 5), slice="inline"))
    assert len(inl) == 6 * 3 * 3
    for patch, c in inl:
        i = int(np.flatnonzero(ilines == c["line"])[0])
        r0, c0 = c["patch_row"], c["patch_col"]
        np.testing.assert_array_equal(patch, cube[i, c0 : c0 + 10, r0 : r0 + 8].T)
        assert c["inline_first"] == c["inline_last"] == c["line"]
        assert (c["crossline_first"], c["crossline_last"]) == (xlines[c0], xlines[c0 + 9])
        assert (c["trace_first"], c["trace_last"]) == (i * 20 + c0, i * 20 + c0 + 9)
        assert c["cdp_first"] == 1000 + i * 20 + c0
        assert c["x_first"] == pytest.approx(5000 + 25 * i) and c["y_last"] == pytest.approx(7000 + 12.5 * (c0 + 9))
        assert (c["z_first"], c["z_last"]) == (100.0 + 2 * r0, 100.0 + 2 * (r0 + 7))

    xl = list(iter_patches(path, (8, 6), slice="crossline", slice_step=5))
    assert {c["line"] for _, c in xl} == {200, 210, 220, 230}
    for patch, c in xl:
        j = int(np.flatnonzero(xlines == c["line"])[0])
        np.testing.assert_array_equal(patch, cube[:, j, c["patch_row"] : c["patch_row"] + 8].T)
        assert (c["inline_first"], c["inline_last"]) == (100, 105)
        assert c["crossline_first"] == c["crossline_last"] == c["line"]

    ts = list(iter_patches(path, (4, 10), stride=(2, 10), slice="time"))
    assert len(ts) == 24 * 2 * 2
    for patch, c in ts:
        k, r0, c0 = c["line"], c["patch_row"], c["patch_col"]
        np.testing.assert_array_equal(patch, cube[r0 : r0 + 4, c0 : c0 + 10, k])
        assert c["sample_first"] == c["sample_last"] == k and c["z_first"] == 100.0 + 2 * k
        assert (c["inline_first"], c["inline_last"]) == (ilines[r0], ilines[r0 + 3])
        assert (c["crossline_first"], c["crossline_last"]) == (xlines[c0], xlines[c0 + 9])


def test_irregular_3d_skips_patches_touching_missing_traces(tmp_path):
    ilines, xlines = np.arange(1, 5), np.arange(1, 9)
    cube = np.random.default_rng(2).standard_normal((4, 8, 12)).astype(np.float32)
    path = tmp_path / "ragged.sgy"
    write_3d(path, cube, ilines, xlines, skip={(2, 7)})
    with pytest.raises(ValueError):  # segyio's own geometry refuses this file
        segyio.open(str(path)).close()
    counts = PatchCounts()
    patches = list(iter_patches(path, (12, 4), slice="inline", counts=counts))
    assert counts.incomplete == 1 and counts.patches == 4 * 2 - 1
    for patch, c in patches:
        assert not (c["line"] == 2 and c["patch_col"] == 4)
        np.testing.assert_array_equal(patch, cube[c["line"] - 1, c["patch_col"] : c["patch_col"] + 4].T)
    with SegySurvey(path) as sv:
        assert sv.kind == "3d" and not sv.regular


def test_bad_segy_files_raise_errors_naming_file_and_problem(tmp_path):
    cube = np.ones((2, 3, 10), np.float32)
    dup = tmp_path / "prestack.sgy"
    write_3d(dup, cube, [1, 2], [1, 2, 3], dup=(0, 0))
    with pytest.raises(InputError, match=r"prestack\.sgy.*more than one trace.*pre-stack"):
        SegySurvey(dup)
    junk = tmp_path / "junk.sgy"
    junk.write_bytes(b"not a seg-y file" * 10)
    with pytest.raises(InputError, match=r"junk\.sgy: not a readable SEG-Y"):
        SegySurvey(junk)
    with pytest.raises(InputError, match=r"missing\.sgy: no such file"):
        SegySurvey(tmp_path / "missing.sgy")
    segyio.tools.from_array2D(str(tmp_path / "whole.sgy"), np.ones((10, 20), np.float32))
    (tmp_path / "cut.sgy").write_bytes((tmp_path / "whole.sgy").read_bytes()[:3600])  # headers, no trace
    with pytest.raises(InputError, match=r"cut\.sgy: not a readable SEG-Y file .*3600 bytes"):
        SegySurvey(tmp_path / "cut.sgy")
    small = tmp_path / "small.sgy"
    segyio.tools.from_array2D(str(small), np.ones((10, 20), np.float32))
    with pytest.raises(InputError, match=r"small\.sgy: line sections are 20 x 10.*smaller than the 64 x 64"):
        list(iter_patches(small, 64))
    with pytest.raises(InputError, match="2-D line has no inline"):
        list(iter_patches(small, 4, slice="inline"))
    # Constant patches (dead areas) are left out unless asked for.
    assert list(iter_patches(small, 4)) == []
    assert len(list(iter_patches(small, 4, skip_dead=False))) == 5 * 3


def test_embed_images_cli_writes_coordinates_and_lists_failures(tmp_path, capsys):
    import torch

    from seisbind.cli import main
    from seisbind.io.embeddings import embedding_matrix, read_embeddings
    from seisbind.io.encode import config_sha256
    from seisbind.models.factory import create_model

    rng = np.random.default_rng(3)
    line = rng.standard_normal((100, 80)).astype(np.float32)  # the tiny model cuts 64 x 64 patches
    segyio.tools.from_array2D(str(tmp_path / "a.sgy"), line, format=5)
    cube = rng.standard_normal((2, 70, 64)).astype(np.float32)
    write_3d(tmp_path / "b.sgy", cube, [10, 11], np.arange(70))
    (tmp_path / "broken.sgy").write_bytes(b"\0" * 100)
    out = tmp_path / "img.parquet"
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random"):
        rc = main(["embed-images", "--segy", str(tmp_path / "a.sgy"), "--segy", str(tmp_path / "broken.sgy"),
                   "--segy", str(tmp_path / "b.sgy"), "--model", "tiny", "--out", str(out), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "broken.sgy: not a readable SEG-Y file" in err and err.count("broken.sgy: ") == 2 and "1 of 3 file(s) failed" in err
    table, meta = read_embeddings(out)
    files = table.column("file").to_pylist()
    assert files.count(str(tmp_path / "a.sgy")) == 4 and files.count(str(tmp_path / "b.sgy")) == 4  # 2 x 2 and 2 x 1 x 2
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    assert meta["model_config_sha256"] == config_sha256(model) and meta["modality"] == "image"
    row = table.to_pylist()[0]
    assert row["modality"] == "image" and row["survey"] == "2d" and (row["patch_row"], row["patch_col"]) == (0, 0)
    with torch.no_grad():
        expected = model.encode_image(torch.from_numpy(line.T[:64, :64].copy())[None, None])[0].numpy()
    np.testing.assert_allclose(embedding_matrix(table)[0], expected, atol=1e-5)
    b_rows = [r for r in table.to_pylist() if r["file"].endswith("b.sgy")]
    assert {(r["inline_first"], r["crossline_first"], r["crossline_last"]) for r in b_rows} == {
        (10, 0, 63), (10, 6, 69), (11, 0, 63), (11, 6, 69)}
