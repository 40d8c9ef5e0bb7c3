"""What a data scenario is: a config, a check of it, a schema, and one paired sample per geology.

A new data source plugs in as one more :class:`Scenario` in ``seisbind.data.scenarios.SCENARIOS``;
the generator, storage and loaders do not change.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any

import datasets
import numpy as np

# Columns every scenario writes, so loaders and training need not know the scenario.
COMMON_FEATURES = {
    "geology_id": datasets.Value("int64"),
    "split": datasets.Value("string"),
    "scenario": datasets.Value("string"),
    "sampling_rate": datasets.Value("float32"),
    "channels": datasets.Value("string"),
    "family": datasets.Value("string"),
    "caption": datasets.Value("string"),
}


@dataclasses.dataclass
class Sample:
    """One geology's row and the seconds its solver ran (for the overhead figures)."""

    row: dict[str, Any]
    solver_seconds: float


class Scenario(ABC):
    name: str
    config_class: type

    def make_config(self, **overrides: Any):
        """The scenario's config with ``overrides`` applied; unknown keys are an error."""
        fields = {f.name: f for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"unknown {self.name} parameter(s) {unknown}; known: {sorted(fields)}")
        cleaned = {}
        for key, value in overrides.items():
            default = fields[key].default
            # YAML/CLI give lists where the dataclass holds tuples (ranges).
            cleaned[key] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
        cfg = self.config_class(**cleaned)
        self.validate(cfg)
        return cfg

    @abstractmethod
    def validate(self, cfg) -> None:
        """Raise ``ValueError`` naming the bad parameter before any simulation starts."""

    @abstractmethod
    def features(self, cfg) -> datasets.Features:
        """The Arrow schema of one row (one geology)."""

    @abstractmethod
    def make_sample(self, cfg, geology_id: int, rng: np.random.Generator) -> Sample:
        """Everything for one geology: its image, all its sources' waveforms, labels."""


def require_positive(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")


def require_range(cfg, name: str, low: float | None = None, high: float | None = None) -> None:
    lo, hi = getattr(cfg, name)
    if not lo <= hi:
        raise ValueError(f"{name} must be (min, max) with min <= max, got {(lo, hi)!r}")
    if low is not None and lo < low:
        raise ValueError(f"{name} must not go below {low}, got {(lo, hi)!r}")
    if high is not None and hi > high:
        raise ValueError(f"{name} must not go above {high}, got {(lo, hi)!r}")
