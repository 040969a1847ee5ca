"""Errors raised by the matching core, rooted in `MatchingError`."""

from __future__ import annotations


class MatchingError(Exception):
    """Root of every error the matching core raises."""


class InvalidInstanceError(MatchingError):
    """The clearing input is malformed; nothing was solved."""


class SolverError(MatchingError):
    """The underlying solver failed in a way the clearing cannot recover from."""
