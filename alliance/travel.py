"""Travel time between real positions: great-circle distance, a road detour factor and a speed.

Positions are (lat, lon) in degrees. Travel minutes are
`setup_minutes + km * detour / speed_kmh * 60`, where `km` is the haversine distance on a
sphere of the mean Earth radius. `to_plane` projects positions onto a local plane measured in
travel minutes, so the planar VRPTW core (`alliance.routing`, travel time = Euclidean
distance) can plan real positions: add `setup_minutes` to each job's service time there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alliance.errors import InvalidPositionError, InvalidTravelModelError

# IUGG mean Earth radius.
EARTH_RADIUS_KM = 6371.0088

LatLon = tuple[float, float]


def as_positions(points: Sequence[LatLon] | np.ndarray, what: str = "position") -> np.ndarray:
    """`points` as an (n, 2) float array of (lat, lon), refusing anything not a valid position."""
    try:
        arr = np.asarray(points, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidPositionError(f"{what}: not numeric (lat, lon) pairs") from exc
    if arr.ndim == 1 and arr.shape == (2,):
        arr = arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidPositionError(f"{what}: expected (lat, lon) pairs, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        k = int(np.argmin(np.isfinite(arr).all(axis=1)))
        raise InvalidPositionError(f"{what} #{k}: non-finite coordinate {tuple(arr[k])!r}")
    bad = (np.abs(arr[:, 0]) > 90.0) | (np.abs(arr[:, 1]) > 180.0)
    if bad.any():
        k = int(np.argmax(bad))
        raise InvalidPositionError(
            f"{what} #{k}: {tuple(arr[k])!r} is outside lat [-90, 90] / lon [-180, 180]")
    return arr


def _haversine_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle km between broadcastable arrays of (lat, lon) degrees (last axis = 2)."""
    lat1, lon1 = np.radians(a[..., 0]), np.radians(a[..., 1])
    lat2, lon2 = np.radians(b[..., 0]), np.radians(b[..., 1])
    h = (np.sin((lat2 - lat1) / 2.0) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2.0) ** 2)
    # Rounding can push h a hair above 1 for antipodes.
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


@dataclass(frozen=True)
class TravelModel:
    """Straight-line distance stretched by a road detour factor, at a constant speed."""

    speed_kmh: float = 30.0
    detour: float = 1.3
    setup_minutes: float = 0.0

    def __post_init__(self) -> None:
        for name in ("speed_kmh", "detour", "setup_minutes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise InvalidTravelModelError(f"{name} must be a finite number, got {value!r}")
        if self.speed_kmh <= 0:
            raise InvalidTravelModelError(f"speed_kmh must be positive, got {self.speed_kmh}")
        if self.detour < 1:
            raise InvalidTravelModelError(f"detour must be at least 1, got {self.detour}")
        if self.setup_minutes < 0:
            raise InvalidTravelModelError(
                f"setup_minutes must not be negative, got {self.setup_minutes}")

    @property
    def minutes_per_km(self) -> float:
        """Travel minutes per straight-line km (setup excluded)."""
        return self.detour / self.speed_kmh * 60.0

    def km(self, a: LatLon, b: LatLon) -> float:
        """Great-circle distance in km."""
        pa, pb = as_positions(a, "from"), as_positions(b, "to")
        return float(_haversine_km(pa[0], pb[0]))

    def minutes(self, a: LatLon, b: LatLon) -> float:
        """Travel minutes from `a` to `b`, setup included."""
        return self.setup_minutes + self.km(a, b) * self.minutes_per_km

    def km_matrix(self, origins: Sequence[LatLon] | np.ndarray,
                  destinations: Sequence[LatLon] | np.ndarray) -> np.ndarray:
        """(len(origins), len(destinations)) great-circle km."""
        o = as_positions(origins, "origin")
        d = as_positions(destinations, "destination")
        return _haversine_km(o[:, None, :], d[None, :, :])

    def minutes_matrix(self, origins: Sequence[LatLon] | np.ndarray,
                       destinations: Sequence[LatLon] | np.ndarray) -> np.ndarray:
        """(len(origins), len(destinations)) travel minutes, setup included."""
        return self.setup_minutes + self.km_matrix(origins, destinations) * self.minutes_per_km

    def to_plane(self, points: Sequence[LatLon] | np.ndarray, origin: LatLon) -> np.ndarray:
        """Equirectangular projection around `origin`, in travel minutes (setup excluded).

        Returns an (n, 2) array of (east, north); the Euclidean distance between two
        projected points approximates `minutes(a, b) - setup_minutes` (error well under 1%
        within a few tens of km of the origin).
        """
        p = as_positions(points, "point")
        o = as_positions(origin, "origin")[0]
        if abs(o[0]) >= 89.0:
            raise InvalidPositionError("origin too close to a pole for a local projection")
        km_per_rad = EARTH_RADIUS_KM
        dlon = (p[:, 1] - o[1] + 180.0) % 360.0 - 180.0
        east = np.radians(dlon) * math.cos(math.radians(o[0])) * km_per_rad
        north = np.radians(p[:, 0] - o[0]) * km_per_rad
        return np.column_stack([east, north]) * self.minutes_per_km
