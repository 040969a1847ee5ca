"""Alliance membership: who may join an alliance, who stays in dispatch, and which electrician
may be offered which job, decided from licences, certificates and rosters on a given day.

Days are calendar dates in the park's time zone (Asia/Shanghai); the platform converts
clock times to a day before calling. A licence or certificate is *valid on day d* when
`d <= expires`: one expiring today is still valid today and invalid tomorrow. Admission
also needs the park operator's approval; this module only says whether the rules hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from alliance.errors import InvalidMembershipError, MembershipError  # noqa: F401  (re-exported)


class Alliance(StrEnum):
    """The two industry alliances the platform runs."""

    SHARED_ELECTRICIANS = "shared_electricians"
    ENERGY_CLOUD_BUTLER = "energy_cloud_butler"


# Special-operation electrician certificate classes (特种作业操作证, 电工作业).
LOW_VOLTAGE = "low_voltage"  # 低压电工作业
HIGH_VOLTAGE = "high_voltage"  # 高压电工作业
EXPLOSION_PROOF = "explosion_proof"  # 防爆电气作业
ELECTRICAL_TESTING = "electrical_testing"  # 电气试验作业
CERTIFICATE_TYPES: frozenset[str] = frozenset(
    {LOW_VOLTAGE, HIGH_VOLTAGE, EXPLOSION_PROOF, ELECTRICAL_TESTING})

# A skill named here may only be offered with a valid certificate of one of these types; a
# high-voltage certificate does not cover low-voltage work (they are separate classes). Any
# other skill needs a valid electrician certificate of any type.
SKILL_CERTIFICATES: Mapping[str, frozenset[str]] = MappingProxyType({
    LOW_VOLTAGE: frozenset({LOW_VOLTAGE}),
    HIGH_VOLTAGE: frozenset({HIGH_VOLTAGE}),
    EXPLOSION_PROOF: frozenset({EXPLOSION_PROOF}),
    ELECTRICAL_TESTING: frozenset({ELECTRICAL_TESTING}),
})

# China grades electric-facility installation/repair licences 1 (highest) to 5.
BEST_LICENCE_LEVEL = 1
WORST_LICENCE_LEVEL = 5
MIN_VALID_ELECTRICIANS = 10

LICENCE_NOT_YET_VALID = "licence_not_yet_valid"
LICENCE_EXPIRED = "licence_expired"
LICENCE_LEVEL = "licence_level"
TOO_FEW_VALID_ELECTRICIANS = "too_few_valid_electricians"


# ----------------------------------------------------------------------------- input checks

def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidMembershipError(message)


def _check_text(what: str, value: object) -> None:
    _require(isinstance(value, str) and value.strip() != "", f"{what} must be a non-empty string")


def _check_day(what: str, value: object) -> None:
    # datetime is a date subclass but cannot be compared with a date: refuse it by name.
    _require(isinstance(value, date) and not isinstance(value, datetime),
             f"{what} must be a calendar date, got {value!r}")


def _check_aware(what: str, value: object) -> None:
    _require(isinstance(value, datetime), f"{what} must be a datetime, got {value!r}")
    _require(value.utcoffset() is not None, f"{what} must be timezone-aware, got {value!r}")


def _check_coordinate(what: str, value: object, limit: float) -> None:
    _require(value is not None, f"{what} is missing")
    _require(isinstance(value, (int, float)) and not isinstance(value, bool),
             f"{what} must be a number, got {value!r}")
    _require(math.isfinite(value), f"{what} must be finite, got {value!r}")
    _require(-limit <= value <= limit,
             f"{what} must be within -{limit:g}..{limit:g}, got {value!r}")


# ----------------------------------------------------------------------------- the inputs

@dataclass(frozen=True)
class Position:
    """A WGS-84 point: latitude −90..90, longitude −180..180 degrees."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        _check_coordinate("latitude", self.lat, 90)
        _check_coordinate("longitude", self.lon, 180)


