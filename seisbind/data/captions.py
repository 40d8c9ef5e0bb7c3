"""Captions worth learning from: many varied sentences per geology, made from its stored labels.

A text tower trained on one fixed template learns the template, not the geology (CLIP's captions
are varied natural text; ImageBind binds text through images, so the captions are the only thing
that teaches the text side what a fault is). :func:`make_captions` therefore draws, per caption,

- a random non-empty subset of the facts the labels hold (the structure most often, not always;
  at most :data:`MAX_FACTS` facts, and fewer where they would not fit the text tower's 32 tokens
  whole: a truncated caption would teach a fact the tower never sees),
- a phrasing for each fact among several synonyms ("a faulted section", "layers offset by a
  reverse fault", ...), numbers sometimes as digits ("Vs30 412 m/s", "throw 35 m", "7 layers")
  and the site sometimes as its NEHRP class ("site class C", "NEHRP class D stiff soil"),
- a random order of the facts and a sentence frame joining them.

Facts a labels dict lacks are not described: the OpenFWI scenario stores only ``family``,
``n_layers``, ``fault_present``, ``fault_dip_deg`` and ``fault_throw_m``, so its captions never
speak of Vs30, bodies or the fault's kind. ``templates="heldout"`` draws every phrasing and frame
from a second, disjoint bank: text-query evaluation then uses sentences the tower never saw.

The zero-shot prompt sets (:func:`family_prompts`, :func:`fault_prompts`,
:func:`site_class_prompts`) give several plain descriptions per class, averaged as CLIP's prompt
ensembles are.
"""

from __future__ import annotations

import math
import re
import string

import numpy as np

MAX_FACTS = 3  # facts per caption: 3 keep every caption within 32 CLIP tokens (SOT and EOT included)

# NEHRP site classes by Vs30 (m/s), stiffest first: (class, lower bound, description). The bounds
# are those of ASCE 7 Table 20.3-1 / NEHRP (FEMA 450) Table 3.5-1 in metric units (1524, 762, 366
# and 183 m/s rounded to 1500, 760, 360 and 180, as NEHRP's own metric columns and the USGS Vs30
# maps round them). Each class holds its upper bound: B is 760 < vs30 <= 1500, E is vs30 <= 180.
# The descriptions are the tables' names of the classes. Class F needs a site-specific study and
# is not a Vs30 class.
SITE_CLASSES: tuple[tuple[str, float, str], ...] = (
    ("A", 1500.0, "hard rock"),
    ("B", 760.0, "rock"),
    ("C", 360.0, "very dense soil and soft rock"),
    ("D", 180.0, "stiff soil"),
    ("E", 0.0, "soft clay soil"),
)
SITE_CLASS_NAMES = tuple(c for c, _, _ in SITE_CLASSES)
_SITE_DESCRIPTION = {c: d for c, _, d in SITE_CLASSES}


def site_class(vs30: float) -> str:
    """The NEHRP site class (A-E) of a time-averaged shear velocity of the top 30 m, in m/s.

    A: vs30 > 1500; B: 760 < vs30 <= 1500; C: 360 < vs30 <= 760; D: 180 < vs30 <= 360;
    E: vs30 <= 180 (each class holds its upper bound; see :data:`SITE_CLASSES`).
    """
    if isinstance(vs30, bool) or not isinstance(vs30, (int, float, np.integer, np.floating)):
        raise ValueError(f"vs30 must be a number (m/s); got {type(vs30).__name__}")
    if not (math.isfinite(vs30) and vs30 > 0):
        raise ValueError(f"vs30 must be a finite positive velocity (m/s); got {vs30!r}")
    for name, lower, _ in SITE_CLASSES:
        if vs30 > lower:
            return name
    raise AssertionError("unreachable: class E's lower bound is 0")


# ---------------------------------------------------------------- the two template banks
#
# Each bank maps a fact to phrasings (format strings over that fact's values), plus the body
# phrasings by body kind and the sentence frames by number of facts. The two banks share no
# string: tests check that set by set. A phrasing is used only when the labels give every field it
# names, so "layers offset by a {kind} fault" is never drawn for a labels dict without a fault kind.

