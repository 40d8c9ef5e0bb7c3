"""Scenario ``quake``: earthquakes in random 2-D geologies recorded at surface stations.

In the manner of HEMEWS-3D, in 2-D: one geology per row, its SFM-style section image, and for
each of several random moment-tensor sources the 3-component (ZNE) velocity at K surface
stations, sampled at 100 Hz as SeisLM expects.
"""

from __future__ import annotations

import dataclasses

import datasets
import numpy as np

from seisbind.data.elastic import MomentTensorSource, simulate_quake
from seisbind.data.geology import FAMILIES, GeologyPrior, random_geology
from seisbind.data.labels import caption, geology_labels, vs30
from seisbind.data.scenarios.base import COMMON_FEATURES, Sample, Scenario, require_positive, require_range
from seisbind.data.section import section_image
from seisbind.data.validation import check_courant, check_points_per_wavelength


@dataclasses.dataclass
class QuakeConfig:
    # Section and simulation grid (m). 20 m cells carry Vs 300 m/s at 2 x 1.2 Hz with 6 points.
    width_m: float = 4000.0
    depth_m: float = 2000.0
    grid_spacing: float = 20.0
    # Section image, SFM's 224 x 224 by default; Ricker wavelength along depth in pixels.
    image_height: int = 224
    image_width: int = 224
    image_wavelength_px: float = 6.0
    image_noise: tuple[float, float] = (0.05, 0.3)  # RMS noise / RMS signal, drawn per image
    # Stations along the surface.
    n_stations: int = 16
    station_margin_m: float = 200.0
    # Sources: several per geology, each a positive waveform for the geology's image.
    sources_per_geology: int = 4
    source_depth_m: tuple[float, float] = (300.0, 1700.0)
    log10_moment: tuple[float, float] = (13.0, 15.0)  # N (moment per unit length in 2-D)
    max_isotropic_fraction: float = 0.3
    wavelet_freq: float = 1.2  # Hz, Ricker source time function
    # Recording: SeisLM's 100 Hz and 3001-sample (30 s) windows by default.
    sample_rate: float = 100.0
    window_seconds: float = 30.0
    # Solver.
    accuracy: int = 4
    pml_width: int = 20
    courant_number: float = 0.8
    mpml_fraction: float = 0.1  # multiaxial PML: keeps 30 s runs with soft soils stable
    free_surface: bool = True
    min_points_per_wavelength: float = 5.0
    # Geology priors.
    n_layers: tuple[int, int] = (3, 8)
    vs_min: float = 300.0
    vs_max: float = 3500.0
    families: tuple[str, ...] = FAMILIES

    @property
    def n_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate)) + 1

    @property
    def grid_shape(self) -> tuple[int, int]:
        return int(round(self.depth_m / self.grid_spacing)), int(round(self.width_m / self.grid_spacing))

    def prior(self) -> GeologyPrior:
        return GeologyPrior(
            width_m=self.width_m,
            depth_m=self.depth_m,
            n_layers=self.n_layers,
            vs_min=self.vs_min,
            vs_max=self.vs_max,
            families=self.families,
        )


