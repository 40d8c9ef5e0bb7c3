"""Geologies, labels and section images: properties checked against values worked out by hand."""

import numpy as np
import pytest

from seisbind.data.geology import (
    EVENT_KINDS,
    FAMILIES,
    Body,
    Fault,
    Fold,
    GeologyPrior,
    Tilt,
    Unconformity,
    gardner_density,
    layered_geology,
    random_geology,
)
from seisbind.data.labels import caption, depth_to_vs, geology_labels, vs30
from seisbind.data.section import reflectivity, ricker_depth, section_image
from seisbind.data.validation import MIN_VP_OVER_VS


def two_layer():
    # 10 m of 200 m/s over 400 m/s: Vs30 = 30 / (10/200 + 20/400) = 300 m/s.
    return layered_geology([10.0, 40.0], [600.0, 1000.0, 2000.0], [200.0, 400.0, 900.0], [1800.0, 1900.0, 2200.0], 1000.0, 200.0)


def test_vs30_and_depth_to_bedrock_match_hand_values():
    g = two_layer()
    assert vs30(g, 500.0) == pytest.approx(300.0, rel=1e-3)
    assert depth_to_vs(g, 500.0, 760.0) == pytest.approx(50.0, abs=0.5)
    assert depth_to_vs(g, 500.0, 5000.0) == g.depth_m  # never reached: the section depth


NEW_FAMILIES = ("unconformity", "graben", "channel", "composite")
FAULTED = {"faulted": True, "graben": True, "composite": None}  # None: depends on the history


@pytest.mark.parametrize("family", FAMILIES)
def test_random_geologies_are_physical(family):
    prior = GeologyPrior()
    for seed in range(5 if family not in NEW_FAMILIES else 20):
        g = random_geology(np.random.default_rng(seed), prior, family)
        vp, vs, rho = g.rasterize(50, 100)
        assert np.isfinite(vp).all() and np.isfinite(vs).all() and np.isfinite(rho).all()
        assert vs.min() >= prior.vs_min - 1e-3 and vs.max() <= prior.vs_max + 1e-3
        assert (vp / vs).min() > MIN_VP_OVER_VS
        assert 1500 < rho.min() and rho.max() < 3000
        labels = geology_labels(g)
        assert labels["family"] == family
        expect_fault = FAULTED.get(family, False)
        assert labels["fault_present"] == (bool(g.faults) if expect_fault is None else expect_fault)
        assert labels["fault_present"] == (labels["fault_throw_m"] > 0)
        if labels["fault_present"]:
            assert labels["fault_throw_m"] == max(f.throw_m for f in g.faults)
            assert labels["fault_kind"] in ("normal", "reverse") and 0 < labels["fault_dip_deg"] < 90
        assert prior.vs_min <= labels["vs30"] <= prior.vs_max
        assert 0 <= labels["depth_vs760_m"] < g.depth_m
        text = caption(labels)
        assert text.startswith(f"{g.n_layers} ") and "Vs30" in text


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_geology(family):
    a, b = (random_geology(np.random.default_rng(11), GeologyPrior(), family).rasterize(30, 60) for _ in range(2))
    c = random_geology(np.random.default_rng(12), GeologyPrior(), family).rasterize(30, 60)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


# vp.mean() of rasterize(20, 40) for seed 0 before the history families were added (commit 1b7e004).
TEMPLATE_VP_MEANS = {"flat": 2010.6396, "folded": 2030.9070, "faulted": 2045.2219, "intrusion": 2420.0679}


@pytest.mark.parametrize("family", sorted(TEMPLATE_VP_MEANS))
def test_template_families_draw_the_same_ground_as_before(family):
    rng = np.random.default_rng(0)
    g = random_geology(rng, GeologyPrior(), family)
    assert float(g.rasterize(20, 40)[0].mean()) == pytest.approx(TEMPLATE_VP_MEANS[family], rel=1e-6)
    assert g.events == () and g.compaction == 0.0
    # and the same family picked from the original four, the same choice and the same ground
    old = GeologyPrior(families=("flat", "folded", "faulted", "intrusion"))
    picked = random_geology(np.random.default_rng(2), old)
    assert picked.family == "intrusion" and picked.body.kind == "salt"


