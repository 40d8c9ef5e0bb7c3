"""Checks that stop a bad simulation before it starts, with a message that says what to change."""

from __future__ import annotations

import math

import numpy as np
from deepwave.discretisation import critical_courant_number

# Highest frequency carried with care by a Ricker wavelet of peak frequency f0: at 2 f0 its
# amplitude spectrum is 20% of the peak. OpenFWI's published setup (1500 m/s, 15 Hz, 10 m)
# samples that frequency with exactly 5 points, the default minimum here.
RICKER_FMAX_FACTOR = 2.0
MIN_VP_OVER_VS = math.sqrt(4.0 / 3.0)  # below this the bulk modulus is negative


def check_courant(courant_number: float, accuracy: int, propagator: str) -> None:
    """The target Courant number must be below deepwave's critical value for the stencil."""
    if accuracy not in (2, 4, 6, 8):
        raise ValueError(f"accuracy must be 2, 4, 6 or 8, got {accuracy!r}")
    critical = critical_courant_number(accuracy, propagator=propagator)
    if not 0 < courant_number <= critical:
        raise ValueError(
            f"unstable time step: courant_number {courant_number} must be in (0, {critical:.3f}], "
            f"the critical value of deepwave's {propagator} solver at accuracy {accuracy}"
        )


def check_points_per_wavelength(
    min_velocity: float, wavelet_freq: float, grid_spacing: float, min_points: float
) -> None:
    """The slowest wave at the wavelet's top frequency must be sampled by ``min_points`` cells."""
    fmax = RICKER_FMAX_FACTOR * wavelet_freq
    points = min_velocity / fmax / grid_spacing
    if points < min_points:
        raise ValueError(
            f"too few points per wavelength: {points:.2f} < {min_points} for velocity {min_velocity} m/s "
            f"at {fmax:g} Hz (= {RICKER_FMAX_FACTOR:g} x wavelet_freq) on a {grid_spacing} m grid; "
            f"use grid_spacing <= {min_velocity / fmax / min_points:.3g} m or "
            f"wavelet_freq <= {min_velocity / (RICKER_FMAX_FACTOR * grid_spacing * min_points):.3g} Hz"
        )


def check_elastic_model(vp: np.ndarray, vs: np.ndarray, rho: np.ndarray) -> None:
    """Finite, positive, and physically valid Vp/Vs everywhere (solid cells only)."""
    for name, a in (("vp", vp), ("vs", vs), ("rho", rho)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} holds NaN or infinite values")
        if np.any(a <= 0):
            raise ValueError(f"{name} must be positive everywhere (min {np.min(a)}); the free surface is added for you")
    ratio = np.min(vp / vs)
    if ratio <= MIN_VP_OVER_VS:
        raise ValueError(
            f"unphysical Vp/Vs: min {ratio:.3f} must exceed sqrt(4/3) = {MIN_VP_OVER_VS:.3f} "
            "(Vs >= Vp, or a negative bulk modulus)"
        )
