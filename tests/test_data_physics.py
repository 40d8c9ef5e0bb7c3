"""Physical checks of the elastic solver set-up: arrival times, reflections, the free surface."""

import numpy as np
import pytest
from scipy.signal import hilbert

from seisbind.data.elastic import MomentTensorSource, simulate_quake

DX, VP, VS, RHO = 5.0, 2000.0, 1000.0, 2000.0
F0, SR = 10.0, 100.0
T_PEAK = 1.5 / F0  # the Ricker source time function peaks here


def cell_centre(metres: float) -> float:
    return (round(metres / DX - 0.5) + 0.5) * DX


def envelope(trace_zn: np.ndarray) -> np.ndarray:
    """Vector envelope of the in-plane (Z, N) motion."""
    return np.sqrt((np.abs(hilbert(trace_zn, axis=-1)) ** 2).sum(0))


def homogeneous(nz=200, nx=400, vp=VP, vs=VS, rho=RHO):
    return np.full((nz, nx), vp), np.full((nz, nx), vs), np.full((nz, nx), rho)


def test_direct_p_and_s_arrive_at_distance_over_velocity():
    # A double couple at 22.5 deg radiates both P and S towards the stations.
    src = MomentTensorSource.from_mechanism(500.0, 1000.0, 1e10, 22.5, 0.0)
    stations = np.array([1000.0, 1150.0, 1250.0, 1400.0, 1600.0, 1800.0])
    n = 151
    res = simulate_quake(*homogeneous(), DX, [src], stations, F0, SR, n)
    w = res.waveforms[0]
    assert np.isfinite(w).all()
    assert np.all(w[:, 2] == 0)  # E is out of plane: P-SV motion has none
    t = np.arange(n) / SR
    for k, x in enumerate(stations):
        r = np.hypot(cell_centre(500.0) - DX / 2, cell_centre(1000.0) - cell_centre(x))
        env = envelope(w[k, :2])
        # S is checked only inside its critical angle at the free surface (asin(Vs/Vp) = 30 deg):
        # beyond it the surface reflection shifts the S phase.
        incidence = np.degrees(np.arctan2(abs(x - 1000.0), 500.0))
        for v in (VP, VS) if incidence < 30.0 else (VP,):
            expected = T_PEAK + r / v
            win = np.abs(t - expected) < 0.08
            picked = t[win][np.argmax(env[win])]
            assert abs(picked - expected) <= 2 / SR, (x, v, picked, expected)
        # Nothing travels faster than P.
        assert env[t < T_PEAK + r / VP - 0.1].max() < 0.03 * env.max()


def test_two_layer_reflection_arrives_at_image_source_time():
    h, vp2, vs2, rho2 = 300.0, 3500.0, 1800.0, 2400.0
    vp, vs, rho = homogeneous()
    below = (np.arange(vp.shape[0]) + 0.5) * DX > h
    vp[below], vs[below], rho[below] = vp2, vs2, rho2
    # An explosion just below the surface; the station 200 m away.
    src = MomentTensorSource.from_mechanism(50.0, 500.0, 1e10, 0.0, 1.0)
    stations = np.array([700.0])
    n = 101
    layered = simulate_quake(vp, vs, rho, DX, [src], stations, F0, SR, n).waveforms[0, 0]
    uniform = simulate_quake(*homogeneous(), DX, [src], stations, F0, SR, n).waveforms[0, 0]
    reflected = envelope(layered[:2] - uniform[:2])  # only what the interface sent back
    offset = cell_centre(700.0) - cell_centre(500.0)
    interface = (np.ceil(h / DX - 0.5) + 0.0) * DX  # first cell centre below h is at this depth + DX/2
    image_depth = 2 * interface - cell_centre(50.0) - DX / 2  # source mirrored in the interface, seen from the surface row
    expected = T_PEAK + np.hypot(offset, image_depth) / VP
    t = np.arange(n) / SR
    # Converted and multiple waves come later; the PP reflection is the strongest thing near its time.
    win = np.abs(t - expected) <= 0.1
    assert abs(t[win][np.argmax(reflected[win])] - expected) <= 2 / SR
    assert reflected[win].max() > 0.2 * reflected.max()
    # and the direct wave is identical in both (it never met the interface)
    direct = np.abs(t - (T_PEAK + offset / VP)) < 0.05
    np.testing.assert_allclose(layered[:2, direct], uniform[:2, direct], atol=0.05 * np.abs(uniform).max())


def test_free_surface_doubles_vertically_incident_p():
    # At a free surface the vertical velocity of a vertically incident P wave is twice the
    # incident one; in a whole space (absorbing top) it is just the incident wave.
    src = MomentTensorSource.from_mechanism(600.0, 750.0, 1e10, 0.0, 1.0)
    grids = homogeneous(nz=200, nx=300)
    peak = {}
    t = np.arange(101) / SR
    win = np.abs(t - (T_PEAK + 600.0 / VP)) < 0.1
    for free in (True, False):
        w = simulate_quake(*grids, DX, [src], np.array([750.0]), F0, SR, 101, free_surface=free).waveforms[0, 0]
        peak[free] = np.abs(w[0, win]).max()
    assert 1.85 < peak[True] / peak[False] < 2.15


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda vp, vs, rho: vs.__setitem__((5, 5), 2500.0), "Vp/Vs"),
        (lambda vp, vs, rho: vp.__setitem__((5, 5), np.nan), "NaN"),
        (lambda vp, vs, rho: rho.__setitem__((5, 5), 0.0), "positive"),
    ],
)
def test_bad_models_are_refused_before_simulating(change, message):
    vp, vs, rho = homogeneous(nz=20, nx=20)
    change(vp, vs, rho)
    src = MomentTensorSource.from_mechanism(50.0, 50.0, 1e10, 0.0, 1.0)
    with pytest.raises(ValueError, match=message):
        simulate_quake(vp, vs, rho, DX, [src], np.array([50.0]), F0, SR, 11)


