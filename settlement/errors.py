"""Errors raised by the settlement core, rooted in `SettlementError`."""

from __future__ import annotations


class SettlementError(Exception):
    """Root of every error the settlement core raises."""


class MeteringInputError(SettlementError, ValueError):
    """Metering input is malformed (naive time, float or over-precise kW, bad rules)."""


class FileFormatError(MeteringInputError):
    """A line of a metering file is malformed; `line` is its 1-based number."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class SettlementInputError(SettlementError, ValueError):
    """The inputs of a settlement run are inconsistent (unknown account, bad period, …)."""


class IncompleteMeteringError(SettlementError):
    """A final settlement was asked for while metering intervals are still missing.

    `missing` holds every (point, interval) without a value, sorted.
    """

    def __init__(self, missing: tuple[tuple[str, int], ...]) -> None:
        self.missing = tuple(missing)
        shown = ", ".join(f"{point}#{interval}" for point, interval in self.missing[:5])
        more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        super().__init__(f"{len(self.missing)} metering interval(s) missing: {shown}{more}")