@dataclass(frozen=True)
class PositionFix:
    """Where an electrician was last seen, and when."""

    position: Position
    at: datetime

    def __post_init__(self) -> None:
        _require(isinstance(self.position, Position),
                 f"a position fix needs a Position, got {self.position!r}")
        _check_aware("position fix time", self.at)


@dataclass(frozen=True)
class Licence:
    """An electric-facility installation/repair licence (承装(修、试)电力设施许可证).

    Level 1 is the highest, 5 the lowest; every level 1..5 meets "level 5 or better".
    Valid from its issue date (when known) through its expiry date inclusive.
    """

    number: str
    level: int
    expires: date
    issued: date | None = None

    def __post_init__(self) -> None:
        _check_text("licence number", self.number)
        _require(isinstance(self.level, int) and not isinstance(self.level, bool),
                 f"licence level must be an integer, got {self.level!r}")
        _require(BEST_LICENCE_LEVEL <= self.level <= WORST_LICENCE_LEVEL,
                 f"licence level must be {BEST_LICENCE_LEVEL}..{WORST_LICENCE_LEVEL}, "
                 f"got {self.level}")
        _check_day("licence expiry date", self.expires)
        if self.issued is not None:
            _check_day("licence issue date", self.issued)
            _require(self.issued <= self.expires,
                     f"licence {self.number}: expiry {self.expires} is before issue {self.issued}")

    def is_valid_on(self, day: date) -> bool:
        """Valid from its issue date (if known) through its expiry date inclusive."""
        _check_day("day", day)
        return (self.issued is None or self.issued <= day) and day <= self.expires


@dataclass(frozen=True)
class Certificate:
    """A special-operation electrician certificate: its class, number and expiry date."""

    type: str
    number: str
    expires: date

    def __post_init__(self) -> None:
        _require(self.type in CERTIFICATE_TYPES,
                 f"unknown certificate type {self.type!r}; known: {sorted(CERTIFICATE_TYPES)}")
        _check_text("certificate number", self.number)
        _check_day("certificate expiry date", self.expires)

    def is_valid_on(self, day: date) -> bool:
        """Valid through its expiry date inclusive."""
        _check_day("day", day)
        return day <= self.expires


@dataclass(frozen=True)
class Shift:
    """A working interval [start, end): on shift from `start` up to, not including, `end`."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _check_aware("shift start", self.start)
        _check_aware("shift end", self.end)
        _require(self.end > self.start, f"shift end {self.end} is not after its start {self.start}")

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class Electrician:
    """One electrician of a provider's roster. `last_position` is None while unknown."""

    id: str
    name: str
    home: Position
    certificates: tuple[Certificate, ...] = ()
    skills: frozenset[str] = frozenset()
    shifts: tuple[Shift, ...] = ()
    last_position: PositionFix | None = None

    def __post_init__(self) -> None:
        _check_text("electrician id", self.id)
        _check_text(f"electrician {self.id}: name", self.name)
        _require(isinstance(self.home, Position),
                 f"electrician {self.id}: home base must be a Position(lat, lon), "
                 f"got {self.home!r}")
        _require(not isinstance(self.skills, str),
                 f"electrician {self.id}: skills must be a collection, not one string")
        # Accept any iterable for the collections, but store immutable ones.
        object.__setattr__(self, "certificates", tuple(self.certificates))
        object.__setattr__(self, "skills", frozenset(self.skills))
        object.__setattr__(self, "shifts", tuple(self.shifts))
        for c in self.certificates:
            _require(isinstance(c, Certificate),
                     f"electrician {self.id}: {c!r} is not a Certificate")
        for s in self.skills:
            _check_text(f"electrician {self.id}: skill", s)
        for s in self.shifts:
            _require(isinstance(s, Shift), f"electrician {self.id}: {s!r} is not a Shift")
        _require(self.last_position is None or isinstance(self.last_position, PositionFix),
                 f"electrician {self.id}: last position must be a PositionFix or None")


