"""Augmentations of image-waveform pairs that keep the physics of a record.

A record is (stations, channels, time) ground velocity from one source. Each augmentation acts on
the whole record at once, so what the waveform tower learns from (moveout across stations,
relative amplitudes between stations and components, the shape of each trace) is untouched:

* a time shift, the same for every station: an error in the origin time, filled with zeros;
* one amplitude gain, log-uniform: a stronger or weaker event of the same mechanism;
* additive Gaussian noise of one RMS for every station, set relative to the unscaled record, so a
  weaker event (lower gain) is noisier, and distant stations have a lower signal-to-noise ratio
  than near ones, as with a real noise floor. A component that recorded nothing (E in 2-D P-SV)
  gets no noise: it stays dead, and the tower's dead-channel rule applies as it will at inference.

Two act on the pair as a whole. The ground's velocities scaled by one factor (:func:`stretch_record`,
for every record of the pair): every velocity times ``a`` (density by Gardner's rule, times
``a**0.25``) with a source wavelet of ``a`` times the frequency records ``u(x, a t)``, the original
record compressed in time by ``a``. The elastic and acoustic wave equations have no other time
scale; an amplitude factor aside, re-simulations of a quickstart geology matched the stretched
record to 0.40-0.45 % at a = 0.85 and 1.18. A section of reflectivity, normalised per image, does
not change (impedance ratios are what it shows): the pair is the same section over another
absolute velocity, which the record shows and the image cannot. And the mirror
(:func:`mirror_pair`): a 2-D section mirrored left to right is another
valid geology, and its record is the original's with the stations in reverse order and the in-plane
horizontal component (N, along increasing distance) negated; Z and the out-of-plane E are unchanged.
A record whose channels are shots along the line (OpenFWI's ``shot0..shot4``) mirrors with its shots
in reverse order as well: shot i of the mirrored section is the mirror of shot n-1-i.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The mirror itself is seisbind.mirror's (the model's mirror-averaged embeddings use it too).
from seisbind.mirror import ZNE, mirror_images, mirror_records, mirrorable  # noqa: F401 (mirrorable re-exported)


@dataclass(frozen=True)
class WaveformAugment:
    """Random time shift, gain and noise of a (stations, channels, time) record; see the module doc.

    ``amplitude_scale`` is the [low, high] range of the gain (log-uniform), ``noise_level`` the
    [low, high] range of noise RMS over record RMS (uniform), ``max_shift_samples`` the largest
    shift either way.
    """

    amplitude_scale: tuple[float, float] = (0.5, 2.0)
    noise_level: tuple[float, float] = (0.0, 0.1)
    max_shift_samples: int = 10

    def __call__(self, record: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.asarray(record, dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"a record must be (stations, channels, time); got shape {x.shape}")
        # Draw every random number in a fixed order, whatever the record holds, so a pair's
        # augmentation depends only on its seed.
        shift = int(rng.integers(-self.max_shift_samples, self.max_shift_samples + 1)) if self.max_shift_samples else 0
        low, high = self.amplitude_scale
        gain = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        level = float(rng.uniform(*self.noise_level))
        # Skipped only when no pair can get noise, so the draws stay in one order for a given config.
        noise = rng.standard_normal(x.shape, dtype=np.float32) if self.noise_level[1] > 0 else None

        # In place where it can be: an OpenFWI record is 350,000 samples and a data worker builds 32
        # a step (254 -> 219 ms for 32 on a shared core; the Gaussian draw is most of what is left).
        out = shift_record(x, shift)
        live = np.abs(x).max(axis=-1, keepdims=True) > 0
        flat = x.reshape(-1)
        # A dead channel is all zeros, so the sum of squares over every sample is that of the live ones.
        live_samples = int(live.sum()) * x.shape[-1]
        rms = float(np.sqrt(np.dot(flat, flat) / live_samples)) if live_samples else 0.0
        out *= np.float32(gain)
        if noise is not None and level > 0 and rms > 0:
            noise *= np.float32(level * rms)
            noise *= live  # no noise on a dead channel
            out += noise
        return out


def shift_record(x: np.ndarray, shift: int) -> np.ndarray:
    """``x`` delayed by ``shift`` samples along its last axis (advanced if negative), zero-filled."""
    if shift == 0:
        return x.copy()
    out = np.zeros_like(x)
    if abs(shift) >= x.shape[-1]:
        return out
    if shift > 0:
        out[..., shift:] = x[..., :-shift]
    else:
        out[..., :shift] = x[..., -shift:]
    return out


def stretch_record(x: np.ndarray, factor: float) -> np.ndarray:
    """The record of the same ground with every velocity times ``factor``: ``y(t) = x(factor * t)``
    along the last axis (time from the window start, the origin of the source's wavelet), linearly
    interpolated between samples; where ``factor * t`` runs past the window, zeros.

    A factor above 1 (faster ground) compresses the record and leaves its last ``1 - 1/factor`` of the
    window empty; below 1 stretches it and drops the tail that no longer fits. Linear interpolation,
    vectorised over every trace at once (``np.interp`` takes one trace a call): on quickstart records
    (a 2.4 Hz wavelet at 100 Hz, 42 samples a period) it is within 0.4 % of a cubic spline at
    under a tenth of the cost, and a data worker stretches 32 records a step. Not
    :func:`seisbind.io.obspy_streams.resample_array`: that is a change of sampling rate through
    ObsPy, trace by trace, and refuses a window that runs past the record's end."""
    x = np.asarray(x, dtype=np.float32)
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"the velocity factor must be a positive number; got {factor!r}")
    if factor == 1.0:
        return x.copy()
    n = x.shape[-1]
    where = factor * np.arange(n, dtype=np.float64)
    inside = where <= n - 1
    left = where[inside].astype(np.int64)
    frac = (where[inside] - left).astype(np.float32)
    padded = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)  # left + 1 reaches n at the last sample
    out = np.zeros_like(x)
    out[..., inside] = padded[..., left] * (1.0 - frac) + padded[..., left + 1] * frac
    return out


def mirror_pair(image: np.ndarray, record: np.ndarray, channels: str = ZNE) -> tuple[np.ndarray, np.ndarray]:
    """The mirror image of a 2-D pair: ``image`` (channels, depth, distance) flipped along
    distance, ``record`` (stations, channels, time) with stations reversed and, by ``channels``:

    * ``"ZNE"`` (P-SV): N, the in-plane horizontal, negated. Exact for stations placed
      symmetrically about the section's middle (the quake scenario's evenly spaced stations with
      equal margins).
    * ``"shot0,...,shotN"`` (one pressure gather a shot): the shots reversed. Exact where the shots
      sit symmetrically along the line; OpenFWI's five at cells 0, 17, 34, 52, 69 of 70 mirror onto
      69, 52, 35, 17, 0, so the middle shot lands one cell (10 m) from where it was fired, a few
      samples of its direct wave at the receivers beside it.
    """
    record = np.asarray(record)
    if record.ndim != 3:
        raise ValueError(f"mirror_pair needs a (stations, channels, time) record; got shape {record.shape}")
    return (np.ascontiguousarray(mirror_images(np.asarray(image))),
            np.ascontiguousarray(mirror_records(record, channels)))
