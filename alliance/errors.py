"""Errors of the alliance core: one root, specific subclasses a caller can act on."""

from __future__ import annotations


class AllianceError(Exception):
    """Root of every error the alliance core raises."""


class RoutingError(AllianceError):
    """Root of the routing part's errors."""


class InvalidRoutingInstanceError(RoutingError, ValueError):
    """The routing input is malformed; nothing was solved."""