def test_normal_fault_drops_the_hanging_wall_by_the_throw():
    g = random_geology(np.random.default_rng(3), GeologyPrior(heterogeneity_probability=0.0), "faulted")
    g.fold_amplitude[:] = 0.0
    g.fault.kind, g.fault.throw_m, g.fault.dip_deg, g.fault.x_top = "normal", 150.0, 60.0, 2000.0
    g.fault.dips_towards_positive_x = True
    z_if = g.interface_depth[-1]
    foot, hang = 500.0, 3900.0  # far either side of the fault plane at that depth
    assert g.layer_index(np.array(foot), np.array(z_if + 1.0)) == g.n_layers - 1
    # on the hanging wall the same interface now lies 150 m deeper
    assert g.layer_index(np.array(hang), np.array(z_if + 1.0)) == g.n_layers - 2
    assert g.layer_index(np.array(hang), np.array(z_if + 151.0)) == g.n_layers - 1


def test_density_follows_gardner():
    assert gardner_density(np.array(2000.0)) == pytest.approx(310.0 * 2000.0**0.25)


def test_section_of_one_interface_is_the_wavelet_scaled_by_the_reflection_coefficient():
    g = layered_geology([100.0], [2000.0, 3000.0], [1000.0, 1500.0], [2000.0, 2400.0], 200.0, 200.0)
    img = section_image(g, 64, 32, 4.0, 0.0, np.random.default_rng(0))
    r = (3000 * 2400 - 2000 * 2000) / (3000 * 2400 + 2000 * 2000)
    column = img[:, 10]
    k = int(np.argmax(column))
    assert k == 31  # the last pixel above 100 m of 200 m on 64 pixels: its reflection coefficient
    assert column[k] == pytest.approx(r, rel=1e-5)
    assert ricker_depth(4.0).max() == 1.0
    np.testing.assert_allclose(img, np.broadcast_to(img[:, :1], img.shape))  # flat layers: columns alike


def test_reflectivity_sign_and_value():
    r = reflectivity(np.array([[1.0], [3.0], [3.0]]))
    np.testing.assert_allclose(r[:, 0], [0.5, 0.0, 0.0])


def test_image_noise_level_is_relative_rms():
    g = random_geology(np.random.default_rng(1), GeologyPrior(), "flat")
    clean = section_image(g, 128, 128, 6.0, 0.0, np.random.default_rng(0))
    noisy = section_image(g, 128, 128, 6.0, 0.5, np.random.default_rng(0))
    ratio = np.sqrt(np.mean((noisy - clean) ** 2)) / np.sqrt(np.mean(clean**2))
    assert ratio == pytest.approx(0.5, rel=1e-3)


def _plain(family, seed):
    """A geology of ``family`` without the random field and the compaction trend."""
    g = random_geology(np.random.default_rng(seed), GeologyPrior(heterogeneity_probability=0.0), family)
    g.compaction = 0.0
    return g


def boundaries(g, x, step=0.25):
    """Depths (and the layers either side) where the layer index changes down the column at x."""
    z = np.arange(step / 2, g.depth_m, step)
    idx = g.layer_index(np.full_like(z, x), z)
    k = np.flatnonzero(np.diff(idx))
    return z[k] + step / 2, idx[k], idx[k + 1]


@pytest.mark.parametrize("seed", range(6))
def test_unconformity_truncates_tilted_layers_under_flat_cover(seed):
    g = _plain("unconformity", seed)
    tilt, erosion = [e for e in g.events if isinstance(e, (Tilt, Unconformity))]
    g.events = (tilt, erosion)  # drop the optional fold; keep the tilt and the erosion
    erosion.relief = 0.0
    n_cover = erosion.n_cover
    assert erosion.first_layer == 0 and 1 <= n_cover and g.n_layers - n_cover >= 2
    slope = np.tan(np.radians(tilt.angle_deg))
    c = np.cos(np.radians(tilt.angle_deg))
    subcrop = []
    for x in np.linspace(0.05, 0.95, 7) * g.width_m:
        zb, above, below = boundaries(g, x)
        # Above the erosion surface: the cover's flat interfaces, the same at every x.
        cover = below < n_cover
        np.testing.assert_allclose(zb[cover], erosion.interfaces[above[cover]], atol=0.25)
        # The erosion surface itself: flat, from the deepest cover layer to whatever older layer is there.
        (k,) = np.flatnonzero((above < n_cover) & (below >= n_cover))
        assert zb[k] == pytest.approx(erosion.depth, abs=0.25) and above[k] == n_cover - 1
        subcrop.append(below[k])
        # Below it: the older interfaces are tilted planes, deeper by tan(angle) per metre of x.
        for zi, a, b in zip(zb[k + 1 :], above[k + 1 :], below[k + 1 :]):
            j = a - n_cover
            assert b == a + 1
            expected = tilt.z_pivot + (g.interface_depth[j] - tilt.z_pivot) / c + slope * (x - tilt.x_pivot)
            assert zi == pytest.approx(expected, abs=0.5)
    # the deepest cover layer sits on different older layers along the surface: truncation
    if seed in (0, 1, 2):
        assert len(set(subcrop)) > 1


