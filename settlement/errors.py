"""Errors raised by the settlement core, rooted in `SettlementError`."""

from __future__ import annotations


class SettlementError(Exception):
    """Root of every error the settlement core raises."""


class MeteringInputError(SettlementError, ValueError):
    """Metering input is malformed (naive time, float or over-precise kW, bad rules)."""
