"""Geologies, labels and section images: properties checked against values worked out by hand."""

import numpy as np
import pytest

from seisbind.data.geology import FAMILIES, GeologyPrior, gardner_density, layered_geology, random_geology
from seisbind.data.labels import depth_to_vs, geology_labels, vs30
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


@pytest.mark.parametrize("family", FAMILIES)
def test_random_geologies_are_physical(family):
    prior = GeologyPrior()
    for seed in range(5):
        g = random_geology(np.random.default_rng(seed), prior, family)
        vp, vs, rho = g.rasterize(50, 100)
        assert np.isfinite(vp).all() and np.isfinite(vs).all() and np.isfinite(rho).all()
        assert vs.min() >= prior.vs_min - 1e-3 and vs.max() <= prior.vs_max + 1e-3
        assert (vp / vs).min() > MIN_VP_OVER_VS
        assert 1500 < rho.min() and rho.max() < 3000
        labels = geology_labels(g)
        assert labels["family"] == family
        assert labels["fault_present"] == (family == "faulted")
        assert labels["fault_present"] == (labels["fault_throw_m"] > 0)
        assert prior.vs_min <= labels["vs30"] <= prior.vs_max
        assert 0 <= labels["depth_vs760_m"] < g.depth_m


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
