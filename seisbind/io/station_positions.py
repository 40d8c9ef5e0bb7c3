"""Station coordinates from an ObsPy inventory, and positions along an array for the waveform tower.

The array tower (``seisbind.models.array_head``) takes each station's position along the array in
metres (``station_x_m``), as OpenFWI's receiver line and the quake scenario's surface stations
have. A real array is given by latitude and longitude; it is placed on the plane tangent at its
centroid (ObsPy's geodesic distance and azimuth from the centroid to each station) and projected on
its main axis (the first principal direction of those points), which for a line of stations is the
line itself. No library offers this projection; it is a few lines of NumPy on top of ObsPy's
geodesy. The axis points east (north for a north-south line), so a file always embeds the same way.
"""

from __future__ import annotations

import math

import numpy as np


def station_coordinates(inventory, seed_ids: list[str], time) -> dict | None:
    """``{"latitude", "longitude", "elevation_m"}`` of the first of ``seed_ids`` (``NET.STA.LOC.CHA``)
    that ``inventory`` describes at ``time``, or None (no inventory, or no such channel in it)."""
    if inventory is None:
        return None
    for seed_id in seed_ids:
        try:
            c = inventory.get_coordinates(seed_id, time)
        except Exception:  # ObsPy raises a plain Exception when the channel is not in the inventory
            continue
        values = (float(c["latitude"]), float(c["longitude"]), float(c.get("elevation") or 0.0))
        if all(math.isfinite(v) for v in values):
            return dict(zip(("latitude", "longitude", "elevation_m"), values))
    return None


def positions_along_array_m(latitudes, longitudes) -> np.ndarray:
    """Each station's position along the array's main axis, in metres from the centroid's foot."""
    from obspy.geodetics import gps2dist_azimuth

    lat, lon = np.asarray(latitudes, float), np.asarray(longitudes, float)
    if lat.shape != lon.shape or lat.ndim != 1 or lat.size == 0:
        raise ValueError(f"positions need one latitude and longitude per station; got {lat.shape} and {lon.shape}")
    if lat.size == 1:
        return np.zeros(1)
    lat0, lon0 = float(lat.mean()), float(np.degrees(np.arctan2(np.sin(np.radians(lon)).mean(), np.cos(np.radians(lon)).mean())))
    east, north = np.empty(lat.size), np.empty(lat.size)
    for i, (a, b) in enumerate(zip(lat, lon)):
        distance, azimuth, _ = gps2dist_azimuth(lat0, lon0, float(a), float(b))
        east[i], north[i] = distance * math.sin(math.radians(azimuth)), distance * math.cos(math.radians(azimuth))
    points = np.stack([east, north], axis=1)
    centred = points - points.mean(0)
    if not np.any(centred):
        return np.zeros(lat.size)  # every station at one place
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    if axis[0] < -1e-9 or (abs(axis[0]) <= 1e-9 and axis[1] < 0):
        axis = -axis
    return centred @ axis