@dataclass(frozen=True)
class ServiceProvider:
    """A service company applying to (or member of) an alliance: its licence and roster."""

    id: str
    name: str
    alliance: Alliance
    licence: Licence
    electricians: tuple[Electrician, ...] = ()

    def __post_init__(self) -> None:
        _check_text("provider id", self.id)
        _check_text(f"provider {self.id}: name", self.name)
        try:
            object.__setattr__(self, "alliance", Alliance(self.alliance))
        except ValueError:
            raise InvalidMembershipError(
                f"provider {self.id}: unknown alliance {self.alliance!r}") from None
        _require(isinstance(self.licence, Licence), f"provider {self.id}: licence missing")
        object.__setattr__(self, "electricians", tuple(self.electricians))
        seen: set[str] = set()
        for e in self.electricians:
            _require(isinstance(e, Electrician), f"provider {self.id}: {e!r} is not an Electrician")
            _require(e.id not in seen, f"provider {self.id}: electrician id {e.id!r} appears twice")
            seen.add(e.id)


@dataclass(frozen=True)
class AdmissionRules:
    """What an alliance asks of its members; both alliances use the defaults today."""

    worst_licence_level: int = WORST_LICENCE_LEVEL
    min_valid_electricians: int = MIN_VALID_ELECTRICIANS

    def __post_init__(self) -> None:
        _require(isinstance(self.worst_licence_level, int)
                 and BEST_LICENCE_LEVEL <= self.worst_licence_level <= WORST_LICENCE_LEVEL,
                 f"worst licence level must be {BEST_LICENCE_LEVEL}..{WORST_LICENCE_LEVEL}")
        _require(isinstance(self.min_valid_electricians, int) and self.min_valid_electricians >= 0,
                 "minimum number of valid electricians must be a non-negative integer")


DEFAULT_RULES = AdmissionRules()


# ----------------------------------------------------------------------------- the results