@pytest.mark.parametrize("kind", ["graben", "horst"])
def test_graben_drops_the_block_between_its_faults_and_a_horst_its_sides(kind):
    g = _plain("graben", 4)
    g.fold_amplitude[:] = 0.0
    n = g.n_layers
    g.interface_depth = np.linspace(100.0, 1400.0, n - 1)
    (graben,) = g.events
    graben.kind = kind
    graben.faults = (
        Fault(1000.0, 60.0, 150.0, "normal", dips_towards_positive_x=kind == "graben"),
        Fault(3000.0, 60.0, 150.0, "normal", dips_towards_positive_x=kind == "horst"),
    )
    centre, sides = np.array(2000.0), np.array([50.0, 3950.0])  # a horst's planes part with depth
    for k, d in enumerate(g.interface_depth):
        # The planes of a graben meet at 1000 tan 60 = 1732 m: every interface crosses its middle.
        dropped, fixed = (centre, sides) if kind == "graben" else (sides, centre)
        assert np.all(g.layer_index(dropped, np.full(dropped.shape, d + 1.0)) == k)  # still above: down by the throw
        assert np.all(g.layer_index(dropped, np.full(dropped.shape, d + 151.0)) == k + 1)
        assert np.all(g.layer_index(fixed, np.full(fixed.shape, d + 1.0)) == k + 1)
    labels = geology_labels(g)
    assert labels["fault_present"] and labels["fault_kind"] == "normal"
    assert labels["fault_throw_m"] == 150.0 and labels["fault_dip_deg"] == 60.0


@pytest.mark.parametrize("seed", range(5))
def test_channel_fills_sit_on_their_palaeo_surface_with_their_own_rock(seed):
    g = _plain("channel", seed)
    *channels, fold = g.events
    assert isinstance(fold, Fold) and channels and all(isinstance(b, Body) and b.kind == "channel" for b in channels)
    assert geology_labels(g)["body_kind"] == "channel" and not geology_labels(g)["fault_present"]
    b = channels[-1]  # the youngest: no other channel cuts it
    assert b.zc == g.interface_depth[b.host_layer - 1]
    x = np.array(b.xc)
    top = b.zc + fold.amplitude * np.sin(2 * np.pi * b.xc / fold.wavelength + fold.phase)  # folded with the layers
    lo, hi = g.vs_bounds
    vs_fill = np.clip(g.vs[b.host_layer] * b.contrast, lo, hi)
    vp_fill = g.vp[b.host_layer] * b.contrast * vs_fill / (g.vs[b.host_layer] * b.contrast)
    for z in (top + 0.5, top + 0.5 * b.half_height, top + b.half_height - 0.5):
        vp, vs, _ = g.properties(x, np.array(z))
        assert vp == pytest.approx(vp_fill) and vs == pytest.approx(vs_fill)
    # the layer above the palaeo-surface is untouched, and so is the host beside and below the channel
    beside = (b.xc + 1.05 * b.width, top + 0.5 * b.half_height)
    for xx, z in ((b.xc, top - 0.5), beside, (b.xc, top + b.half_height + 0.5)):
        unfolded = z - fold.amplitude * np.sin(2 * np.pi * xx / fold.wavelength + fold.phase)
        if any(o.inside(np.array(xx), np.array(unfolded)) for o in channels):
            continue  # an older channel is there
        idx = g.layer_index(np.array(xx), np.array(z))
        vp, _, _ = g.properties(np.array(xx), np.array(z))
        assert vp == pytest.approx(g._clip_vs(g.vp[idx], g.vs[idx])[0])
    assert g.layer_index(x, np.array(top - 0.5)) == b.host_layer - 1


