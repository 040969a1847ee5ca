"""Errors of the alliance core: one root, specific subclasses a caller can act on."""

from __future__ import annotations


class AllianceError(Exception):
    """Root of every error the alliance core raises."""


class RoutingError(AllianceError):
    """Root of the routing part's errors."""


class InvalidRoutingInstanceError(RoutingError, ValueError):
    """The routing input is malformed; nothing was solved."""


class MembershipError(AllianceError):
    """Root of the membership part's errors."""


class InvalidMembershipError(MembershipError, ValueError):
    """A licence, certificate, electrician, shift or roster is malformed; nothing was assessed."""


class LifecycleError(AllianceError):
    """Root of the job-lifecycle part's errors."""


class InvalidJobInputError(LifecycleError, ValueError):
    """A job or job event is malformed (naive time, empty id, offer expiring before it starts)."""


class TransitionRefused(LifecycleError):
    """A well-formed event is not allowed in the job's current state; the job is unchanged.

    `code` is stable (for the platform to map to a message); `message` says why in English.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidPositionError(AllianceError, ValueError):
    """A (lat, lon) position is non-finite or outside the valid degree ranges."""


class InvalidTravelModelError(AllianceError, ValueError):
    """Travel model parameters are out of range (speed must be positive, detour at least 1)."""


class InvalidDispatchInputError(AllianceError, ValueError):
    """The urgent-dispatch input is malformed; nothing was dispatched."""


class InvalidCityError(AllianceError, ValueError):
    """Synthetic-city parameters are out of range; no city was generated."""


class ReplanError(RoutingError):
    """Root of the live re-planning part's errors."""


class InvalidReplanInputError(ReplanError, ValueError):
    """A live state, plan or new job does not fit the instance; nothing was re-planned."""


class ContractError(AllianceError):
    """Root of the custody O&M contract part's errors."""


class InvalidContractError(ContractError, ValueError):
    """A contract, one of its items, a day range or a time zone is malformed; nothing was
    scheduled."""


class InvalidAlarmInputError(AllianceError, ValueError):
    """Monitoring input or alarm thresholds are malformed; nothing was checked."""
