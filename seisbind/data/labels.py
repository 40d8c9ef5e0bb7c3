"""Labels for probes, computed from the geology itself (not from the grids), and a caption."""

from __future__ import annotations

import numpy as np

from seisbind.data.geology import Geology

_PROFILE_STEP_M = 0.5  # vertical sampling of site profiles; fine against the thinnest 5 m layer


def vs_profile(geology: Geology, x: float, max_depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Vs at depths ``0.25, 0.75, ...`` m below the surface at distance ``x`` (cell centres)."""
    z = np.arange(_PROFILE_STEP_M / 2, max_depth, _PROFILE_STEP_M)
    _, vs, _ = geology.properties(np.full_like(z, x), z)
    return z, vs


def vs30(geology: Geology, x: float) -> float:
    """Time-averaged shear velocity of the top 30 m: 30 / sum(h_i / Vs_i) (NEHRP site class)."""
    _, vs = vs_profile(geology, x, 30.0)
    return float(30.0 / np.sum(_PROFILE_STEP_M / vs))


def depth_to_vs(geology: Geology, x: float, threshold: float = 760.0) -> float:
    """Depth (m) of the first point below ``x`` whose Vs reaches ``threshold`` (engineering bedrock).

    Returns the section depth when no point does (the geology priors avoid that).
    """
    z, vs = vs_profile(geology, x, geology.depth_m)
    hit = np.flatnonzero(vs >= threshold)
    return float(z[hit[0]] - _PROFILE_STEP_M / 2) if hit.size else float(geology.depth_m)


def geology_labels(geology: Geology) -> dict:
    """Scalar labels of a geology, read at the middle of the section where site-specific.

    With several faults (``graben``, ``composite``) the fault labels are those of the fault with
    the largest throw; with several bodies, ``body_kind`` is the oldest body's.
    """
    mid = geology.width_m / 2
    fault = geology.main_fault
    bodies = geology.bodies
    return {
        "family": geology.family,
        "n_layers": geology.n_layers,
        "fault_present": fault is not None,
        "fault_kind": fault.kind if fault else "none",
        "fault_dip_deg": float(fault.dip_deg) if fault else 0.0,
        "fault_throw_m": float(fault.throw_m) if fault else 0.0,
        "body_kind": bodies[0].kind if bodies else "none",
        "heterogeneity_std": float(geology.field.std) if geology.field else 0.0,
        "vs30": vs30(geology, mid),
        "depth_vs760_m": depth_to_vs(geology, mid, 760.0),
    }


def caption(labels: dict) -> str:
    """One line of text describing a pair, for text-side experiments and for people."""
    body = {"salt": "a salt diapir", "igneous": "an igneous intrusion", "channel": "buried channels"}.get(
        labels["body_kind"], "an intrusive body"
    )
    family = {
        "flat": "flat layers",
        "folded": "folded layers",
        "faulted": f"layers cut by a {labels['fault_kind']} fault",
        "intrusion": {"salt": "layers pierced by a salt diapir", "igneous": "layers cut by an igneous intrusion"}.get(
            labels["body_kind"], "layers with an intrusive body"
        ),
        "unconformity": "layers with an angular unconformity, tilted layers under flat cover",
        "graben": "layers cut by normal faults into a graben or horst",
        "channel": "layers cut by buried channel fills",
        "composite": "layers shaped by a random geological history"
        + (f", cut by a {labels['fault_kind']} fault" if labels["fault_present"] else "")
        + (f", with {body}" if labels["body_kind"] != "none" else ""),
    }.get(labels["family"], f"{labels['family']} layers")
    text = f"{labels['n_layers']} {family}"
    if labels["fault_present"]:
        text += f" (dip {labels['fault_dip_deg']:.0f} deg, throw {labels['fault_throw_m']:.0f} m)"
    if labels["heterogeneity_std"] > 0:
        text += f", {100 * labels['heterogeneity_std']:.0f}% random heterogeneity"
    text += f"; Vs30 {labels['vs30']:.0f} m/s, Vs reaches 760 m/s at {labels['depth_vs760_m']:.0f} m"
    return text