def test_composite_histories_differ_between_seeds():
    histories = [random_geology(np.random.default_rng(s), GeologyPrior(), "composite").history for s in range(40)]
    assert len(set(histories)) >= 25
    assert {len(h) for h in histories} == {1, 2, 3, 4}
    assert {e for h in histories for e in h} == set(EVENT_KINDS)
    # an unconformity brings its own cover layers, on top of the layer arrays
    for s in range(40):
        g = random_geology(np.random.default_rng(s), GeologyPrior(), "composite")
        covers = [e for e in g.events if isinstance(e, Unconformity)]
        assert g.n_layers == len(g.interface_depth) + 1 + sum(u.n_cover for u in covers)
        firsts = [u.first_layer for u in covers]
        assert firsts == sorted(firsts, reverse=True) and (not covers or firsts[-1] == 0)  # youngest on top


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_history_families_are_functions_of_position(family):
    rng = np.random.default_rng(5)
    for seed in range(8):
        g = random_geology(np.random.default_rng(seed), GeologyPrior(), family)
        # A coarse raster is the fine raster at the coincident cell centres (3x finer: every 3rd from the 2nd).
        coarse, fine = g.rasterize(20, 40), g.rasterize(60, 120)
        for c, f in zip(coarse, fine):
            np.testing.assert_allclose(c, f[1::3, 1::3], rtol=1e-6)
        # Points evaluated together, one by one, or as a 2-D array agree.
        x, z = rng.uniform(0, g.width_m, 30), rng.uniform(0, g.depth_m, 30)
        together = g.properties(x, z)
        as_grid = g.properties(x.reshape(5, 6), z.reshape(5, 6))
        one_by_one = np.array([[p.item() for p in g.properties(x[i], z[i])] for i in range(len(x))]).T
        for a, b, c in zip(together, as_grid, one_by_one):
            np.testing.assert_allclose(a, b.ravel(), rtol=1e-12)
            np.testing.assert_allclose(a, c, rtol=1e-12)


def test_compaction_follows_burial_depth_before_faulting():
    g = _plain("graben", 1)
    g.fold_amplitude[:] = 0.0
    g.interface_depth = np.linspace(100.0, 1400.0, g.n_layers - 1)
    g.events[0].kind = "graben"
    g.events[0].faults = (Fault(1000.0, 60.0, 150.0, "normal", True), Fault(3000.0, 60.0, 150.0, "normal", False))
    g.compaction = 0.2
    points = ((2000.0, 700.0, 550.0), (2000.0, 1300.0, 1150.0), (50.0, 700.0, 700.0), (50.0, 1900.0, 1900.0))
    for x, z, buried in points:
        idx = g.layer_index(np.array(x), np.array(z))
        vp, vs, _ = g.properties(np.array(x), np.array(z))
        trend = 1.0 + 0.2 * buried / g.depth_m  # the dropped block was buried 150 m shallower
        expected_vp, expected_vs = g._clip_vs(g.vp[idx] * trend, g.vs[idx] * trend)
        assert vp == pytest.approx(expected_vp) and vs == pytest.approx(expected_vs)


def test_younger_events_move_and_overprint_older_cover():
    """Two unconformities with a fault between them: the fault offsets the older cover only,
    and the younger cover wins above its own erosion surface."""
    g = _plain("unconformity", 0)
    tilt, old = [e for e in g.events if isinstance(e, (Tilt, Unconformity))]
    old.relief, old.depth, old.interfaces = 0.0, 900.0, np.array([500.0])
    old.first_layer = 1  # a new, youngest cover layer goes on top of the layer arrays
    young = Unconformity(300.0, 0.0, g.width_m, 0.0, interfaces=np.array([]), first_layer=0)
    fault = Fault(2000.0, 60.0, 100.0, "normal", dips_towards_positive_x=True)
    g.events = (tilt, old, fault, young)
    g.vp, g.vs = np.concatenate([[g.vp[0] * 0.9], g.vp]), np.concatenate([[g.vs[0] * 0.9], g.vs])
    g.rho = gardner_density(g.vp)
    foot, hang = 100.0, 3900.0
    for x in (foot, hang):
        zb, above, below = boundaries(g, x)
        shift = 100.0 if x == hang else 0.0
        assert zb[0] == pytest.approx(300.0, abs=0.25) and above[0] == 0  # the young cover, unfaulted
        assert below[0] == 1  # on the older cover (its top, layer 1, was eroded down past 300 m)
        assert zb[1] == pytest.approx(500.0 + shift, abs=0.25) and (above[1], below[1]) == (1, 2)
        assert zb[2] == pytest.approx(900.0 + shift, abs=0.25) and above[2] == 2 and below[2] >= 3
    assert g.history == ("tilt", "unconformity", "fault", "unconformity")
    assert geology_labels(g)["fault_present"] and geology_labels(g)["fault_throw_m"] == 100.0
