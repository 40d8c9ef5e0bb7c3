"""Acoustic shot gathers in the OpenFWI layout, with deepwave's scalar (constant-density) solver."""

from __future__ import annotations

import time
import warnings

import deepwave
import numpy as np
import torch


def simulate_shot_gathers(
    velocity: np.ndarray,
    grid_spacing: float,
    source_x_idx: np.ndarray,
    receiver_x_idx: np.ndarray,
    depth_idx: int,
    wavelet_freq: float,
    dt: float,
    n_samples: int,
    *,
    pml_width: int = 20,
    accuracy: int = 4,
    courant_number: float = 0.7,
) -> tuple[np.ndarray, float]:
    """Shot gathers (shots, time, receivers) float32 in OpenFWI's sign, and solver seconds.

    OpenFWI's records have the opposite sign to deepwave's pressure output, so the result is
    negated. Sources and receivers sit on row ``depth_idx``; every face absorbs (OpenFWI has no
    free surface).
    """
    v = torch.from_numpy(np.ascontiguousarray(velocity, np.float32))
    n_shots = len(source_x_idx)
    src = torch.zeros(n_shots, 1, 2, dtype=torch.long)
    src[:, 0, 0] = depth_idx
    src[:, 0, 1] = torch.as_tensor(np.asarray(source_x_idx), dtype=torch.long)
    rec = torch.zeros(n_shots, len(receiver_x_idx), 2, dtype=torch.long)
    rec[..., 0] = depth_idx
    rec[..., 1] = torch.as_tensor(np.asarray(receiver_x_idx), dtype=torch.long)
    wavelet = deepwave.wavelets.ricker(wavelet_freq, n_samples, dt, 1.5 / wavelet_freq)
    amplitudes = wavelet.reshape(1, 1, -1).repeat(n_shots, 1, 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"dt~.*exceeds the stable internal time step")
        start = time.perf_counter()
        out = deepwave.scalar(
            v,
            grid_spacing,
            dt,
            source_amplitudes=amplitudes,
            source_locations=src,
            receiver_locations=rec,
            accuracy=accuracy,
            pml_width=pml_width,
            pml_freq=wavelet_freq,
            courant_number=courant_number,
        )
        seconds = time.perf_counter() - start
    gathers = -out.receiver_amplitudes.numpy().transpose(0, 2, 1)  # (shot, time, receiver)
    return np.ascontiguousarray(gathers, dtype=np.float32), seconds