_TRAIN: dict[str, dict] = {
    "family": {
        "flat": ["flat layers", "horizontal layers", "flat-lying strata", "a layer-cake section",
                 "undeformed horizontal beds", "flat layering"],
        "folded": ["folded layers", "folded strata", "an anticline and syncline", "gently folded beds",
                   "a folded section", "layers bent into folds"],
        "faulted": ["a faulted section", "layers offset by a {kind} fault", "a {kind} fault cutting the layers",
                    "faulted strata", "{kind}-faulted layers", "layers cut by a fault"],
        "intrusion": ["layers pierced by {body}", "{body} cutting the layers", "an intrusive body",
                      "{body}", "intruded layers"],
        "unconformity": ["an angular unconformity", "tilted layers under flat cover",
                         "an erosional unconformity over dipping beds", "an unconformity"],
        "graben": ["a graben or horst", "a block dropped between normal faults", "normal faults bounding a block",
                   "a fault-bounded block"],
        "channel": ["buried channels", "channel fills cut into the layers", "a buried channel system",
                    "channelised layers"],
        "composite": ["a complex geological history", "layers deformed by several events",
                      "a multi-event structure", "a complex structure"],
    },
    "body": {
        "salt": ["a salt diapir", "a salt dome"],
        "igneous": ["an igneous intrusion", "a magmatic intrusion"],
        "channel": ["buried channel fills", "channel fills"],
    },
    "n_layers": ["{n} layers", "a stack of {n} layers", "{n} strata", "{n} layers in all"],
    "fault": ["a {kind} fault dipping {dip} degrees", "fault throw {throw} m", "{throw} m of throw",
              "a {kind} fault with {throw} m throw", "fault dip {dip} degrees, throw {throw} m",
              "a fault dipping {dip} degrees", "throw {throw} m on a {kind} fault", "a {kind} fault"],
    "vs30": ["Vs30 {vs30} m/s", "Vs30 of {vs30} m/s", "{vs30} m/s Vs30", "mean shear velocity {vs30} m/s"],
    "site": ["site class {cls}", "NEHRP class {cls} {desc}", "a class {cls} site", "{desc} (site class {cls})"],
    "bedrock": ["Vs reaches 760 m/s at {depth} m", "engineering bedrock at {depth} m",
                "bedrock {depth} m deep", "760 m/s rock at {depth} m depth"],
    "bedrock_surface": ["760 m/s rock at the surface", "engineering bedrock at the surface"],
    "heterogeneity": ["{het}% random heterogeneity", "heterogeneous velocities", "random velocity fluctuations of {het}%",
                      "a heterogeneous medium"],
    "frames": {
        1: ["{0}", "a section of {0}", "seismic section showing {0}", "a model with {0}", "ground with {0}"],
        2: ["{0}, {1}", "{0} with {1}", "{0}; {1}", "{0} and {1}", "section showing {0} and {1}",
            "a model with {0}, {1}"],
        3: ["{0}, {1}, {2}", "{0} with {1} and {2}", "{0}; {1}; {2}", "{0}, {1} and {2}",
            "a section of {0}, with {1} and {2}"],
    },
}

