"""Zero-shot classification of waveforms from image-side class prototypes (CLIP_benchmark style).

The prototypes come from labelled *images* only; waveforms are classified by their nearest
prototype, so no waveform label is ever used.
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_prototypes(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes and their prototypes: the mean of the normalised embeddings of each class, re-normalised."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    emb = l2_normalize(embeddings)
    protos = np.stack([emb[labels == c].mean(0) for c in classes])
    return classes, l2_normalize(protos)


def zero_shot_predict(queries: np.ndarray, classes: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """The class whose prototype has the highest cosine similarity with each query."""
    return classes[np.argmax(l2_normalize(queries) @ prototypes.T, axis=1)]
