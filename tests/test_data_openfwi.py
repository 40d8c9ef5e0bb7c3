"""The OpenFWI scenario: layout, sign, physics, and the .npy round trip."""

import deepwave
import numpy as np
import pytest
import torch

from seisbind.data.acoustic import simulate_shot_gathers
from seisbind.data.dataset import load_paired
from seisbind.data.generate import generate
from seisbind.data.openfwi_io import export_openfwi, find_pairs, import_openfwi


def test_direct_wave_moveout_and_openfwi_sign():
    v, dx, f0, dt = 2000.0, 10.0, 15.0, 0.001
    gathers, _ = simulate_shot_gathers(np.full((70, 70), v), dx, np.array([0]), np.arange(70), 1, f0, dt, 1000)
    assert gathers.shape == (1, 1000, 70)
    t = np.arange(1000) * dt
    picks = {}
    for rec in (20, 40, 60):  # far enough that the direct wave is separate from the source
        expected = 1.5 / f0 + rec * dx / v
        win = np.abs(t - expected) < 0.03
        picks[rec] = t[win][np.argmax(np.abs(gathers[0, win, rec]))]
        # A 2-D line source lags its 3-D pulse by 45 deg of phase: 8.3 ms at 15 Hz.
        assert 0 <= picks[rec] - expected <= 0.010
    # The lag is the same everywhere, so the moveout is exactly offset / velocity (within 2 samples).
    assert abs((picks[60] - picks[20]) - 40 * dx / v) <= 2 * dt
    assert abs((picks[40] - picks[20]) - 20 * dx / v) <= 2 * dt
    # OpenFWI's records have the opposite sign to deepwave's pressure output: deepwave's direct
    # wave has a negative main lobe for a positive Ricker, OpenFWI's (and ours) a positive one.
    raw = deepwave.scalar(
        torch.full((70, 70), v), dx, dt, source_amplitudes=deepwave.wavelets.ricker(f0, 1000, dt, 1.5 / f0)[None, None],
        source_locations=torch.tensor([[[1, 0]]]), receiver_locations=torch.tensor([[[1, 40]]]), pml_width=20,
        pml_freq=f0, courant_number=0.7,
    ).receiver_amplitudes[0, 0].numpy()  # fmt: skip
    lobe = gathers[0, :, 40]
    assert raw[np.argmax(np.abs(raw))] < 0 < lobe[np.argmax(np.abs(lobe))]
    np.testing.assert_allclose(lobe, -raw, atol=1e-6 * np.abs(raw).max())


def test_generated_openfwi_has_the_published_layout(tmp_path):
    report = generate(tmp_path, "openfwi", 3, progress=False)
    row = load_paired(report.dataset_path, "train", decode=False).with_format("numpy")[0]
    assert row["image"].shape == (70, 70) and row["waveforms"].shape == (1, 70, 5, 1000)
    assert 1500 <= row["image"].min() and row["image"].max() <= 4500
    assert row["sampling_rate"] == 1000.0


@pytest.mark.parametrize("family", ["flat", "folded", "faulted", "unconformity", "graben", "channel", "composite"])
def test_every_openfwi_family_stays_in_the_velocity_range(family):
    from seisbind.data.generate import geology_rng
    from seisbind.data.scenarios import get_scenario
    from seisbind.data.scenarios.openfwi import OPENFWI_FAMILIES

    assert family in OPENFWI_FAMILIES
    sc = get_scenario("openfwi")
    cfg = sc.make_config(families=(family,), n_samples=200)  # a short record: the map is what is checked
    sc.validate(cfg)
    for gid in range(3):
        row = sc.make_sample(cfg, gid, geology_rng(1, gid)).row
        v = row["image"]
        assert row["family"] == family and v.shape == (70, 70) and v.dtype == np.float32
        assert 1500 <= v.min() and v.max() <= 4500 and np.isfinite(row["waveforms"]).all()
        assert row["caption"].startswith(f"velocity map, {row['n_layers']} ")
        assert row["fault_present"] == (row["fault_throw_m"] > 0)
        if family in ("flat", "folded", "graben"):
            # Normal faults and folds keep the layer order: velocity never drops with depth.
            assert (np.diff(v, axis=0) >= 0).all()
        if family == "graben":
            assert row["fault_present"] and "graben or horst" in row["caption"]


def test_npy_round_trip_preserves_arrays_and_shapes(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "openfwi"
    src.mkdir()
    data = [rng.standard_normal((4, 5, 1000, 70)).astype(np.float32) for _ in range(2)]
    model = [rng.uniform(1500, 4500, (4, 1, 70, 70)).astype(np.float32) for _ in range(2)]
    for k in range(2):
        np.save(src / f"data{k + 1}.npy", data[k])
        np.save(src / f"model{k + 1}.npy", model[k])
    path = import_openfwi(src, tmp_path / "ds")
    back = tmp_path / "back"
    all_data, all_model = np.concatenate(data), np.concatenate(model)
    seen = 0
    for split in ("train", "validation", "test"):
        ids = np.asarray(load_paired(path, split, decode=False)["geology_id"])
        export_openfwi(path, back / split, split)
        (d, m), = find_pairs(back / split)
        d, m = np.load(d), np.load(m)
        assert d.shape == (len(ids), 5, 1000, 70) and m.shape == (len(ids), 1, 70, 70)
        np.testing.assert_array_equal(d, all_data[ids])
        np.testing.assert_array_equal(m, all_model[ids])
        seen += len(ids)
    assert seen == 8


def test_broken_openfwi_folders_are_refused(tmp_path):
    np.save(tmp_path / "data1.npy", np.zeros((2, 5, 10, 70), np.float32))
    with pytest.raises(ValueError, match="without a partner"):
        find_pairs(tmp_path)
    np.save(tmp_path / "model1.npy", np.zeros((3, 1, 70, 70), np.float32))
    with pytest.raises(ValueError, match="has 2 samples"):
        import_openfwi(tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        find_pairs(tmp_path / "nowhere")


def test_a_mirrored_shot_gather_pair_is_the_simulation_of_the_mirrored_map():
    """mirror_pair on one-shot-a-channel records: the stations and the shots reversed are what the
    solver records through the map flipped left to right (shots placed symmetrically)."""
    from seisbind.training.augment import mirror_pair

    n, dx, f0, dt, nt = 41, 10.0, 15.0, 0.001, 300
    z, x = np.mgrid[0:n, 0:n]
    velocity = np.where(z > 12 + 0.4 * x, 3000.0, 1800.0).astype(np.float32)  # a dipping interface
    velocity[25:30, 5:12] = 2500.0  # and a body on the left only
    shots, receivers = np.array([0, 20, 40]), np.arange(n)

    def record(v):  # (stations, shots, time), as the rows hold it
        return simulate_shot_gathers(v, dx, shots, receivers, 1, f0, dt, nt)[0].transpose(2, 0, 1)

    image, mirrored = mirror_pair(velocity[None], record(velocity), "shot0,shot1,shot2")
    np.testing.assert_array_equal(image[0], velocity[:, ::-1])
    direct = record(np.ascontiguousarray(velocity[:, ::-1]))
    peak = np.abs(direct).max()
    np.testing.assert_allclose(mirrored, direct, atol=1e-4 * peak)
    # The shots' order matters: with the stations reversed alone, the outer shots disagree.
    assert np.abs(record(velocity)[::-1] - direct).max() > 0.1 * peak