_HELDOUT: dict[str, dict] = {
    "family": {
        "flat": ["parallel undisturbed strata", "sub-horizontal bedding", "level, untilted beds"],
        "folded": ["strata warped into anticlines", "undulating deformed bedding", "beds showing folding"],
        "faulted": ["a section broken by a {kind} fault", "strata displaced across one fault",
                    "displaced bedding along a {kind} fault", "a dislocated sequence"],
        "intrusion": ["strata invaded by {body}", "{body} rising through the strata", "an emplaced body"],
        "unconformity": ["an erosion surface truncating inclined strata", "dipping beds capped by level deposits"],
        "graben": ["a down-thrown block bounded by extensional faults", "rift-style block faulting"],
        "channel": ["infilled paleochannels", "incised channel deposits"],
        "composite": ["a polyphase deformation history", "overprinted structural events"],
    },
    "body": {
        "salt": ["a rock-salt plug", "an evaporite body"],
        "igneous": ["an intruded volcanic body", "a cooled magma body"],
        "channel": ["paleochannel infill", "incised channel deposits in the beds"],
    },
    "n_layers": ["{n} distinct units", "a sequence of {n} beds"],
    "fault": ["{dip}-degree dip on the fault", "an offset of {throw} m", "a {kind} slip of {throw} m",
              "a fault plane inclined at {dip} degrees"],
    "vs30": ["a mean Vs over 30 m near {vs30} m/s", "upper shear velocity about {vs30} m/s"],
    "site": ["NEHRP site category {cls}", "ground of category {cls}, {desc}"],
    "bedrock": ["760 m/s material below {depth} m", "a depth to rock of {depth} m"],
    "bedrock_surface": ["rock outcropping at the surface"],
    "heterogeneity": ["{het} percent stochastic velocity perturbation", "patchy, uneven velocities"],
    "frames": {
        1: ["imaged here: {0}", "the subsurface contains {0}", "{0} in this profile"],
        2: ["{0} together with {1}", "{0} / {1}", "the profile reveals {0} plus {1}"],
        3: ["{0} + {1} + {2}", "{0}, alongside {1} as well as {2}", "beneath the line: {0}, {1}, {2}"],
    },
}

TEMPLATE_BANKS: dict[str, dict[str, dict]] = {"train": _TRAIN, "heldout": _HELDOUT}

# How often a fact enters a caption (then at most MAX_FACTS are kept, the structure first).
_P_STRUCTURE = 0.75
_P_OTHER = 0.45
_P_SITE_AS_CLASS = 0.5  # a drawn Vs30 fact is spoken as its NEHRP class this often, else as digits
# Longest caption, in the units of _n_pieces (about one CLIP token each): a longer caption drops
# facts, last drawn first. At 24, 16,000 captions of 40 geologies took at most 32 tokens with SOT
# and EOT (25: 32, 26: 33), so the text tower (context 32) sees every fact it is told; the tests
# check captions of every family against the tokenizer.
_MAX_PIECES = 24
_PIECES = re.compile(r"[^\W\d_]+|\d|[^\w\s]+")


def template_strings(templates: str = "train") -> set[str]:
    """Every phrasing and frame of a bank, for the test that train and held-out banks are disjoint."""
    bank = _bank(templates)
    out: set[str] = set()
    for value in bank.values():
        if isinstance(value, dict):
            for phrases in value.values():
                out.update(phrases)
        else:
            out.update(value)
    return out


def _bank(templates: str) -> dict:
    if templates not in TEMPLATE_BANKS:
        raise ValueError(f"templates must be one of {sorted(TEMPLATE_BANKS)}; got {templates!r}")
    return TEMPLATE_BANKS[templates]


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _facts(labels: dict) -> dict[str, dict[str, str]]:
    """The describable facts of ``labels``: fact -> the values its phrasings may name (as text)."""
    facts: dict[str, dict[str, str]] = {}
    family = labels.get("family")
    kind = labels.get("fault_kind")
    kind = str(kind) if kind not in (None, "none", "") else None
    body = labels.get("body_kind")
    body = str(body) if body not in (None, "none", "") else None
    if family is not None and str(family) in _TRAIN["family"]:
        facts["family"] = {k: v for k, v in (("kind", kind), ("body", body)) if v is not None}
        facts["family"]["family"] = str(family)
    n = labels.get("n_layers")
    if n is not None and int(n) > 0:
        facts["n_layers"] = {"n": str(int(n))}
    fault_present = labels.get("fault_present")
    if fault_present is None:
        fault_present = kind is not None
    if bool(fault_present):
        values = {"kind": kind} if kind else {}
        for key, name in (("fault_dip_deg", "dip"), ("fault_throw_m", "throw")):
            if labels.get(key) is not None and float(labels[key]) > 0:
                values[name] = f"{float(labels[key]):.0f}"
        if values:
            facts["fault"] = values
    # A body is its own fact only where the structure phrase does not already name it.
    if body is not None and family not in ("intrusion", "channel") and body in _TRAIN["body"]:
        facts["body"] = {"body": body}
    v = labels.get("vs30")
    if v is not None and math.isfinite(float(v)) and float(v) > 0:
        cls = site_class(float(v))
        facts["vs30"] = {"vs30": f"{float(v):.0f}", "cls": cls, "desc": _SITE_DESCRIPTION[cls]}
    d = labels.get("depth_vs760_m")
    if d is not None and math.isfinite(float(d)) and float(d) >= 0:
        facts["bedrock"] = {"depth": f"{float(d):.0f}"}
    h = labels.get("heterogeneity_std")
    if h is not None and float(h) > 0:
        pct = 100 * float(h)
        facts["heterogeneity"] = {"het": f"{pct:.0f}" if pct >= 0.5 else f"{pct:.1f}"}
    return facts


