"""Generation end to end: determinism, splits, resume after a kill, storage, loading, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from seisbind.cli import main as seisbind_main
from seisbind.data.dataset import load_paired
from seisbind.data.generate import assign_splits, generate
from seisbind.data.scenarios import get_scenario

# A small section (600 m x 300 m at 10 m), short window, small image: a fraction of a second each.
TINY_QUAKE = dict(
    width_m=600.0, depth_m=300.0, grid_spacing=10.0, image_height=32, image_width=32, n_stations=4,
    station_margin_m=50.0, sources_per_geology=2, source_depth_m=(60.0, 240.0), wavelet_freq=3.0,
    window_seconds=2.0, n_layers=(2, 4),
)  # fmt: skip


def rows_by_id(path):
    dd = load_paired(path, decode=False)
    out = {}
    for split in dd:
        for row in dd[split].with_format("numpy"):
            out[int(row["geology_id"])] = row
    return out


def test_same_seed_same_bytes_whatever_the_workers_and_chunks(tmp_path):
    a = generate(tmp_path / "a", "quake", 5, seed=7, workers=1, chunk_size=2, config=TINY_QUAKE, progress=False)
    b = generate(tmp_path / "b", "quake", 5, seed=7, workers=2, chunk_size=3, config=TINY_QUAKE, progress=False)
    c = generate(tmp_path / "c", "quake", 5, seed=8, workers=1, chunk_size=5, config=TINY_QUAKE, progress=False)
    ra, rb, rc = rows_by_id(a.dataset_path), rows_by_id(b.dataset_path), rows_by_id(c.dataset_path)
    assert sorted(ra) == sorted(rb) == list(range(5))
    for gid in ra:
        for key in ("image", "waveforms", "waveform_scale", "vp", "caption", "split"):
            assert np.asarray(ra[gid][key]).tobytes() == np.asarray(rb[gid][key]).tobytes(), (gid, key)
    assert ra[0]["image"].tobytes() != rc[0]["image"].tobytes()  # another seed, another geology
    assert a.pairs == 5 * TINY_QUAKE["sources_per_geology"]


def test_quake_rows_hold_what_the_schema_promises(tmp_path):
    report = generate(tmp_path, "quake", 3, config=TINY_QUAKE, progress=False)
    train = load_paired(report.dataset_path, "train", decode=False)
    assert train.features["image"].dtype == "float16" and train.features["waveforms"].dtype == "float16"
    raw = train.with_format("numpy")[0]
    assert raw["image"].shape == (32, 32)
    assert raw["waveforms"].shape == (2, 4, 3, 201)  # (sources, stations, ZNE, 2 s at 100 Hz + 1)
    assert raw["channels"] == "ZNE" and raw["sampling_rate"] == 100.0
    assert np.abs(raw["waveforms"]).max() == 1.0  # each trace stored scaled to peak 1
    assert np.all(raw["waveforms"][:, :, 2] == 0)  # E: no out-of-plane motion in P-SV
    np.testing.assert_allclose(
        raw["hypocentral_distance_m"], np.hypot(raw["epicentral_distance_m"], raw["source_depth_m"][:, None]), rtol=1e-5
    )
    assert raw["caption"].startswith(f"{raw['n_layers']} ") and f"Vs30 {raw['vs30']:.0f}" in raw["caption"]
    # Stored float16 loses nothing that matters: the simulation itself, redone, agrees to 0.1% of peak.
    sc = get_scenario("quake")
    from seisbind.data.generate import geology_rng

    fresh = sc.make_sample(sc.make_config(**TINY_QUAKE), int(raw["geology_id"]), geology_rng(0, int(raw["geology_id"])))
    decoded = load_paired(report.dataset_path, "train")[0]
    truth = fresh.row["waveforms"].astype(np.float32) * fresh.row["waveform_scale"][..., None, None]
    np.testing.assert_allclose(decoded["waveforms"].numpy(), truth, atol=1e-3 * np.abs(truth).max())
    # Images come back as stored (the image tower scales them), with a channel axis.
    img = decoded["image"]
    assert img.shape == (1, 32, 32)
    np.testing.assert_array_equal(img[0].numpy(), np.asarray(raw["image"], np.float32))


def test_splits_are_by_geology_and_cover_everything():
    names = assign_splits(50, seed=3)
    assert sorted(set(names)) == ["test", "train", "validation"]
    assert (names == "train").sum() == 40 and (names == "validation").sum() == 5
    assert list(assign_splits(50, seed=3)) == list(names)
    assert list(assign_splits(3, seed=0)).count("test") == 1


def test_fixed_held_out_sizes_grow_only_the_training_split():
    names = assign_splits(420, seed=3, split_sizes=(10, 10))
    assert (names == "validation").sum() == 10 and (names == "test").sum() == 10 and (names == "train").sum() == 400
    # the default sizes are the fractions' (a tenth each), so passing them changes nothing
    assert list(assign_splits(50, seed=3, split_sizes=(5, 5))) == list(assign_splits(50, seed=3))
    for bad in [(0, 5), (5, 45), ("a", 1), (5,)]:
        with pytest.raises(ValueError, match="validation|whole numbers"):
            assign_splits(50, seed=3, split_sizes=bad)


def test_held_out_sizes_are_part_of_the_plan(tmp_path):
    generate(tmp_path / "a", "openfwi", 12, split_sizes=(2, 3), progress=False)
    plan = json.loads((tmp_path / "a" / "generation.json").read_text())
    assert plan["split_sizes"] == {"validation": 2, "test": 3}
    assert len(load_paired(tmp_path / "a", "test")) == 3 and len(load_paired(tmp_path / "a", "train")) == 7
    with pytest.raises(ValueError, match="different"):  # resuming with other sizes, or none, is refused
        generate(tmp_path / "a", "openfwi", 12, progress=False)
    # sizes equal to the default fractions' write the default plan, which resumes without them
    generate(tmp_path / "b", "openfwi", 10, split_sizes=(1, 1), progress=False)
    assert "split_sizes" not in json.loads((tmp_path / "b" / "generation.json").read_text())
    assert generate(tmp_path / "b", "openfwi", 10, progress=False).chunks_skipped == 2


def test_killed_generation_resumes_without_redoing_finished_chunks(tmp_path):
    out = tmp_path / "gen"
    cmd = [sys.executable, "-m", "seisbind", "generate", "--scenario", "openfwi", "--num-geologies", "40",
           "--chunk-size", "2", "--workers", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "chunks" / "chunk-00000" / "dataset_dict.json"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the first chunk never finished"
    stale = out / "chunks" / ".tmp-chunk-00019-999999"  # as a kill during a save leaves it
    stale.mkdir()
    done_before = sorted(p.name for p in (out / "chunks").glob("chunk-*") if (p / "dataset_dict.json").exists())
    stamp = first.stat().st_mtime_ns
    assert 0 < len(done_before) < 20
    finished = []
    report = generate(out, "openfwi", 40, chunk_size=2, progress=False, on_chunk=finished.append)
    assert report.chunks_skipped == len(done_before)
    assert not set(finished) & {int(n.split("-")[1]) for n in done_before}  # none redone
    assert report.geologies_generated == 40 - 2 * len(done_before)
    rows = rows_by_id(report.dataset_path)
    assert sorted(rows) == list(range(40))  # every geology exactly once
    # and the resumed dataset equals an uninterrupted one
    clean = rows_by_id(generate(tmp_path / "clean", "openfwi", 40, chunk_size=8, progress=False).dataset_path)
    for gid in (0, 1, 39):
        assert rows[gid]["waveforms"].tobytes() == clean[gid]["waveforms"].tobytes()
    assert first.stat().st_mtime_ns == stamp  # the finished chunk was left as it was
    assert not stale.exists()


def test_sharded_generation_completes_when_the_last_shard_finishes(tmp_path):
    kw = dict(chunk_size=2, progress=False)
    first = generate(tmp_path, "openfwi", 6, shard=(0, 2), **kw)
    assert first.dataset_path is None and first.geologies_generated == 4  # chunks 0 and 2
    with pytest.raises(FileNotFoundError, match="unfinished"):
        load_paired(tmp_path)
    second = generate(tmp_path, "openfwi", 6, shard=(1, 2), **kw)
    assert second.dataset_path is not None and second.geologies_generated == 2
    assert sorted(rows_by_id(second.dataset_path)) == list(range(6))


def test_a_folder_of_another_generation_is_refused(tmp_path):
    generate(tmp_path, "openfwi", 2, progress=False)
    with pytest.raises(ValueError, match="different"):
        generate(tmp_path, "openfwi", 3, progress=False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num-geologies", "-1"], "num_geologies"),
        (["--set", "width_m=-5"], "width_m must be positive"),
        (["--set", "courant_number=0.95"], "unstable time step"),
        (["--grid-spacing", "60"], "too few points per wavelength"),
        (["--set", "vs_min=4000"], "vs_min"),
        (["--image-size", "8"], "16 x 16"),
        (["--shard", "3/2"], "shard"),
        (["--num-geologies", "10", "--test-geologies", "9"], "leave some"),
    ],
)
def test_bad_parameters_fail_before_any_simulation(tmp_path, capsys, args, message):
    rc = seisbind_main(["generate", "--out", str(tmp_path / "x"), "--no-progress", *args])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "chunks").exists()


def test_generation_json_records_the_plan(tmp_path):
    generate(tmp_path, "quake", 1, seed=5, config=TINY_QUAKE, progress=False)
    plan = json.loads((tmp_path / "generation.json").read_text())
    assert plan["scenario"] == "quake" and plan["seed"] == 5 and plan["config"]["grid_spacing"] == 10.0


def test_a_second_run_of_the_same_shard_is_refused_while_the_first_holds_the_folder(tmp_path):
    from seisbind.data.generate import shard_lock

    out = tmp_path / "d"
    out.mkdir()
    with shard_lock(out, 0, 1):
        with pytest.raises(ValueError, match=r"being generated by another seisbind generate \(pid \d+\) for shard 0/1"):
            generate(out, "quake", 4, seed=3, workers=1, chunk_size=2, config=TINY_QUAKE, progress=False)
        with shard_lock(out, 1, 2):  # another shard of the plan may run at the same time
            pass
    report = generate(out, "quake", 4, seed=3, workers=1, chunk_size=2, config=TINY_QUAKE, progress=False)
    assert report.dataset_path is not None  # released: the folder generates normally afterwards


def test_a_truncated_chunk_is_named_in_one_line(tmp_path):
    out = tmp_path / "d"
    report = generate(out, "quake", 4, seed=3, workers=1, chunk_size=2, config=TINY_QUAKE, progress=False)
    arrow = sorted((out / "chunks").rglob("*.arrow"))[0]
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 3])
    with pytest.raises(ValueError, match=r"chunk-\d+ is corrupt .*delete that chunk folder and rerun"):
        load_paired(report.dataset_path, "train")