def test_default_quake_setup_stays_stable_for_the_whole_window():
    # Soft soils between the free surface and a side PML grew a late-time instability with the
    # standard PML on this salt-diapir geology (seed 0, geology 2); the multiaxial PML keeps it flat.
    from seisbind.data.generate import geology_rng
    from seisbind.data.geology import random_geology
    from seisbind.data.scenarios import get_scenario

    # The four families the default drew from then: the same family choice, the same ground.
    cfg = get_scenario("quake").make_config(families=("flat", "folded", "faulted", "intrusion"))
    geology = random_geology(geology_rng(0, 2), cfg.prior())
    assert geology.body is not None and geology.body.kind == "salt"
    vp, vs, rho = geology.rasterize(*cfg.grid_shape)
    src = [MomentTensorSource.from_mechanism(1000.0, 2000.0, 1e14, 30.0, 0.1)]
    w = simulate_quake(
        vp, vs, rho, cfg.grid_spacing, src, np.linspace(200, 3800, 16), cfg.wavelet_freq, cfg.sample_rate,
        cfg.n_samples, mpml_fraction=cfg.mpml_fraction,
    ).waveforms[0]  # fmt: skip
    early, late = np.abs(w[..., :1500]).max(), np.abs(w[..., 2500:]).max()
    assert late < 0.01 * early


@pytest.mark.parametrize("family", ["unconformity", "graben", "channel", "composite"])
def test_quake_samples_of_the_history_families_simulate_and_fit_the_schema(family):
    import datasets

    from seisbind.data.generate import geology_rng
    from seisbind.data.scenarios import get_scenario

    sc = get_scenario("quake")
    # A small section (600 m x 300 m at 10 m) and a 2 s window: a fraction of a second each.
    cfg = sc.make_config(
        width_m=600.0, depth_m=300.0, grid_spacing=10.0, image_height=32, image_width=32, n_stations=4,
        station_margin_m=50.0, sources_per_geology=2, source_depth_m=(60.0, 240.0), wavelet_freq=3.0,
        window_seconds=2.0, n_layers=(2, 4), families=(family,),
    )  # fmt: skip
    sc.validate(cfg)
    for gid in range(2):
        row = sc.make_sample(cfg, gid, geology_rng(0, gid)).row
        assert row["family"] == family
        w = row["waveforms"].astype(np.float32) * row["waveform_scale"][..., None, None]
        assert np.isfinite(w).all() and np.abs(w).max() > 0
        assert np.all(row["waveforms"][:, :, 2] == 0)  # P-SV: nothing out of plane
        for grid in ("vp", "vs", "rho"):
            assert np.isfinite(row[grid].astype(np.float32)).all()
        assert row["caption"].startswith(f"{row['n_layers']} ")
        # The row has exactly the schema's columns and types (the split is added by the generator).
        features = sc.features(cfg)
        assert set(row) | {"split"} == set(features)
        datasets.Dataset.from_list([{**row, "split": "train"}], features=features)


def test_every_velocity_scaled_records_the_same_wavefield_compressed_in_time():
    """The wave equation's one time scale: the ground with Vp, Vs x a (Gardner density x a**0.25)
    and a source wavelet of a f records u(x, a t). ``stretch_record`` is what the training's
    ``velocity_scale`` applies to a record; here it is checked against the solver, a reflection
    and converted waves included."""
    from seisbind.training.augment import stretch_record

    h = 250.0
    vp, vs, rho = homogeneous(nz=120, nx=240)
    below = (np.arange(vp.shape[0]) + 0.5) * DX > h
    vp[below], vs[below], rho[below] = 3200.0, 1700.0, 2300.0
    src = MomentTensorSource.from_mechanism(150.0, 500.0, 1e10, 30.0, 0.2)
    stations = np.array([500.0, 650.0, 800.0])
    # 5 Hz: 20 samples a period at 100 Hz, where a cubic spline through the samples is accurate
    # (the quickstart's 2.4 Hz has 42).
    f0, n, a = 5.0, 101, 1.15

    def record(scale):
        return simulate_quake(vp * scale, vs * scale, rho * scale**0.25, DX, [src], stations, f0 * scale, SR,
                              n).waveforms[0]

    base, scaled = record(1.0), record(a)
    live = a * np.arange(n) <= n - 1

    def misfit(x):  # after the best single amplitude factor (the source's strength scales too)
        x, y = x[..., live], scaled[..., live]
        return np.linalg.norm(np.vdot(x, y) / np.vdot(x, x) * x - y) / np.linalg.norm(y)

    assert misfit(stretch_record(base, a)) < 0.03  # 0.016: linear interpolation at 20 samples a period
    assert misfit(base) > 0.2  # not the same record without the stretch