def _n_pieces(text: str) -> int:
    """About how many CLIP tokens ``text`` takes: its pre-tokens (words, single digits,
    punctuation runs), words of 9 letters or more counted twice (BPE often splits them)."""
    return sum(1 + (len(p) >= 9) for p in _PIECES.findall(text))


def _pick(rng: np.random.Generator, items: list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _render(fact: str, values: dict[str, str], bank: dict, rng: np.random.Generator) -> str:
    if fact == "family":
        phrases = bank["family"][values["family"]]
    elif fact == "body":
        return _pick(rng, bank["body"][values["body"]])
    elif fact == "vs30":
        phrases = bank["site"] if rng.random() < _P_SITE_AS_CLASS else bank["vs30"]
    elif fact == "bedrock" and values["depth"] == "0":
        phrases = bank["bedrock_surface"]
    else:
        phrases = bank[fact]
    usable = [p for p in phrases if _fields(p) <= set(values)]
    phrase = _pick(rng, usable)
    fill = dict(values)
    if "{body}" in phrase:
        fill["body"] = _pick(rng, bank["body"][values["body"]])
    return phrase.format(**fill)


def _usable(fact: str, values: dict[str, str], bank: dict) -> bool:
    """Whether some phrasing of ``fact`` can be filled from ``values`` (in both banks' terms)."""
    if fact == "body":
        return True
    if fact == "family":
        phrases = bank["family"][values["family"]]
    elif fact == "vs30":
        phrases = bank["site"] + bank["vs30"]
    else:
        phrases = bank[fact]
    return any(_fields(p) <= set(values) for p in phrases)


def make_captions(labels: dict, n: int, rng: np.random.Generator, templates: str = "train") -> list[str]:
    """``n`` varied captions of one geology from its labels (see the module docstring).

    Each caption describes a random non-empty subset of the facts ``labels`` holds (structure,
    layer count, fault kind/dip/throw, an intruded body, Vs30 as digits or NEHRP class, depth to
    760 m/s, heterogeneity), each in a random phrasing, in a random order, in a random frame.
    The same ``rng`` state gives the same captions. ``templates``: ``"train"`` or ``"heldout"``
    (a disjoint bank, for queries the text tower never trained on). Raises ``ValueError`` when the
    labels hold nothing describable.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    bank = _bank(templates)
    facts = {k: v for k, v in _facts(labels).items() if _usable(k, v, bank)}
    if not facts:
        raise ValueError(f"labels describe nothing a caption can say; got keys {sorted(labels)}")
    others = [k for k in facts if k != "family"]
    out = []
    for _ in range(int(n)):
        chosen = [k for k in others if rng.random() < _P_OTHER]
        chosen = [chosen[i] for i in rng.permutation(len(chosen))]
        if "family" in facts and (rng.random() < _P_STRUCTURE or not chosen and not others):
            chosen.insert(0, "family")
        chosen = chosen[:MAX_FACTS]
        if not chosen:
            chosen = [_pick(rng, list(facts))]
        if "family" in chosen and len(chosen) > 1 and rng.random() < 0.4:  # structure not always first
            chosen.remove("family")
            chosen.insert(int(rng.integers(1, len(chosen) + 1)), "family")
        phrases = [_render(k, facts[k], bank, rng) for k in chosen]
        text = _pick(rng, bank["frames"][len(phrases)]).format(*phrases)
        while len(phrases) > 1 and _n_pieces(text) > _MAX_PIECES:  # too long: drop the last fact
            drop = max(i for i, k in enumerate(chosen) if k != "family")
            del chosen[drop], phrases[drop]
            text = _pick(rng, bank["frames"][len(phrases)]).format(*phrases)
        out.append(text)
    return out


def geology_captions(labels: dict, n: int, seed: int, stream: int, geology_id: int, templates: str = "train") -> list[str]:
    """:func:`make_captions` of one geology drawn from ``SeedSequence(seed, stream, geology_id)``:
    the same captions for a geology wherever they are made (training's pools, evaluation's queries;
    each use its own ``stream``)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(geology_id)]))
    return make_captions(labels, n, rng, templates=templates)


