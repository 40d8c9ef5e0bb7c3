"""Captions from labels: varied, partial, with digits and site classes; held-out templates disjoint."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from seisbind.data.captions import (
    SITE_CLASS_NAMES,
    TEMPLATE_BANKS,
    family_prompts,
    fault_prompts,
    make_captions,
    site_class,
    site_class_prompts,
    template_strings,
)
from seisbind.data.geology import FAMILIES

# geology_labels' keys, with numbers no two facts share (so a fact's presence can be read off)
FAULTED = {"family": "faulted", "n_layers": 7, "fault_present": True, "fault_kind": "reverse",
           "fault_dip_deg": 60.2, "fault_throw_m": 35.4, "body_kind": "none", "heterogeneity_std": 0.04,
           "vs30": 412.3, "depth_vs760_m": 45.0}
FLAT = {"family": "flat", "n_layers": 6, "fault_present": False, "fault_kind": "none", "fault_dip_deg": 0.0,
        "fault_throw_m": 0.0, "body_kind": "none", "heterogeneity_std": 0.03, "vs30": 250.0, "depth_vs760_m": 81.0}
FOLDED = dict(FLAT, family="folded", vs30=412.3)
COMPOSITE = dict(FAULTED, family="composite", fault_kind="normal", body_kind="salt")
# what the OpenFWI scenario stores (scenarios/openfwi.py: make_sample), caption included
OPENFWI = {"family": "faulted", "n_layers": 5, "fault_present": True, "fault_dip_deg": 55.0, "fault_throw_m": 80.0,
           "caption": "velocity map, 5 faulted layers cut by a fault (dip 55 deg, throw 80 m)"}


def _caps(labels, n=300, seed=0, templates="train"):
    return make_captions(labels, n, np.random.default_rng(seed), templates)


def test_captions_vary_in_text_and_template():
    caps = _caps(FAULTED, n=20)
    assert len(caps) == 20
    assert len(set(caps)) >= 8, caps
    assert len({c.split()[0] for c in caps}) >= 4, caps
    held = _caps(FAULTED, n=20, templates="heldout")
    assert len(set(held)) >= 8 and len({c.split()[0] for c in held}) >= 3, held


def test_captions_are_partial_but_never_empty():
    caps = _caps(FOLDED)
    assert all(c.strip() for c in caps)
    has_site = ["412" in c or "class C" in c or "category C" in c for c in caps]
    has_family = [bool(re.search(r"fold|anticline", c)) for c in caps]
    assert any(has_site) and not all(has_site)
    assert any(has_family) and not all(has_family)
    # the structure is the fact said most often
    assert sum(has_family) > sum(has_site), (sum(has_family), sum(has_site))
    # ... and several facts do meet in one caption
    assert any(f and s for f, s in zip(has_family, has_site, strict=True))


def test_numbers_appear_as_digits_and_the_site_as_its_class():
    caps = _caps(FAULTED)
    for digits in (r"412 m/s", r"\b35 m\b", r"\b60 degrees", r"\b7 (layers|strata)"):
        assert any(re.search(digits, c) for c in caps), digits
    assert any("site class C" in c for c in caps)
    assert any("NEHRP class C" in c for c in caps)
    assert not any("412.3" in c or "class D" in c for c in caps)  # rounded; the right class only


def test_train_and_heldout_templates_are_disjoint():
    train, held = template_strings("train"), template_strings("heldout")
    assert train and held and not train & held, train & held

    def skeleton(t):  # placeholders and spacing do not make a phrasing new
        return re.sub(r"\s+", " ", re.sub(r"\{\w*\}", "{}", t)).strip().lower()

    assert not {skeleton(t) for t in train} & {skeleton(t) for t in held}
    # both banks describe the same facts, each with its own phrasings
    for key, value in TEMPLATE_BANKS["train"].items():
        other = TEMPLATE_BANKS["heldout"][key]
        if isinstance(value, dict):
            assert set(value) == set(other), key
            assert all(value[k] and other[k] for k in value), key
        else:
            assert value and other, key
    for labels in (FAULTED, FLAT, COMPOSITE, OPENFWI):
        assert not set(_caps(labels)) & set(_caps(labels, templates="heldout"))


def test_fault_kind_is_told_for_a_faulted_section_and_no_fault_for_a_flat_one():
    caps = _caps(FAULTED)
    assert any("reverse" in c for c in caps)
    assert not all("reverse" in c for c in caps)
    assert any("normal" in c for c in _caps(COMPOSITE))
    assert any("salt" in c for c in _caps(COMPOSITE))
    for templates in ("train", "heldout"):
        flat = _caps(FLAT, templates=templates)
        assert not any(re.search(r"fault|throw|dip|offset|displac", c) for c in flat), templates


def test_missing_labels_are_not_described():
    caps = _caps(OPENFWI) + _caps(OPENFWI, templates="heldout")
    assert not any(re.search(r"m/s|class|categor|Vs|bedrock|rock|reverse|normal|heterogen|salt", c) for c in caps)
    assert any("80 m" in c for c in caps) and any("55" in c for c in caps)
    assert all(c != OPENFWI["caption"] for c in caps)
    with pytest.raises(ValueError, match="describe nothing"):
        make_captions({"caption": "x", "family": "unknown"}, 2, np.random.default_rng(0))


def test_captions_are_deterministic_under_a_seed():
    assert _caps(COMPOSITE, seed=3) == _caps(COMPOSITE, seed=3)
    assert _caps(COMPOSITE, seed=3) != _caps(COMPOSITE, seed=4)
    assert make_captions(FAULTED, 0, np.random.default_rng(0)) == []
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="n must be"):
            make_captions(FAULTED, bad, np.random.default_rng(0))
    with pytest.raises(ValueError, match="templates must be one of"):
        make_captions(FAULTED, 2, np.random.default_rng(0), templates="test")


def test_site_class_boundaries():
    eps = 1e-6
    assert [site_class(v) for v in (1500 + eps, 1500, 760 + eps, 760, 360 + eps, 360, 180 + eps, 180, 50)] == \
        ["A", "B", "B", "C", "C", "D", "D", "E", "E"]
    assert site_class(3000) == "A" and site_class(412) == "C" and site_class(np.float32(250.0)) == "D"
    for bad in (0.0, -5.0, math.nan, math.inf, "400", None):
        with pytest.raises(ValueError, match="vs30"):
            site_class(bad)


def test_every_family_has_phrases_and_prompts():
    for templates in ("train", "heldout"):
        assert set(FAMILIES) <= set(TEMPLATE_BANKS[templates]["family"]), templates
    prompts = family_prompts(list(FAMILIES))
    assert list(prompts) == list(FAMILIES)
    assert all(len(set(p)) >= 3 for p in prompts.values())
    seen: dict[str, str] = {}
    for family, ps in prompts.items():  # no prompt stands for two families
        for p in ps:
            assert seen.setdefault(p, family) == family, p
    assert "a seismic section of folded layers" in prompts["folded"]
    with pytest.raises(ValueError, match="no prompts"):
        family_prompts(["flat", "volcano"])


def test_fault_and_site_class_prompt_sets():
    fp = fault_prompts()
    assert set(fp) == {True, False}
    assert len(set(fp[True])) >= 3 and len(set(fp[False])) >= 3 and not set(fp[True]) & set(fp[False])
    sp = site_class_prompts()
    assert list(sp) == list(SITE_CLASS_NAMES) == ["A", "B", "C", "D", "E"]
    for cls, ps in sp.items():
        assert len(set(ps)) >= 3 and f"site class {cls}" in ps
        assert not any(f"class {other}" in p for p in ps for other in SITE_CLASS_NAMES if other != cls)
    # the Vs30 range a prompt states is the class's own
    for cls, ps in sp.items():
        text = ps[-1]
        bounds = [float(x) for x in re.findall(r"\d+(?= (?:and|m/s))", text)]
        probe = sum(bounds) / 2 if len(bounds) == 2 else bounds[0] * (1.1 if "above" in text else 0.9)
        assert site_class(probe) == cls, (cls, text)
