"""Alliance membership: admission and standing at their edges, certificates, input checks."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alliance.errors import AllianceError
from alliance.membership import (
    DEFAULT_RULES,
    ELECTRICAL_TESTING,
    HIGH_VOLTAGE,
    LICENCE_EXPIRED,
    LICENCE_LEVEL,
    LICENCE_NOT_YET_VALID,
    LOW_VOLTAGE,
    MIN_VALID_ELECTRICIANS,
    TOO_FEW_VALID_ELECTRICIANS,
    AdmissionRules,
    Alliance,
    Certificate,
    Electrician,
    Expiry,
    InvalidMembershipError,
    Licence,
    Position,
    PositionFix,
    Reason,
    ServiceProvider,
    Shift,
    assess_admission,
    can_be_offered,
    expiries_within,
    is_valid_electrician,
    offerable_skills,
    on_shift,
    standing,
    valid_electricians,
)

CST = ZoneInfo("Asia/Shanghai")
TODAY = date(2025, 6, 10)
YESTERDAY = TODAY - timedelta(days=1)
TOMORROW = TODAY + timedelta(days=1)
NEXT_YEAR = date(2026, 6, 10)
HOME = Position(31.23, 121.47)


def electrician(eid: str, *certs: Certificate, skills: frozenset[str] = frozenset(),
                **kw) -> Electrician:
    return Electrician(id=eid, name=f"Electrician {eid}", home=HOME, certificates=certs,
                       skills=skills, **kw)


def lv(expires: date = NEXT_YEAR, number: str = "LV-1") -> Certificate:
    return Certificate(LOW_VOLTAGE, number, expires)


def roster(valid: int, expired: int = 0) -> tuple[Electrician, ...]:
    good = [electrician(f"e{i:02d}", lv(number=f"LV-{i}")) for i in range(valid)]
    bad = [electrician(f"x{i:02d}", lv(YESTERDAY, number=f"LVX-{i}")) for i in range(expired)]
    return tuple(good + bad)


def provider(valid: int = 10, expired: int = 0, licence_expires: date = NEXT_YEAR,
             level: int = 5, issued: date | None = None) -> ServiceProvider:
    return ServiceProvider(
        id="p1", name="Pudong Power Services", alliance=Alliance.SHARED_ELECTRICIANS,
        licence=Licence("承装(修、试)-5-2023-001", level, licence_expires, issued),
        electricians=roster(valid, expired))


def codes(reasons: tuple[Reason, ...]) -> list[str]:
    return [r.code for r in reasons]


# ------------------------------------------------------------------------------ admission

def test_ten_valid_electricians_and_a_valid_licence_are_admissible():
    a = assess_admission(provider(valid=10), TODAY)
    assert a.admissible and a.reasons == () and a.valid_electricians == 10


def test_nine_valid_electricians_are_too_few_with_the_figures():
    a = assess_admission(provider(valid=9), TODAY)
    assert not a.admissible
    [reason] = a.reasons
    assert reason.code == TOO_FEW_VALID_ELECTRICIANS
    assert reason.as_dict() == {"valid": 9, "required": MIN_VALID_ELECTRICIANS}


def test_electricians_with_expired_certificates_do_not_count():
    a = assess_admission(provider(valid=9, expired=5), TODAY)
    assert codes(a.reasons) == [TOO_FEW_VALID_ELECTRICIANS]
    assert a.reasons[0].as_dict()["valid"] == 9


def test_a_licence_expiring_today_is_admissible_and_yesterday_is_not():
    assert assess_admission(provider(licence_expires=TODAY), TODAY).admissible
    late = assess_admission(provider(licence_expires=YESTERDAY), TODAY)
    assert not late.admissible
    [reason] = late.reasons
    assert reason.code == LICENCE_EXPIRED
    assert reason.as_dict()["expires"] == YESTERDAY


def test_every_failed_rule_is_reported_in_a_fixed_order():
    a = assess_admission(provider(valid=3, licence_expires=YESTERDAY, level=4), TODAY,
                         AdmissionRules(worst_licence_level=3))
    assert codes(a.reasons) == [LICENCE_EXPIRED, LICENCE_LEVEL, TOO_FEW_VALID_ELECTRICIANS]
    assert a.reasons[1].as_dict() == {"level": 4, "worst_allowed": 3}


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_every_licence_level_one_to_five_meets_level_five_or_better(level):
    assert assess_admission(provider(level=level), TODAY).admissible


def test_a_licence_not_yet_issued_is_not_valid():
    a = assess_admission(provider(issued=TOMORROW), TODAY)
    assert codes(a.reasons) == [LICENCE_NOT_YET_VALID]
    assert assess_admission(provider(issued=TODAY), TODAY).admissible


def test_default_rules_are_level_five_and_ten_electricians():
    assert DEFAULT_RULES == AdmissionRules(worst_licence_level=5, min_valid_electricians=10)


def test_energy_cloud_butler_members_follow_the_same_rules():
    p = provider(valid=9)
    butler = ServiceProvider(p.id, p.name, "energy_cloud_butler", p.licence, p.electricians)
    assert butler.alliance is Alliance.ENERGY_CLOUD_BUTLER
    assert codes(assess_admission(butler, TODAY).reasons) == [TOO_FEW_VALID_ELECTRICIANS]


# ------------------------------------------------------------------------------ standing

def test_standing_stops_offers_the_day_after_the_licence_expires():
    member = provider(licence_expires=TODAY)
    assert standing(member, TODAY).receives_offers
    after = standing(member, TOMORROW)
    assert not after.receives_offers
    assert codes(after.reasons) == [LICENCE_EXPIRED]
    assert after.reasons[0].as_dict() == {"number": member.licence.number, "expires": TODAY}


def test_standing_stops_offers_when_valid_electricians_drop_below_ten():
    staff = roster(9) + (electrician("last", lv(TODAY, "LV-last")),)
    member = ServiceProvider("p1", "P", Alliance.SHARED_ELECTRICIANS,
                             Licence("L-1", 5, NEXT_YEAR), staff)
    assert standing(member, TODAY).receives_offers
    s = standing(member, TOMORROW)
    assert not s.receives_offers and s.valid_electricians == 9
    assert s.reasons[0].as_dict() == {"valid": 9, "required": 10}


# ------------------------------------------------------------------------------ electricians

def test_certificate_expiring_today_is_valid_today_and_not_tomorrow():
    e = electrician("a", lv(TODAY))
    assert is_valid_electrician(e, TODAY) and can_be_offered(e, TODAY)
    assert not is_valid_electrician(e, TOMORROW) and not can_be_offered(e, TOMORROW)


def test_an_electrician_without_a_valid_certificate_is_never_offered_a_job():
    e = electrician("a", lv(YESTERDAY), skills=frozenset({"meter_reading"}))
    assert offerable_skills(e, TODAY) == frozenset()
    assert not can_be_offered(e, TODAY)
    assert not can_be_offered(e, TODAY, {"meter_reading"})
    assert not can_be_offered(electrician("b"), TODAY)


def test_high_voltage_skill_needs_a_valid_high_voltage_certificate():
    skills = frozenset({HIGH_VOLTAGE, LOW_VOLTAGE, "cable_fault_finding"})
    e = electrician("a", lv(NEXT_YEAR), Certificate(HIGH_VOLTAGE, "HV-1", TODAY), skills=skills)
    assert offerable_skills(e, TODAY) == skills
    assert offerable_skills(e, TOMORROW) == {LOW_VOLTAGE, "cable_fault_finding"}
    assert can_be_offered(e, TODAY, {HIGH_VOLTAGE})
    assert not can_be_offered(e, TOMORROW, {HIGH_VOLTAGE})
    assert can_be_offered(e, TOMORROW, ["cable_fault_finding"])


def test_a_skill_needs_both_declaring_and_its_own_certificate_class():
    e = electrician("a", Certificate(ELECTRICAL_TESTING, "ET-1", NEXT_YEAR))
    assert not can_be_offered(e, TODAY, {ELECTRICAL_TESTING})
    hv_only = electrician("b", Certificate(HIGH_VOLTAGE, "HV", NEXT_YEAR),
                          skills=frozenset({LOW_VOLTAGE}))
    assert not can_be_offered(hv_only, TODAY, {LOW_VOLTAGE})


def test_skills_needed_as_a_single_string_is_refused():
    with pytest.raises(InvalidMembershipError, match="collection"):
        can_be_offered(electrician("a", lv()), TODAY, HIGH_VOLTAGE)


def test_valid_electricians_lists_only_the_certified():
    assert [e.id for e in valid_electricians(provider(valid=2, expired=2), TODAY)] == ["e00", "e01"]


def test_on_shift_is_half_open():
    start = datetime(2025, 6, 10, 8, tzinfo=CST)
    e = electrician("a", lv(), shifts=[Shift(start, start + timedelta(hours=8))])
    assert on_shift(e, start)
    assert on_shift(e, start + timedelta(hours=8) - timedelta(seconds=1))
    assert not on_shift(e, start + timedelta(hours=8))
    assert not on_shift(e, start - timedelta(seconds=1))
    with pytest.raises(InvalidMembershipError, match="timezone-aware"):
        on_shift(e, datetime(2025, 6, 10, 9))


def test_last_known_position_may_be_unknown_or_a_fix():
    assert electrician("a").last_position is None
    fix = PositionFix(Position(31.0, 121.0), datetime(2025, 6, 10, 9, tzinfo=CST))
    assert electrician("b", last_position=fix).last_position == fix


def test_collections_are_stored_immutable():
    e = Electrician("a", "A", HOME, certificates=[lv()], skills=["x"], shifts=[])
    assert isinstance(e.certificates, tuple) and isinstance(e.skills, frozenset)
    assert hash(e) == hash(Electrician("a", "A", HOME, (lv(),), frozenset({"x"}), ()))


# ------------------------------------------------------------------------------ expiries

def test_expiries_within_lists_what_runs_out_soon_soonest_first():
    staff = (electrician("a", lv(TODAY + timedelta(days=5), "LV-a"), lv(YESTERDAY, "LV-old")),
             electrician("b", Certificate(HIGH_VOLTAGE, "HV-b", TODAY)),
             electrician("c", lv(TODAY + timedelta(days=31), "LV-c")))
    member = ServiceProvider("p1", "P", Alliance.SHARED_ELECTRICIANS,
                             Licence("L-1", 5, TODAY + timedelta(days=30)), staff)
    found = expiries_within(member, TODAY, 30)
    assert found == (
        Expiry("certificate", "HV-b", TODAY, 0, "b", HIGH_VOLTAGE),
        Expiry("certificate", "LV-a", TODAY + timedelta(days=5), 5, "a", LOW_VOLTAGE),
        Expiry("licence", "L-1", TODAY + timedelta(days=30), 30),
    )
    assert expiries_within(member, TODAY, 0) == found[:1]
    with pytest.raises(InvalidMembershipError):
        expiries_within(member, TODAY, -1)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("level", [0, 6, "3", 3.0, True, None])
def test_licence_level_outside_one_to_five_or_not_an_int_is_invalid_input(level):
    with pytest.raises(InvalidMembershipError, match="licence level"):
        Licence("L-1", level, NEXT_YEAR)


def test_invalid_membership_error_is_an_alliance_error_and_a_value_error():
    with pytest.raises(AllianceError):
        Licence("", 5, NEXT_YEAR)
    with pytest.raises(ValueError):
        Licence("", 5, NEXT_YEAR)


@pytest.mark.parametrize("build, message", [
    (lambda: Licence("  ", 5, NEXT_YEAR), "licence number"),
    (lambda: Licence("L", 5, YESTERDAY, issued=TODAY), "before issue"),
    (lambda: Licence("L", 5, datetime(2026, 1, 1, tzinfo=CST)), "calendar date"),
    (lambda: Certificate("welding", "W-1", NEXT_YEAR), "unknown certificate type"),
    (lambda: Certificate(LOW_VOLTAGE, "", NEXT_YEAR), "certificate number"),
    (lambda: Position(None, 121.0), "latitude is missing"),
    (lambda: Position(91.0, 121.0), "latitude must be within"),
    (lambda: Position(31.0, -180.5), "longitude must be within"),
    (lambda: Position(math.nan, 121.0), "finite"),
    (lambda: Position(31.0, math.inf), "finite"),
    (lambda: Position("31", 121.0), "number"),
    (lambda: Electrician("a", "A", None), "home base"),
    (lambda: Electrician("", "A", HOME), "electrician id"),
    (lambda: Electrician("a", "A", HOME, certificates=("LV",)), "not a Certificate"),
    (lambda: Electrician("a", "A", HOME, skills="high_voltage"), "not one string"),
    (lambda: Shift(datetime(2025, 6, 10, 8, tzinfo=CST), datetime(2025, 6, 10, 8, tzinfo=CST)),
     "not after"),
    (lambda: Shift(datetime(2025, 6, 10, 8), datetime(2025, 6, 10, 9)), "timezone-aware"),
    (lambda: ServiceProvider("p", "P", Alliance.SHARED_ELECTRICIANS, Licence("L", 5, NEXT_YEAR),
                             (electrician("a"), electrician("a"))), "appears twice"),
    (lambda: ServiceProvider("p", "P", "gas_alliance", Licence("L", 5, NEXT_YEAR)),
     "unknown alliance"),
    (lambda: AdmissionRules(worst_licence_level=6), "worst licence level"),
])
def test_malformed_input_is_refused_with_a_clear_message(build, message):
    with pytest.raises(InvalidMembershipError, match=message):
        build()


def test_a_datetime_is_not_accepted_as_a_day():
    with pytest.raises(InvalidMembershipError, match="calendar date"):
        assess_admission(provider(), datetime(2025, 6, 10, tzinfo=CST))