# ---------------------------------------------------------------- zero-shot prompt sets

_PROMPT_FRAMES = ("{}", "a seismic section of {}", "a velocity model with {}")
_FAMILY_PROMPTS = {
    "flat": ("flat layers", "horizontal layers", "flat-lying undeformed beds"),
    "folded": ("folded layers", "an anticline and syncline", "layers bent into folds"),
    "faulted": ("faulted layers", "layers offset by a fault", "a fault cutting the layers"),
    "intrusion": ("an intrusive body", "layers pierced by a salt diapir or igneous intrusion",
                  "a body intruding the layers"),
    "unconformity": ("an angular unconformity", "tilted layers under flat cover", "an erosional unconformity"),
    "graben": ("a graben or horst", "a block between normal faults", "a fault-bounded block"),
    "channel": ("buried channels", "channel fills cut into the layers", "a buried channel system"),
    "composite": ("a complex geological history", "layers deformed by several events", "a complex structure"),
}


def family_prompts(families: list[str]) -> dict[str, list[str]]:
    """Several prompts per geology family (descriptions of it, in a few frames), for zero-shot.

    Unknown families are refused with a ``ValueError`` naming the known ones.
    """
    unknown = sorted(set(families) - set(_FAMILY_PROMPTS))
    if unknown:
        raise ValueError(f"no prompts for famil(ies) {unknown}; known: {sorted(_FAMILY_PROMPTS)}")
    return {f: [frame.format(d) for d in _FAMILY_PROMPTS[f] for frame in _PROMPT_FRAMES] for f in families}


def fault_prompts() -> dict[bool, list[str]]:
    """Prompts for "a fault is present" (True) and "no fault" (False)."""
    yes = ("faulted layers", "layers offset by a fault", "a fault cutting the layers")
    no = ("continuous unbroken layers", "unfaulted layers", "layers with no fault")
    return {True: [frame.format(d) for d in yes for frame in _PROMPT_FRAMES],
            False: [frame.format(d) for d in no for frame in _PROMPT_FRAMES]}


def site_class_prompts() -> dict[str, list[str]]:
    """Prompts per NEHRP site class A-E: the class by name, with its description, and its Vs30 range."""
    out: dict[str, list[str]] = {}
    bounds = [lower for _, lower, _ in SITE_CLASSES]
    for i, (cls, lower, desc) in enumerate(SITE_CLASSES):
        if i == 0:
            vs_range = f"Vs30 above {lower:.0f} m/s"
        elif lower == 0:
            vs_range = f"Vs30 below {bounds[i - 1]:.0f} m/s"
        else:
            vs_range = f"Vs30 between {lower:.0f} and {bounds[i - 1]:.0f} m/s"
        out[cls] = [f"site class {cls}", f"NEHRP site class {cls}", f"a site of NEHRP class {cls}, {desc}",
                    f"{desc}, site class {cls}", vs_range]
    return out
