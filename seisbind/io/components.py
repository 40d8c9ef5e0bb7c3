"""Which recorded components fill the Z, N and E slots the waveform tower expects.

The rule, applied the same way to ObsPy streams, SeisBench datasets and manifests:

* The component code is the last letter of the channel code (``HHZ`` -> ``Z``).
* The vertical slot takes ``Z``.
* The horizontal slots take the first **complete** pair in the order ``N/E`` (geographic),
  ``1/2`` (orthogonal, orientation not in the code), ``R/T`` (radial/transverse to a source).
  Without a complete pair, the one partial pair is used; partial pairs from two different sets
  (e.g. ``N`` and ``2``) are refused, because their relative orientation is unknown.
* ``1/2`` go to N/E **only when their orientation is unknown**. When it is known (an inventory
  gives each channel's azimuth and dip), the three components are rotated to true Z, N, E
  instead (``obspy.signal.rotate.rotate2zne``).
* ``R/T`` go to N/E as R -> N and T -> E when the back azimuth is unknown, so the embedding sees a
  source-rotated frame (recorded as frame ``"ZRT"``). When every trace carries
  ``stats.back_azimuth`` they are rotated back to N/E (``rotate_rt_ne``).
* A missing component is left as zeros (``missing="fill"``): the model's preprocessor treats a
  constant channel as dead and fills it by copying the station's first live channel, as SeisLM
  does. ``missing="refuse"`` raises instead. Other codes (``3``, ``U``, ``H``, ...) are ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from seisbind.io.batch import InputError

SLOTS = "ZNE"
# Horizontal pairs in order of preference, and the frame an embedding sees with each as N/E.
HORIZONTAL_PAIRS = (("N", "E", "ZNE"), ("1", "2", "Z12"), ("R", "T", "ZRT"))
MISSING_MODES = ("fill", "refuse")


@dataclasses.dataclass(frozen=True)
class ComponentChoice:
    """The source component code in each of the Z, N, E slots (``None`` = missing, filled)."""

    codes: tuple[str | None, str | None, str | None]
    frame: str  # "ZNE", "Z12" (unoriented 1/2 as N/E) or "ZRT" (source-rotated)

    @property
    def label(self) -> str:
        """The codes as a string, ``-`` for a missing slot: ``"ZNE"``, ``"Z12"``, ``"ZN-"``."""
        return "".join(c or "-" for c in self.codes)

    @property
    def filled(self) -> str:
        """The slots with no recorded component (their channel is left dead), e.g. ``"E"``."""
        return "".join(slot for slot, c in zip(SLOTS, self.codes) if c is None)


def choose_components(available: Iterable[str], missing: str = "fill", where: str = "") -> ComponentChoice:
    """Apply the module's rule to the component codes a station recorded.

    ``where`` names the station (and file) in error messages.
    """
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {MISSING_MODES}, got {missing!r}")
    have = set(available)
    prefix = f"{where}: " if where else ""
    vertical = "Z" if "Z" in have else None
    complete = [pair for pair in HORIZONTAL_PAIRS if pair[0] in have and pair[1] in have]
    partial = [pair for pair in HORIZONTAL_PAIRS if (pair[0] in have) != (pair[1] in have)]
    if complete:
        north, east, frame = complete[0]
    elif len(partial) > 1:
        found = sorted(c for pair in partial for c in pair[:2] if c in have)
        raise InputError(
            f"{prefix}horizontal components {found} come from different sets (N/E, 1/2, R/T), "
            "so their relative orientation is unknown; rotate them to N/E with ObsPy first"
        )
    elif partial:
        n_code, e_code, frame = partial[0]
        north, east = (n_code if n_code in have else None), (e_code if e_code in have else None)
    else:
        north = east = None
        frame = "ZNE"
    choice = ComponentChoice((vertical, north, east), frame)
    if all(c is None for c in choice.codes):
        raise InputError(
            f"{prefix}no seismometer components (codes {sorted(have)}; need Z, N/E, 1/2 or R/T)"
        )
    if choice.filled and missing == "refuse":
        raise InputError(
            f"{prefix}component(s) {', '.join(choice.filled)} missing (has {sorted(have)}); "
            "use missing='fill' to let the model copy a live component, as SeisLM does"
        )
    return choice
