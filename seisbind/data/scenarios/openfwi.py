"""Scenario ``openfwi``: acoustic shot gathers and velocity maps in the OpenFWI layout.

OpenFWI's 2-D families: 70 x 70 velocity maps at 10 m, 1500-4500 m/s, 5 sources and 70
receivers at 10 m depth, 1000 samples at 1 ms, a 15 Hz Ricker. The image is the velocity map.

In the stored row the shot gather ``(5, 1000, 70)`` is laid out like every other waveform,
``(1, stations=70, channels=5, time=1000)``: each receiver is a station and the five shots are
its channels, which is how the waveform tower reads OpenFWI (5 input channels).
"""

from __future__ import annotations

import dataclasses

import datasets
import numpy as np

from seisbind.data.acoustic import simulate_shot_gathers
from seisbind.data.geology import GeologyPrior, random_geology
from seisbind.data.scenarios.base import COMMON_FEATURES, Sample, Scenario, require_positive, require_range
from seisbind.data.validation import check_courant, check_points_per_wavelength

OPENFWI_RECEIVER_SPACING_M = 10.0  # OpenFWI's 70 receivers, one per 10 m cell
# The geology families without intrusions (their fixed rock, salt and igneous, is outside OpenFWI's
# velocity range); a composite history may still intrude a body, clipped to the range.
OPENFWI_FAMILIES = ("flat", "folded", "faulted", "unconformity", "graben", "channel", "composite")


@dataclasses.dataclass
class OpenFWIConfig:
    size: int = 70  # cells per side
    grid_spacing: float = 10.0
    velocity: tuple[float, float] = (1500.0, 4500.0)
    n_sources: int = 5
    n_receivers: int = 70
    source_depth_idx: int = 1  # 10 m
    n_samples: int = 1000
    dt: float = 0.001
    wavelet_freq: float = 15.0
    n_layers: tuple[int, int] = (2, 6)
    families: tuple[str, ...] = OPENFWI_FAMILIES
    accuracy: int = 4
    pml_width: int = 20
    # Above the default 0.6 so deepwave does not halve OpenFWI's 1 ms step for 4500 m/s.
    courant_number: float = 0.7
    min_points_per_wavelength: float = 5.0


def _features(size: int, n_receivers: int, n_sources: int, n_samples: int) -> datasets.Features:
    f32 = datasets.Value("float32")
    return datasets.Features(
        {
            **COMMON_FEATURES,
            # float32 throughout: OpenFWI stores float32 and the round trip must be exact.
            "image": datasets.Array2D((size, size), "float32"),
            "waveforms": datasets.Array4D((1, n_receivers, n_sources, n_samples), "float32"),
            "waveform_scale": datasets.Array2D((1, n_receivers), "float32"),
            "station_x_m": datasets.Sequence(f32, length=n_receivers),
            "n_layers": datasets.Value("int32"),
            "fault_present": datasets.Value("bool"),
            "fault_dip_deg": f32,
            "fault_throw_m": f32,
        }
    )


def openfwi_row(velocity: np.ndarray, gathers: np.ndarray, geology_id: int, labels: dict, sample_rate: float,
                station_x_m: np.ndarray | None = None) -> dict:
    """One stored row from an OpenFWI pair: velocity (70, 70) and gathers (5, 1000, 70).

    ``station_x_m``: the receivers' positions; default OpenFWI's, one every 10 m from 0.
    """
    n_src, _, n_rec = gathers.shape
    if station_x_m is None:
        station_x_m = np.arange(n_rec) * OPENFWI_RECEIVER_SPACING_M
    return {
        "geology_id": geology_id,
        "scenario": "openfwi",
        "sampling_rate": sample_rate,
        "channels": ",".join(f"shot{i}" for i in range(n_src)),
        "family": labels.get("family", "unknown"),
        "caption": labels.get("caption", ""),
        "image": np.asarray(velocity, np.float32),
        "waveforms": np.ascontiguousarray(gathers.transpose(2, 0, 1)[None], dtype=np.float32),
        "waveform_scale": np.ones((1, n_rec), np.float32),
        "station_x_m": np.asarray(station_x_m, np.float32),
        "n_layers": labels.get("n_layers", -1),
        "fault_present": labels.get("fault_present", False),
        "fault_dip_deg": labels.get("fault_dip_deg", 0.0),
        "fault_throw_m": labels.get("fault_throw_m", 0.0),
    }


