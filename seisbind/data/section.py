"""SFM-style seismic section images of a geology (the convolutional model of a post-stack section).

Acoustic impedance -> normal-incidence reflectivity -> convolution with a Ricker wavelet along
depth -> plus band-limited noise (white noise through the same wavelet, so it has the
section's own spectrum). One channel, stored raw; per-image normalisation happens at load time,
as SFM does, so the stored amplitudes keep their physical meaning.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve1d

from seisbind.data.geology import Geology


def ricker_depth(wavelength_px: float) -> np.ndarray:
    """A zero-phase Ricker wavelet sampled along depth with its peak wavelength in pixels."""
    half = int(np.ceil(1.5 * wavelength_px))
    z = np.arange(-half, half + 1, dtype=np.float64)
    a = (np.pi * z / wavelength_px) ** 2
    return (1.0 - 2.0 * a) * np.exp(-a)


def reflectivity(impedance: np.ndarray) -> np.ndarray:
    """Normal-incidence reflection coefficients along axis 0: (I[k+1]-I[k]) / (I[k+1]+I[k])."""
    r = np.zeros_like(impedance, dtype=np.float64)
    upper, lower = impedance[:-1], impedance[1:]
    r[:-1] = (lower - upper) / (lower + upper)
    return r


def section_image(
    geology: Geology,
    height: int,
    width: int,
    wavelength_px: float,
    noise_level: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A (height, width) float32 seismic section of ``geology``.

    ``noise_level`` is the RMS of the band-limited noise relative to the RMS of the clean section.
    """
    vp, _, rho = geology.rasterize(height, width)
    wavelet = ricker_depth(wavelength_px)
    clean = convolve1d(reflectivity(vp.astype(np.float64) * rho), wavelet, axis=0, mode="constant")
    noise = convolve1d(rng.standard_normal(clean.shape), wavelet, axis=0, mode="constant")
    clean_rms = np.sqrt(np.mean(clean**2)) or 1.0
    noise *= noise_level * clean_rms / (np.sqrt(np.mean(noise**2)) or 1.0)
    return (clean + noise).astype(np.float32)
