"""Readings as columns: the form in which large files are parsed, validated and stored.

A day for 10,000 metering points is 960,000 readings; as Python objects that alone costs
seconds. `ReadingBatch` keeps them as NumPy columns with exact integer values: the interval
start in UTC epoch seconds and the mean demand in watts (kW × 1000, the three decimals the
readings carry). `Reading` objects remain the readable form for small inputs and tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from settlement.metering import QUALITY_ORDER, Quality, Reading

QUALITY_CODE = {quality: code for code, quality in enumerate(QUALITY_ORDER)}


@dataclass(frozen=True, eq=False)
class ReadingBatch:
    """Readings as parallel columns; row `i` is one reading.

    `points` is the index space of `point_index`; `line` holds each reading's line number in
    its source file (0 when it has none), so validation problems can point into the file.
    """

    points: tuple[str, ...]
    point_index: np.ndarray  # int32, index into `points`
    start: np.ndarray  # int64, UTC epoch seconds of the interval start
    watts: np.ndarray  # int64, mean demand in W (kW × 1000, exact)
    quality: np.ndarray  # uint8, index into QUALITY_ORDER
    line: np.ndarray  # int32, source line number or 0

    def __post_init__(self) -> None:
        n = len(self.point_index)
        for name in ("start", "watts", "quality", "line"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"column {name} has {len(getattr(self, name))} rows, not {n}")

    def __len__(self) -> int:
        return len(self.point_index)

    @classmethod
    def empty(cls) -> ReadingBatch:
        return cls((), np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                   np.zeros(0, np.uint8), np.zeros(0, np.int32))

    @classmethod
    def from_readings(cls, readings: Iterable[Reading]) -> ReadingBatch:
        index: dict[str, int] = {}
        rows = [(index.setdefault(r.point, len(index)), int(r.start.timestamp()),
                 int(r.kw * 1000), QUALITY_CODE[r.quality]) for r in readings]
        if not rows:
            return cls.empty()
        point_index, start, watts, quality = zip(*rows, strict=True)
        return cls(tuple(index), np.array(point_index, np.int32), np.array(start, np.int64),
                   np.array(watts, np.int64), np.array(quality, np.uint8),
                   np.zeros(len(rows), np.int32))

    def readings(self) -> Iterator[Reading]:
        """The rows as `Reading` objects (times in UTC)."""
        for p, s, w, q in zip(self.point_index.tolist(), self.start.tolist(),
                              self.watts.tolist(), self.quality.tolist(), strict=True):
            yield Reading(self.points[p], datetime.fromtimestamp(s, UTC),
                          Decimal(w) / 1000, QUALITY_ORDER[q])

    def take(self, rows: np.ndarray) -> ReadingBatch:
        """The rows selected by a boolean mask or an index array, same point index space."""
        return ReadingBatch(self.points, self.point_index[rows], self.start[rows],
                            self.watts[rows], self.quality[rows], self.line[rows])

    @staticmethod
    def concat(batches: Iterable[ReadingBatch]) -> ReadingBatch:
        """One batch of all rows, with one point index space."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return ReadingBatch.empty()
        index: dict[str, int] = {}
        remapped = []
        for batch in batches:
            mapping = np.array([index.setdefault(p, len(index)) for p in batch.points],
                               np.int32)
            remapped.append(mapping[batch.point_index])
        return ReadingBatch(tuple(index), np.concatenate(remapped),
                            np.concatenate([b.start for b in batches]),
                            np.concatenate([b.watts for b in batches]),
                            np.concatenate([b.quality for b in batches]),
                            np.concatenate([b.line for b in batches]))


__all__ = ["QUALITY_CODE", "Quality", "ReadingBatch"]