class OpenFWIScenario(Scenario):
    name = "openfwi"
    config_class = OpenFWIConfig

    def validate(self, cfg: OpenFWIConfig) -> None:
        require_positive(cfg, "size", "grid_spacing", "n_sources", "n_receivers", "n_samples", "dt", "wavelet_freq")
        require_range(cfg, "velocity", low=1.0)
        require_range(cfg, "n_layers", low=1)
        if not 0 <= cfg.source_depth_idx < cfg.size:
            raise ValueError(f"source_depth_idx must be inside the map (0..{cfg.size - 1}), got {cfg.source_depth_idx}")
        if cfg.n_receivers > cfg.size or cfg.n_sources > cfg.size:
            raise ValueError(f"at most {cfg.size} sources and receivers fit on a {cfg.size}-cell line")
        unknown = sorted(set(cfg.families) - set(OPENFWI_FAMILIES))
        if unknown or not cfg.families:
            raise ValueError(f"families must be a non-empty subset of {OPENFWI_FAMILIES}, got {cfg.families}")
        check_courant(cfg.courant_number, cfg.accuracy, "scalar")
        check_points_per_wavelength(cfg.velocity[0], cfg.wavelet_freq, cfg.grid_spacing, cfg.min_points_per_wavelength)

    def features(self, cfg: OpenFWIConfig) -> datasets.Features:
        return _features(cfg.size, cfg.n_receivers, cfg.n_sources, cfg.n_samples)

    def make_sample(self, cfg: OpenFWIConfig, geology_id: int, rng: np.random.Generator) -> Sample:
        extent = cfg.size * cfg.grid_spacing
        prior = GeologyPrior(
            width_m=extent,
            depth_m=extent,
            n_layers=cfg.n_layers,
            top_thickness=(0.05 * extent, 0.2 * extent),
            heterogeneity_probability=0.0,
            families=cfg.families,
        )
        geology = random_geology(rng, prior)
        # OpenFWI's maps are acoustic with velocity increasing with depth, layer by layer. Layers
        # are numbered youngest first, so tilted and eroded families may invert the order in
        # places (as real basins do). Channel fills follow their host layer; a compaction trend
        # or an intruded body may leave the range, so the map is clipped to it.
        geology.vp = np.sort(rng.uniform(*cfg.velocity, geology.n_layers))
        velocity = np.clip(geology.rasterize(cfg.size, cfg.size)[0], *cfg.velocity)
        src_idx = np.round(np.linspace(0, cfg.size - 1, cfg.n_sources)).astype(int)
        rec_idx = np.round(np.linspace(0, cfg.size - 1, cfg.n_receivers)).astype(int)
        gathers, seconds = simulate_shot_gathers(
            velocity, cfg.grid_spacing, src_idx, rec_idx, cfg.source_depth_idx, cfg.wavelet_freq, cfg.dt,
            cfg.n_samples, pml_width=cfg.pml_width, accuracy=cfg.accuracy, courant_number=cfg.courant_number,
        )  # fmt: skip
        fault = geology.main_fault
        labels = {
            "family": geology.family,
            "n_layers": geology.n_layers,
            "fault_present": fault is not None,
            "fault_dip_deg": float(fault.dip_deg) if fault else 0.0,
            "fault_throw_m": float(fault.throw_m) if fault else 0.0,
        }
        labels["caption"] = caption_openfwi(labels)
        row = openfwi_row(velocity, gathers, geology_id, labels, 1.0 / cfg.dt, rec_idx * cfg.grid_spacing)
        return Sample(row=row, solver_seconds=seconds)


_OPENFWI_LAYERS = {
    "unconformity": "layers with an angular unconformity",
    "graben": "layers in a graben or horst",
    "channel": "layers with buried channels",
    "composite": "layers with a random geological history",
}


def caption_openfwi(labels: dict) -> str:
    layers = _OPENFWI_LAYERS.get(labels["family"], f"{labels['family']} layers")
    text = f"velocity map, {labels['n_layers']} {layers}"
    if labels["fault_present"]:
        text += f" cut by a fault (dip {labels['fault_dip_deg']:.0f} deg, throw {labels['fault_throw_m']:.0f} m)"
    return text
