"""2-D elastic (P-SV) earthquake simulation with deepwave's staggered-grid solver.

Axes follow deepwave in 2-D: dimension 0 is depth (``y``, positive down), dimension 1 is distance
(``x``). The free surface is made with the improved vacuum method (rows of zero Lame parameters
and zero buoyancy above the ground, top PML width 0) because a zero-width PML face alone is a
rigid wall, not a free surface. The other three faces absorb with a PML.

Outputs are ground velocity in the seismological ZNE order: Z = up (= -v_y), N = the in-plane
horizontal (= v_x, positive towards increasing distance), E = the out-of-plane horizontal,
identically zero because P-SV motion has no out-of-plane component (SH is not simulated).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import deepwave
import numpy as np
import torch

from seisbind.data.validation import check_elastic_model

N_VACUUM_ROWS = 4  # covers the half-stencil of accuracy up to 8 above the surface


@dataclass
class MomentTensorSource:
    """A point source in the section: position (m) and a 2-D moment tensor per unit length (N).

    ``m_zz``, ``m_xx`` and ``m_xz`` are the in-plane components, z positive down.
    """

    depth_m: float
    x_m: float
    m_zz: float
    m_xx: float
    m_xz: float

    @classmethod
    def from_mechanism(
        cls, depth_m: float, x_m: float, moment: float, angle_deg: float, isotropic_fraction: float
    ) -> MomentTensorSource:
        """A double couple whose nodal planes are rotated by ``angle_deg``, plus an explosive part.

        The deviatoric part ``[[cos 2a, sin 2a], [sin 2a, -cos 2a]]`` has eigenvalues +-1 (a pure
        double couple in the plane); ``isotropic_fraction`` in [-1, 1] mixes in an explosion
        (positive) or implosion (negative).
        """
        a = np.radians(2 * angle_deg)
        dev, iso = 1.0 - abs(isotropic_fraction), isotropic_fraction
        return cls(
            depth_m=depth_m,
            x_m=x_m,
            m_zz=moment * (dev * np.cos(a) + iso),
            m_xx=moment * (-dev * np.cos(a) + iso),
            m_xz=moment * dev * np.sin(a),
        )


def _body_forces(src: MomentTensorSource, iz: int, ix: int, dz: float, dx: float):
    """Equivalent body forces of a point moment tensor, f_i = -M_ij d_j delta (Aki & Richards 3.2).

    The derivative of the delta function becomes a centred difference: a force couple
    +-M/(2h) one cell either side of the source, divided by the cell area to give a force
    density (deepwave's source unit). Returns (z-force points, x-force points), each a list of
    ((iz, ix), amplitude). deepwave has no moment-tensor source, hence this.
    """
    area = dz * dx
    fz = [
        ((iz + 1, ix), src.m_zz / (2 * dz) / area),
        ((iz - 1, ix), -src.m_zz / (2 * dz) / area),
        ((iz, ix + 1), src.m_xz / (2 * dx) / area),
        ((iz, ix - 1), -src.m_xz / (2 * dx) / area),
    ]
    fx = [
        ((iz, ix + 1), src.m_xx / (2 * dx) / area),
        ((iz, ix - 1), -src.m_xx / (2 * dx) / area),
        ((iz + 1, ix), src.m_xz / (2 * dz) / area),
        ((iz - 1, ix), -src.m_xz / (2 * dz) / area),
    ]
    return fz, fx


@dataclass
class SimulationResult:
    waveforms: np.ndarray  # (sources, stations, 3, time) float32, ZNE, m/s
    solver_seconds: float  # wall time inside deepwave
    internal_dt: float  # deepwave's CFL-limited time step


def simulate_quake(
    vp: np.ndarray,
    vs: np.ndarray,
    rho: np.ndarray,
    grid_spacing: float,
    sources: list[MomentTensorSource],
    station_x_m: np.ndarray,
    wavelet_freq: float,
    sample_rate: float,
    n_samples: int,
    *,
    free_surface: bool = True,
    pml_width: int = 20,
    accuracy: int = 4,
    courant_number: float = 0.8,
    mpml_fraction: float = 0.1,
    station_depth_m: float = 0.0,
) -> SimulationResult:
    """Simulate every source (one deepwave shot each) through one model and record the stations.

    ``vp``, ``vs``, ``rho`` are (nz, nx) cell-centre grids with spacing ``grid_spacing`` (m). The
    source time function is a Ricker wavelet of peak frequency ``wavelet_freq`` peaking at
    ``1.5 / wavelet_freq`` s after the window start. deepwave sub-steps internally at its
    CFL-stable step and returns the receivers already sampled at ``sample_rate`` (its own
    band-limited resampling), so no decimation happens here.

    ``mpml_fraction`` > 0 turns the side PMLs into a multiaxial PML (Meza-Fajardo & Papageorgiou
    2008). With the standard PML, soft near-surface layers (Vp/Vs ~2.4) between the free surface
    and a side PML grow a late-time exponential instability within 30 s; 0.1 cures it for about
    18% more solver time (measured on a salt-diapir geology, benchmarks/RESULTS.md).
    """
    check_elastic_model(vp, vs, rho)
    if vp.ndim != 2 or vp.shape != vs.shape or vp.shape != rho.shape:
        raise ValueError(f"vp, vs, rho must be 2-D grids of one shape, got {vp.shape}, {vs.shape}, {rho.shape}")
    nz, nx = vp.shape
    top = N_VACUUM_ROWS if free_surface else 0
    vp_t = torch.zeros(nz + top, nx)
    vs_t = torch.zeros(nz + top, nx)
    rho_t = torch.zeros(nz + top, nx)
    vp_t[top:], vs_t[top:], rho_t[top:] = (torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (vp, vs, rho))
    # vp = vs = rho = 0 maps to lamb = mu = buoyancy = 0: deepwave's vacuum sentinel.
    lamb, mu, buoyancy = deepwave.vpvsrho_to_lambmubuoyancy(vp_t, vs_t, rho_t)

    dt = 1.0 / sample_rate
    wavelet = deepwave.wavelets.ricker(wavelet_freq, n_samples, dt, 1.5 / wavelet_freq)
    n_shots = len(sources)
    z_locs, z_amps, x_locs, x_amps = [], [], [], []
    for src in sources:
        iz = top + int(np.clip(round(src.depth_m / grid_spacing - 0.5), 1, nz - 2))
        ix = int(np.clip(round(src.x_m / grid_spacing - 0.5), 1, nx - 2))
        fz, fx = _body_forces(src, iz, ix, grid_spacing, grid_spacing)
        z_locs.append([p for p, _ in fz])
        z_amps.append([a for _, a in fz])
        x_locs.append([p for p, _ in fx])
        x_amps.append([a for _, a in fx])
    src_y = torch.tensor(z_locs, dtype=torch.long)
    src_x = torch.tensor(x_locs, dtype=torch.long)
    amp_y = torch.tensor(z_amps, dtype=torch.float32)[..., None] * wavelet
    amp_x = torch.tensor(x_amps, dtype=torch.float32)[..., None] * wavelet

    rec_iz = top + int(np.clip(round(station_depth_m / grid_spacing - 0.5), 0, nz - 1))
    rec_ix = np.clip(np.round(np.asarray(station_x_m) / grid_spacing - 0.5), 0, nx - 1).astype(np.int64)
    rec = torch.zeros(n_shots, len(rec_ix), 2, dtype=torch.long)
    rec[..., 0] = rec_iz
    rec[..., 1] = torch.from_numpy(rec_ix)

    with warnings.catch_warnings():
        # The top face lies in vacuum when free_surface is on, so its rigid-wall reflection never
        # touches the solid; and sub-stepping below the output interval is what we ask for.
        warnings.filterwarnings("ignore", category=deepwave.ZeroWidthFaceWarning)
        warnings.filterwarnings("ignore", message=r"dt~.*exceeds the stable internal time step")
        start = time.perf_counter()
        out = deepwave.elastic(
            lamb,
            mu,
            buoyancy,
            grid_spacing,
            dt,
            source_amplitudes_y=amp_y,
            source_locations_y=src_y,
            source_amplitudes_x=amp_x,
            source_locations_x=src_x,
            receiver_locations_y=rec,
            receiver_locations_x=rec,
            pml_width=[0 if free_surface else pml_width, pml_width, pml_width, pml_width],
            pml_freq=wavelet_freq,
            accuracy=accuracy,
            courant_number=courant_number,
            mpml_fraction=mpml_fraction,
        )
        solver_seconds = time.perf_counter() - start
    vy = out.receiver_amplitudes_y.numpy()
    vx = out.receiver_amplitudes_x.numpy()
    waves = np.stack([-vy, vx, np.zeros_like(vx)], axis=2).astype(np.float32)  # Z up, N, E
    return SimulationResult(waveforms=waves, solver_seconds=solver_seconds, internal_dt=float(out.info.internal_dt))