@dataclass(frozen=True)
class Reason:
    """Why a rule fails: a stable `code` and the figures behind it (name → value, sorted)."""

    code: str
    figures: tuple[tuple[str, object], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return dict(self.figures)


def _reason(code: str, **figures: object) -> Reason:
    return Reason(code, tuple(sorted(figures.items())))


@dataclass(frozen=True)
class AdmissionAssessment:
    """Whether an application meets the alliance's rules on a day, and every rule it fails."""

    admissible: bool
    reasons: tuple[Reason, ...]
    valid_electricians: int


@dataclass(frozen=True)
class Standing:
    """Whether an admitted member receives job offers on a day, and why not if it does not."""

    receives_offers: bool
    reasons: tuple[Reason, ...]
    valid_electricians: int


@dataclass(frozen=True)
class Expiry:
    """A licence or certificate running out soon: `kind` is "licence" or "certificate"."""

    kind: str
    number: str
    expires: date
    days_left: int
    electrician_id: str | None = None
    certificate_type: str | None = None


# ----------------------------------------------------------------------------- electricians

def valid_certificates(electrician: Electrician, day: date) -> tuple[Certificate, ...]:
    """The electrician's certificates valid on `day`."""
    return tuple(c for c in electrician.certificates if c.is_valid_on(day))


def is_valid_electrician(electrician: Electrician, day: date) -> bool:
    """An electrician counts (for admission and dispatch) while one certificate is valid."""
    return bool(valid_certificates(electrician, day))


def offerable_skills(electrician: Electrician, day: date) -> frozenset[str]:
    """Declared skills whose certificate requirement holds on `day` (see SKILL_CERTIFICATES)."""
    held = {c.type for c in valid_certificates(electrician, day)}
    if not held:
        return frozenset()
    return frozenset(s for s in electrician.skills
                     if s not in SKILL_CERTIFICATES or SKILL_CERTIFICATES[s] & held)


def can_be_offered(electrician: Electrician, day: date,
                   skills_needed: Iterable[str] = ()) -> bool:
    """Only an electrician with a valid certificate, offering every needed skill, gets a job.

    The provider's own standing is checked separately (see `standing`).
    """
    _require(not isinstance(skills_needed, str),
             "skills_needed must be a collection of skills, not one string")
    return is_valid_electrician(electrician, day) and \
        frozenset(skills_needed) <= offerable_skills(electrician, day)


def on_shift(electrician: Electrician, at: datetime) -> bool:
    """True when `at` falls inside one of the electrician's shifts."""
    _check_aware("time", at)
    return any(s.covers(at) for s in electrician.shifts)


# ----------------------------------------------------------------------------- providers

def valid_electricians(provider: ServiceProvider, day: date) -> tuple[Electrician, ...]:
    """The roster's electricians holding a valid certificate on `day`."""
    return tuple(e for e in provider.electricians if is_valid_electrician(e, day))


def _rule_failures(provider: ServiceProvider, day: date,
                   rules: AdmissionRules) -> tuple[tuple[Reason, ...], int]:
    """Every membership rule the provider fails on `day`, in a fixed order, and its count."""
    _check_day("day", day)
    licence = provider.licence
    reasons: list[Reason] = []
    if licence.issued is not None and day < licence.issued:
        reasons.append(_reason(LICENCE_NOT_YET_VALID, number=licence.number,
                               issued=licence.issued))
    if day > licence.expires:
        reasons.append(_reason(LICENCE_EXPIRED, number=licence.number, expires=licence.expires))
    if licence.level > rules.worst_licence_level:
        reasons.append(_reason(LICENCE_LEVEL, level=licence.level,
                               worst_allowed=rules.worst_licence_level))
    valid = len(valid_electricians(provider, day))
    if valid < rules.min_valid_electricians:
        reasons.append(_reason(TOO_FEW_VALID_ELECTRICIANS, valid=valid,
                               required=rules.min_valid_electricians))
    return tuple(reasons), valid


def assess_admission(application: ServiceProvider, day: date,
                     rules: AdmissionRules = DEFAULT_RULES) -> AdmissionAssessment:
    """An application is admissible when its licence is valid and of the required level, and
    at least `rules.min_valid_electricians` of its own electricians hold a valid certificate.
    """
    reasons, valid = _rule_failures(application, day, rules)
    return AdmissionAssessment(admissible=not reasons, reasons=reasons, valid_electricians=valid)


def standing(provider: ServiceProvider, day: date,
             rules: AdmissionRules = DEFAULT_RULES) -> Standing:
    """A member receives offers only while it still meets the admission rules on `day`: an
    expired licence or too few valid electricians stops offers at once.
    """
    reasons, valid = _rule_failures(provider, day, rules)
    return Standing(receives_offers=not reasons, reasons=reasons, valid_electricians=valid)


def expiries_within(provider: ServiceProvider, day: date, days: int) -> tuple[Expiry, ...]:
    """The licence and certificates still valid on `day` that expire within `days` days
    (`day <= expires <= day + days`), soonest first; already-expired ones are left out.
    """
    _check_day("day", day)
    _require(isinstance(days, int) and not isinstance(days, bool) and days >= 0,
             f"days must be a non-negative integer, got {days!r}")
    last = day + timedelta(days=days)
    found: list[Expiry] = []
    licence = provider.licence
    if day <= licence.expires <= last:
        found.append(Expiry("licence", licence.number, licence.expires,
                            (licence.expires - day).days))
    for e in provider.electricians:
        for c in e.certificates:
            if day <= c.expires <= last:
                found.append(Expiry("certificate", c.number, c.expires, (c.expires - day).days,
                                    electrician_id=e.id, certificate_type=c.type))
    found.sort(key=lambda x: (x.expires, x.kind, x.electrician_id or "", x.certificate_type or "",
                              x.number))
    return tuple(found)