class QuakeScenario(Scenario):
    name = "quake"
    config_class = QuakeConfig

    def validate(self, cfg: QuakeConfig) -> None:
        require_positive(
            cfg, "width_m", "depth_m", "grid_spacing", "image_height", "image_width", "image_wavelength_px",
            "n_stations", "sources_per_geology", "wavelet_freq", "sample_rate", "window_seconds", "vs_min",
        )  # fmt: skip
        require_range(cfg, "image_noise", low=0.0)
        require_range(cfg, "n_layers", low=2)
        require_range(cfg, "log10_moment")
        require_range(cfg, "source_depth_m", low=2 * cfg.grid_spacing, high=cfg.depth_m - 2 * cfg.grid_spacing)
        nz, nx = cfg.grid_shape
        if min(nz, nx) < 10:
            raise ValueError(f"the simulation grid {nz} x {nx} is too small; make grid_spacing smaller")
        if min(cfg.image_height, cfg.image_width) < 16:
            raise ValueError(f"image must be at least 16 x 16 (one ViT patch), got {cfg.image_height} x {cfg.image_width}")
        if not cfg.vs_min < cfg.vs_max:
            raise ValueError(f"vs_min {cfg.vs_min} must be below vs_max {cfg.vs_max}")
        if not 0 <= cfg.max_isotropic_fraction <= 1:
            raise ValueError(f"max_isotropic_fraction must be in [0, 1], got {cfg.max_isotropic_fraction}")
        if not 0 <= cfg.station_margin_m < cfg.width_m / 2:
            raise ValueError(f"station_margin_m must be in [0, width_m / 2), got {cfg.station_margin_m}")
        unknown = sorted(set(cfg.families) - set(FAMILIES))
        if unknown or not cfg.families:
            raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {cfg.families}")
        if cfg.sample_rate < 5 * cfg.wavelet_freq:
            raise ValueError(
                f"sample_rate {cfg.sample_rate} Hz cannot carry a {cfg.wavelet_freq} Hz Ricker wavelet "
                f"(needs at least {5 * cfg.wavelet_freq} Hz)"
            )
        if cfg.window_seconds < 3.0 / cfg.wavelet_freq:
            raise ValueError(f"window_seconds {cfg.window_seconds} is shorter than the source wavelet (3 / wavelet_freq)")
        if not 0 <= cfg.mpml_fraction < 1:
            raise ValueError(f"mpml_fraction must be in [0, 1), got {cfg.mpml_fraction}")
        check_courant(cfg.courant_number, cfg.accuracy, "elastic")
        check_points_per_wavelength(cfg.vs_min, cfg.wavelet_freq, cfg.grid_spacing, cfg.min_points_per_wavelength)

    def features(self, cfg: QuakeConfig) -> datasets.Features:
        s, k, t = cfg.sources_per_geology, cfg.n_stations, cfg.n_samples
        nz, nx = cfg.grid_shape
        f32 = datasets.Value("float32")
        return datasets.Features(
            {
                **COMMON_FEATURES,
                # Raw amplitudes (reflection coefficients ~1e-3..0.3): float16 keeps 3 significant digits.
                "image": datasets.Array2D((cfg.image_height, cfg.image_width), "float16"),
                # Each trace scaled to peak 1 and stored in float16; waveform_scale (float32) restores
                # m/s. Plain float16 m/s would underflow (ground velocities are ~1e-9 m/s).
                "waveforms": datasets.Array4D((s, k, 3, t), "float16"),
                "waveform_scale": datasets.Array2D((s, k), "float32"),
                "origin_time_s": f32,
                "station_x_m": datasets.Sequence(f32, length=k),
                "station_vs30": datasets.Sequence(f32, length=k),
                "source_x_m": datasets.Sequence(f32, length=s),
                "source_depth_m": datasets.Sequence(f32, length=s),
                "source_log10_moment": datasets.Sequence(f32, length=s),
                "source_angle_deg": datasets.Sequence(f32, length=s),
                "source_isotropic_fraction": datasets.Sequence(f32, length=s),
                "epicentral_distance_m": datasets.Array2D((s, k), "float32"),
                "hypocentral_distance_m": datasets.Array2D((s, k), "float32"),
                "n_layers": datasets.Value("int32"),
                "fault_present": datasets.Value("bool"),
                "fault_kind": datasets.Value("string"),
                "fault_dip_deg": f32,
                "fault_throw_m": f32,
                "body_kind": datasets.Value("string"),
                "heterogeneity_std": f32,
                "vs30": f32,
                "depth_vs760_m": f32,
                "image_noise": f32,
                # The exact grids the solver saw (m/s, kg/m^3); float16 keeps them to ~0.1%.
                "vp": datasets.Array2D((nz, nx), "float16"),
                "vs": datasets.Array2D((nz, nx), "float16"),
                "rho": datasets.Array2D((nz, nx), "float16"),
            }
        )

    def draw_section(self, cfg: QuakeConfig, rng: np.random.Generator):
        """A random geology, its image noise level and its section image: a sample without waveforms."""
        geology = random_geology(rng, cfg.prior())
        noise = float(rng.uniform(*cfg.image_noise))
        image = section_image(geology, cfg.image_height, cfg.image_width, cfg.image_wavelength_px, noise, rng)
        return geology, noise, image

    def make_sample(self, cfg: QuakeConfig, geology_id: int, rng: np.random.Generator) -> Sample:
        geology, noise, image = self.draw_section(cfg, rng)
        labels = geology_labels(geology)

        nz, nx = cfg.grid_shape
        vp, vs, rho = geology.rasterize(nz, nx)
        stations = np.linspace(cfg.station_margin_m, cfg.width_m - cfg.station_margin_m, cfg.n_stations)
        s = cfg.sources_per_geology
        src_x = rng.uniform(0.1 * cfg.width_m, 0.9 * cfg.width_m, s)
        src_z = rng.uniform(*cfg.source_depth_m, s)
        log_m0 = rng.uniform(*cfg.log10_moment, s)
        angle = rng.uniform(0.0, 180.0, s)
        iso = rng.uniform(-cfg.max_isotropic_fraction, cfg.max_isotropic_fraction, s)
        sources = [
            MomentTensorSource.from_mechanism(src_z[i], src_x[i], 10.0 ** log_m0[i], angle[i], iso[i]) for i in range(s)
        ]
        sim = simulate_quake(
            vp, vs, rho, cfg.grid_spacing, sources, stations, cfg.wavelet_freq, cfg.sample_rate, cfg.n_samples,
            free_surface=cfg.free_surface, pml_width=cfg.pml_width, accuracy=cfg.accuracy,
            courant_number=cfg.courant_number, mpml_fraction=cfg.mpml_fraction,
        )  # fmt: skip
        scale = np.abs(sim.waveforms).max(axis=(2, 3))
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        epi = np.abs(src_x[:, None] - stations[None, :])
        row = {
            "geology_id": geology_id,
            "scenario": self.name,
            "sampling_rate": cfg.sample_rate,
            "channels": "ZNE",
            "family": labels["family"],
            "caption": caption(labels),
            "image": image.astype(np.float16),
            "waveforms": (sim.waveforms / scale[..., None, None]).astype(np.float16),
            "waveform_scale": scale,
            "origin_time_s": 1.5 / cfg.wavelet_freq,
            "station_x_m": stations.astype(np.float32),
            "station_vs30": np.array([vs30(geology, x) for x in stations], np.float32),
            "source_x_m": src_x.astype(np.float32),
            "source_depth_m": src_z.astype(np.float32),
            "source_log10_moment": log_m0.astype(np.float32),
            "source_angle_deg": angle.astype(np.float32),
            "source_isotropic_fraction": iso.astype(np.float32),
            "epicentral_distance_m": epi.astype(np.float32),
            "hypocentral_distance_m": np.hypot(epi, src_z[:, None]).astype(np.float32),
            "image_noise": noise,
            "vp": vp.astype(np.float16),
            "vs": vs.astype(np.float16),
            "rho": rho.astype(np.float16),
            **{k: v for k, v in labels.items() if k != "family"},
        }
        return Sample(row=row, solver_seconds=sim.solver_seconds)
