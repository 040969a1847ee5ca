"""A seeded synthetic industrial-park district and an event-driven day of urgent repair dispatch,
run under two policies (`optimised`, `greedy`) that face exactly the same world.

The world (`make_city`): provider bases spread over a ~30 x 20 km district, electricians based
near their provider with skills, shifts and certificates (an expired one keeps them out of
dispatch), enterprise sites clustered in parks, urgent jobs arriving as a Poisson process over
the day, and planned patrols/inspections with time windows laid out in a simple day plan. What
an electrician does with an offer (reply delay, decline, no reply, no-show) is drawn from a
stream keyed by (job, electrician), so it never depends on the policy or on the order of offers.

The day (`simulate`): offers, replies after a delay, offer expiry, travel, check-in, work,
no-show detection (an accepted electrician who has not set off `no_show_grace_minutes` after
they should have is a no-show), re-dispatch excluding everyone who declined, let an offer
expire or did not show, and escalation whenever a dispatch round cannot promise an on-time
arrival. Planned work interrupted by an urgent job goes back to the front of the electrician's
queue with the work left; a job not yet begun is dropped (displaced) if its window has closed
by the time its electrician can get there, work already begun is finished later that shift.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from alliance.errors import InvalidCityError
from alliance.travel import EARTH_RADIUS_KM, LatLon, TravelModel
from alliance.urgent import (
    CandidateElectrician,
    UrgentDispatchInstance,
    UrgentJob,
    dispatch,
)

LOW_VOLTAGE, HIGH_VOLTAGE, METERING, TESTING = "low_voltage", "high_voltage", "metering", "testing"
POLICIES = ("optimised", "greedy")

KM_PER_DEG_LAT = EARTH_RADIUS_KM * math.pi / 180.0
_EPS = 1e-9
_STD_NORMAL = NormalDist()
# The optimised policy plans with a cautious end of an urgent job in progress: service
# estimates are rough, and an electrician who must first finish is a riskier promise.
_BUSY_MARGIN = 1.5

# Share of electricians holding each extra skill, and of urgent jobs needing it. High-voltage
# work on customer 10 kV substations needs a separate certificate most park electricians lack.
_ELECTRICIAN_SKILL_SHARE = {HIGH_VOLTAGE: 0.35, METERING: 0.25, TESTING: 0.20}
_URGENT_SKILL_SHARE = {HIGH_VOLTAGE: 0.35, METERING: 0.10, TESTING: 0.05}
# Shift patterns as fractions of the simulated day: day shift, early shift, late shift.
_SHIFTS = ((0.0, 0.9), (0.0, 0.8), (0.2, 1.0))
_SHIFT_SHARE = (0.5, 0.25, 0.25)


@dataclass(frozen=True)
class Provider:
    id: str
    base: LatLon


@dataclass(frozen=True)
class CityElectrician:
    id: str
    provider_id: str
    home: LatLon
    skills: frozenset[str]
    shift_start: float
    shift_end: float
    valid: bool = True  # certificate valid today

    def on_shift(self, t: float) -> bool:
        return self.valid and self.shift_start <= t < self.shift_end


@dataclass(frozen=True)
class CityUrgentJob:
    id: str
    arrival: float
    position: LatLon
    skills: frozenset[str]
    service: float           # actual minutes on site (unknown to the dispatcher)
    service_estimate: float  # what the dispatcher expects
    deadline: float


@dataclass(frozen=True)
class PlannedJob:
    id: str
    kind: str  # "patrol" | "inspection"
    position: LatLon
    ready: float
    due: float  # latest start
    service: float
    skills: frozenset[str]
    provider_id: str  # the provider holding the enterprise's custody O&M contract


@dataclass(frozen=True)
class PlanItem:
    job_id: str
    electrician_id: str
    start: float


@dataclass(frozen=True)
class OfferOutcome:
    response: str  # "accept" | "decline" | "expire"
    delay: float   # minutes from offer to reply (offer expiry for "expire")
    no_show: bool  # accepted but never sets off


@dataclass(frozen=True)
class City:
    seed: int
    providers: tuple[Provider, ...]
    electricians: tuple[CityElectrician, ...]
    urgent_jobs: tuple[CityUrgentJob, ...]
    planned_jobs: tuple[PlannedJob, ...]
    day_plan: tuple[PlanItem, ...]
    travel: TravelModel
    hours: float
    sla_minutes: float
    response_minutes: float
    offer_expiry_minutes: float
    no_show_grace_minutes: float
    decline_rate: float
    no_show_rate: float
    expiry_rate: float
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    _outcomes: dict = field(default_factory=dict, init=False, compare=False, hash=False,
                            repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_job_index", {j.id: k for k, j in enumerate(self.urgent_jobs)})
        object.__setattr__(self, "_elec_index",
                           {e.id: k for k, e in enumerate(self.electricians)})

    def offer_outcome(self, job_id: str, electrician_id: str) -> OfferOutcome:
        """What this electrician does with an offer of this job: a pure function of the seed
        and the pair, whoever asks and whenever."""
        key = (job_id, electrician_id)
        if key not in self._outcomes:
            rng = np.random.default_rng(np.random.SeedSequence(
                [self.seed, 1, self._job_index[job_id], self._elec_index[electrician_id]]))
            u_expire, u_decline, u_no_show, u_delay = rng.random(4)
            # Reply delay: most replies within a minute or two, a long tail up to expiry.
            z = _STD_NORMAL.inv_cdf(min(max(float(u_delay), 1e-12), 1.0 - 1e-12))
            delay = min(0.3 + 0.8 * math.exp(0.6 * z), self.offer_expiry_minutes - 0.1)
            if u_expire < self.expiry_rate:
                out = OfferOutcome("expire", self.offer_expiry_minutes, False)
            elif u_decline < self.decline_rate:
                out = OfferOutcome("decline", delay, False)
            else:
                out = OfferOutcome("accept", delay, bool(u_no_show < self.no_show_rate))
            self._outcomes[key] = out
        return self._outcomes[key]


def _km_to_latlon(x: np.ndarray, y: np.ndarray, origin: LatLon) -> list[LatLon]:
    lat = origin[0] + y / KM_PER_DEG_LAT
    lon = origin[1] + x / (KM_PER_DEG_LAT * math.cos(math.radians(origin[0])))
    return [(round(float(a), 6), round(float(b), 6)) for a, b in zip(lat, lon, strict=True)]


def make_city(seed: int, providers: int = 20, per_provider: int = 10, jobs: int = 500,
              hours: float = 10.0, urgent_share: float = 0.2, decline_rate: float = 0.10,
              no_show_rate: float = 0.03, expiry_rate: float = 0.02, *,
              enterprises: int = 300, parks: int = 8, width_km: float = 30.0,
              height_km: float = 20.0, origin: LatLon = (31.20, 120.55),
              travel: TravelModel | None = None, sla_minutes: float = 30.0,
              response_minutes: float = 2.0, offer_expiry_minutes: float = 5.0,
              no_show_grace_minutes: float = 3.0, expired_certificate_share: float = 0.03,
              ) -> City:
    """Generate a district from `seed` (same seed, same city, byte for byte)."""
    _check_city_args(seed, providers, per_provider, jobs, hours, urgent_share, decline_rate,
                     no_show_rate, expiry_rate, enterprises, parks, width_km, height_km,
                     offer_expiry_minutes, expired_certificate_share)
    travel = travel or TravelModel()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    day = hours * 60.0

    def clip(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.clip(x, 0.0, width_km), np.clip(y, 0.0, height_km)

    # Provider bases: one per cell of a grid over the district, so they spread out.
    cols = max(1, round(math.sqrt(providers * width_km / height_km)))
    rows = math.ceil(providers / cols)
    while rows * cols < providers:
        rows += 1
    cells = np.sort(rng.permutation(rows * cols)[:providers])
    cw, ch = width_km / cols, height_km / rows
    bx = (cells % cols + rng.uniform(0.1, 0.9, providers)) * cw
    by = (cells // cols + rng.uniform(0.1, 0.9, providers)) * ch
    bases = _km_to_latlon(bx, by, origin)
    provider_list = tuple(Provider(f"P{p:02d}", bases[p]) for p in range(providers))

    # Electricians live/start near their provider's base.
    n_e = providers * per_provider
    owner = np.repeat(np.arange(providers), per_provider)
    hx, hy = clip(bx[owner] + rng.normal(0, 2.0, n_e), by[owner] + rng.normal(0, 2.0, n_e))
    homes = _km_to_latlon(hx, hy, origin)
    extra = {s: rng.random(n_e) < p for s, p in _ELECTRICIAN_SKILL_SHARE.items()}
    shift_kind = rng.choice(len(_SHIFTS), size=n_e, p=_SHIFT_SHARE)
    valid = rng.random(n_e) >= expired_certificate_share
    electricians = tuple(
        CityElectrician(
            id=f"E{k:04d}", provider_id=provider_list[owner[k]].id, home=homes[k],
            skills=frozenset([LOW_VOLTAGE] + [s for s in extra if extra[s][k]]),
            shift_start=_SHIFTS[shift_kind[k]][0] * day, shift_end=_SHIFTS[shift_kind[k]][1] * day,
            valid=bool(valid[k]))
        for k in range(n_e))

    # Enterprise sites: most in parks of different sizes, some standalone plants.
    px = rng.uniform(3.0, width_km - 3.0, parks) if width_km > 6 else rng.uniform(0, width_km,
                                                                                 parks)
    py = rng.uniform(3.0, height_km - 3.0, parks) if height_km > 6 else rng.uniform(
        0, height_km, parks)
    park_weight = rng.lognormal(0.0, 0.5, parks)
    park_weight /= park_weight.sum()
    in_park = rng.random(enterprises) < 0.85
    which = rng.choice(parks, size=enterprises, p=park_weight)
    sx = np.where(in_park, px[which] + rng.normal(0, 1.2, enterprises),
                  rng.uniform(0, width_km, enterprises))
    sy = np.where(in_park, py[which] + rng.normal(0, 1.2, enterprises),
                  rng.uniform(0, height_km, enterprises))
    sites = _km_to_latlon(*clip(sx, sy), origin)
    # Each enterprise's custody O&M contract is with one of the three providers nearest to it.
    site_to_base = np.hypot(sx[:, None] - bx[None, :], sy[:, None] - by[None, :])
    nearest3 = np.argsort(site_to_base, axis=1, kind="stable")[:, :min(3, providers)]
    custodian = nearest3[np.arange(enterprises), rng.integers(0, nearest3.shape[1],
                                                              enterprises)]

    # Urgent jobs: a Poisson process over the day, conditioned on its count.
    n_u = int(round(jobs * urgent_share))
    arrivals = np.sort(rng.uniform(0.0, day, n_u))
    u_site = rng.integers(0, enterprises, n_u)
    u_extra = {s: rng.random(n_u) < p for s, p in _URGENT_SKILL_SHARE.items()}
    u_service = rng.uniform(30.0, 90.0, n_u)
    u_estimate = np.clip(np.round(u_service * rng.lognormal(0.0, 0.2, n_u) / 5.0) * 5.0,
                         20.0, 120.0)
    urgent = tuple(
        CityUrgentJob(
            id=f"U{k:04d}", arrival=round(float(arrivals[k]), 4), position=sites[u_site[k]],
            skills=frozenset([LOW_VOLTAGE] + [s for s in u_extra if u_extra[s][k]]),
            service=round(float(u_service[k]), 3), service_estimate=float(u_estimate[k]),
            deadline=round(float(arrivals[k]), 4) + sla_minutes)
        for k in range(n_u))

    # Planned custody O&M: patrols (any electrician) and inspections (high voltage or testing).
    n_p = jobs - n_u
    p_site = rng.integers(0, enterprises, n_p)
    is_patrol = rng.random(n_p) < 0.7
    insp_hv = rng.random(n_p) < 0.6
    p_service = rng.uniform(45.0, 120.0, n_p)
    p_ready = rng.uniform(0.0, max(day - 120.0, 1.0), n_p)
    p_due = np.maximum(p_ready, np.minimum(p_ready + rng.uniform(120.0, 240.0, n_p),
                                           day - p_service))
    planned_all = [
        PlannedJob(
            id=f"J{k:04d}", kind="patrol" if is_patrol[k] else "inspection",
            position=sites[p_site[k]], ready=round(float(p_ready[k]), 3),
            due=round(float(p_due[k]), 3), service=round(float(p_service[k]), 3),
            skills=frozenset([LOW_VOLTAGE] if is_patrol[k] else
                             [LOW_VOLTAGE, HIGH_VOLTAGE if insp_hv[k] else TESTING]),
            provider_id=provider_list[custodian[p_site[k]]].id)
        for k in range(n_p)]
    plan, planned = _day_plan(planned_all, electricians, travel)

    return City(
        seed=seed, providers=provider_list, electricians=electricians, urgent_jobs=urgent,
        planned_jobs=planned, day_plan=plan, travel=travel, hours=float(hours),
        sla_minutes=float(sla_minutes), response_minutes=float(response_minutes),
        offer_expiry_minutes=float(offer_expiry_minutes),
        no_show_grace_minutes=float(no_show_grace_minutes), decline_rate=float(decline_rate),
        no_show_rate=float(no_show_rate), expiry_rate=float(expiry_rate),
        meta={"origin": origin, "width_km": width_km, "height_km": height_km,
              "enterprises": enterprises, "parks": parks,
              "planned_unplannable": n_p - len(planned)})


def _check_city_args(seed, providers, per_provider, jobs, hours, urgent_share, decline_rate,
                     no_show_rate, expiry_rate, enterprises, parks, width_km, height_km,
                     offer_expiry_minutes, expired_certificate_share) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidCityError(f"seed must be a non-negative integer, got {seed!r}")
    for name, value in (("providers", providers), ("per_provider", per_provider),
                        ("enterprises", enterprises), ("parks", parks)):
        if not isinstance(value, int) or value < 1:
            raise InvalidCityError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(jobs, int) or jobs < 0:
        raise InvalidCityError(f"jobs must be a non-negative integer, got {jobs!r}")
    for name, value in (("hours", hours), ("width_km", width_km), ("height_km", height_km),
                        ("offer_expiry_minutes", offer_expiry_minutes)):
        if not math.isfinite(value) or value <= 0:
            raise InvalidCityError(f"{name} must be positive, got {value!r}")
    if hours > 24:
        raise InvalidCityError("hours must be at most 24")
    for name, value in (("urgent_share", urgent_share), ("decline_rate", decline_rate),
                        ("no_show_rate", no_show_rate), ("expiry_rate", expiry_rate),
                        ("expired_certificate_share", expired_certificate_share)):
        if not 0.0 <= value <= 1.0:
            raise InvalidCityError(f"{name} must be within [0, 1], got {value!r}")


def _day_plan(jobs: list[PlannedJob], electricians: tuple[CityElectrician, ...],
              travel: TravelModel) -> tuple[tuple[PlanItem, ...], tuple[PlannedJob, ...]]:
    """Each provider plans its own custody jobs, in order of window opening, appending each to
    the qualified electrician of its team with the least planned work so far (then least
    travel) who can start it within its window and finish within their shift. A job no team
    member can take is subcontracted to the nearest fitting electrician of another provider;
    a job nobody can fit is left out of the day."""
    free_t = np.array([e.shift_start for e in electricians], dtype=float)
    free_pos = np.array([e.home for e in electricians], dtype=float)
    shift_end = np.array([e.shift_end for e in electricians], dtype=float)
    valid = np.array([e.valid for e in electricians], dtype=bool)
    owner = np.array([e.provider_id for e in electricians])
    load = np.zeros(len(electricians))
    items: list[PlanItem] = []
    kept: list[PlannedJob] = []
    for job in sorted(jobs, key=lambda j: (j.ready, j.id)):
        qualified = valid & np.array([job.skills <= e.skills for e in electricians], bool)
        t = travel.minutes_matrix(free_pos, [job.position])[:, 0]
        start = np.maximum(job.ready, free_t + t)
        ok = qualified & (start <= job.due + _EPS) & (start + job.service <= shift_end + _EPS)
        own = ok & (owner == job.provider_id)
        if own.any():
            score = np.where(own, load * 1000.0 + t, np.inf)
        elif ok.any():
            score = np.where(ok, t + 0.25 * (start - job.ready), np.inf)
        else:
            continue
        k = int(np.argmin(score))
        items.append(PlanItem(job.id, electricians[k].id, round(float(start[k]), 4)))
        kept.append(job)
        free_t[k] = start[k] + job.service
        free_pos[k] = job.position
        load[k] += job.service
    return tuple(items), tuple(sorted(kept, key=lambda j: j.id))


# ---------------------------------------------------------------------------------------------
# Simulation

@dataclass(frozen=True)
class LogEntry:
    t: float
    kind: str
    job_id: str | None = None
    electrician_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class OfferRecord:
    t: float
    job_id: str
    electrician_id: str
    outcome: OfferOutcome


@dataclass(frozen=True)
class UrgentRecord:
    job_id: str
    arrival: float
    deadline: float
    reachable: bool
    check_in: float | None
    electrician_id: str | None
    escalated: bool
    offers: int

    @property
    def hit(self) -> bool:
        return self.check_in is not None and self.check_in <= self.deadline + _EPS


@dataclass(frozen=True)
class CityOutcome:
    policy: str
    urgent: tuple[UrgentRecord, ...]
    offers: tuple[OfferRecord, ...]
    log: tuple[LogEntry, ...]
    planned_jobs: int
    planned_completed: int
    preemptions: int
    dispatch_rounds: int

    @property
    def urgent_jobs(self) -> int:
        return len(self.urgent)

    @property
    def reachable(self) -> int:
        return sum(r.reachable for r in self.urgent)

    @property
    def hits(self) -> int:
        return sum(r.reachable and r.hit for r in self.urgent)

    @property
    def sla_hit_rate(self) -> float:
        return self.hits / self.reachable if self.reachable else 1.0

    @property
    def escalated(self) -> int:
        return sum(r.escalated for r in self.urgent)

    def _count(self, response: str) -> int:
        return sum(o.outcome.response == response for o in self.offers)

    @property
    def declines(self) -> int:
        return self._count("decline")

    @property
    def expiries(self) -> int:
        return self._count("expire")

    @property
    def no_shows(self) -> int:
        return sum(1 for e in self.log if e.kind == "no_show")

    @property
    def mean_on_site_minutes(self) -> float:
        waits = [r.check_in - r.arrival for r in self.urgent if r.check_in is not None]
        return float(np.mean(waits)) if waits else 0.0

    @property
    def planned_displaced(self) -> int:
        return self.planned_jobs - self.planned_completed

    def figures(self) -> dict:
        return {
            "urgent_jobs": self.urgent_jobs, "reachable_urgent_jobs": self.reachable,
            "sla_hit_rate": round(self.sla_hit_rate, 6), "hits": self.hits,
            "on_site": sum(r.check_in is not None for r in self.urgent),
            "escalated": self.escalated, "offers": len(self.offers),
            "declines": self.declines, "expiries": self.expiries, "no_shows": self.no_shows,
            "mean_on_site_minutes": round(self.mean_on_site_minutes, 3),
            "planned_jobs": self.planned_jobs, "planned_completed": self.planned_completed,
            "planned_displaced": self.planned_displaced, "preemptions": self.preemptions,
            "dispatch_rounds": self.dispatch_rounds,
        }


_IDLE, _TRAVEL, _ONSITE = "idle", "travel", "onsite"


class _Crew:
    """One electrician's moving state during the simulation."""

    __slots__ = ("e", "pos", "dest", "t0", "t1", "act", "kind", "job", "work_start", "epoch",
                 "queue", "hold", "hold_state", "no_show")

    def __init__(self, e: CityElectrician, queue: list[list]) -> None:
        self.e = e
        self.pos: LatLon = e.home
        self.dest: LatLon | None = None
        self.t0 = self.t1 = 0.0
        self.act = _IDLE
        self.kind: str | None = None  # "planned" | "urgent" while travelling/on site
        self.job: str | None = None
        self.work_start = 0.0
        self.epoch = 0
        self.queue = queue  # [[planned job id, planned start, work left]]
        self.hold: str | None = None  # urgent job offered to / accepted by this electrician
        self.hold_state: str | None = None  # "offer" | "committed"
        self.no_show = False

    def position(self, t: float) -> LatLon:
        if self.act == _TRAVEL and self.dest is not None:
            span = self.t1 - self.t0
            f = 1.0 if span <= 0 else min(1.0, max(0.0, (t - self.t0) / span))
            return (self.pos[0] + f * (self.dest[0] - self.pos[0]),
                    self.pos[1] + f * (self.dest[1] - self.pos[1]))
        return self.pos


class _JobState:
    __slots__ = ("job", "state", "excluded", "check_in", "electrician", "escalated", "offers",
                 "reachable")

    def __init__(self, job: CityUrgentJob) -> None:
        self.job = job
        self.state = "pending"  # pending | waiting | offered | accepted | travelling | done
        self.excluded: set[str] = set()
        self.check_in: float | None = None
        self.electrician: str | None = None
        self.escalated = False
        self.offers = 0
        self.reachable = False


class _Simulation:
    def __init__(self, city: City, policy: str) -> None:
        if policy not in POLICIES:
            raise InvalidCityError(f"unknown policy {policy!r}; choose one of {POLICIES}")
        self.city, self.policy = city, policy
        self.travel = city.travel
        self.planned = {j.id: j for j in city.planned_jobs}
        queues: dict[str, list[list]] = {e.id: [] for e in city.electricians}
        for item in sorted(city.day_plan, key=lambda i: (i.electrician_id, i.start, i.job_id)):
            queues[item.electrician_id].append(
                [item.job_id, item.start, self.planned[item.job_id].service])
        self.crews = [_Crew(e, queues[e.id]) for e in city.electricians]
        self.crew = {c.e.id: c for c in self.crews}
        self.jobs = {j.id: _JobState(j) for j in city.urgent_jobs}
        self.heap: list[tuple] = []
        self.seq = 0
        self.log: list[LogEntry] = []
        self.offers: list[OfferRecord] = []
        self.completed = 0
        self.preemptions = 0
        self.rounds = 0
        self.skills_of = {e.id: e.skills for e in city.electricians}

    # -- plumbing ----------------------------------------------------------------------------
    def at(self, t: float, kind: str, *args) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, args))

    def note(self, t: float, kind: str, job: str | None = None, elec: str | None = None,
             detail: str = "") -> None:
        self.log.append(LogEntry(round(t, 6), kind, job, elec, detail))

    def run(self) -> CityOutcome:
        for c in self.crews:
            if c.e.valid:
                self.at(c.e.shift_start, "shift_start", c.e.id)
        for j in self.city.urgent_jobs:
            self.at(j.arrival, "urgent_arrival", j.id)
        handlers: dict[str, Callable] = {
            "shift_start": self.on_shift_start, "urgent_arrival": self.on_urgent_arrival,
            "planned_depart": self.on_planned_depart, "planned_arrive": self.on_planned_arrive,
            "planned_finish": self.on_planned_finish, "offer_reply": self.on_offer_reply,
            "no_show_check": self.on_no_show_check, "urgent_arrive": self.on_urgent_arrive,
            "urgent_finish": self.on_urgent_finish,
        }
        while self.heap:
            t, _, kind, args = heapq.heappop(self.heap)
            handlers[kind](t, *args)
            if not self.heap or self.heap[0][0] > t + _EPS:
                self.dispatch(t)
        end = max([self.city.hours * 60.0] + [e.t for e in self.log[-1:]])
        for js in self.jobs.values():
            if js.check_in is None:
                self.escalate(end, js, "unserved")
        return CityOutcome(
            policy=self.policy,
            urgent=tuple(UrgentRecord(js.job.id, js.job.arrival, js.job.deadline, js.reachable,
                                      js.check_in, js.electrician, js.escalated, js.offers)
                         for js in self.jobs.values()),
            offers=tuple(self.offers), log=tuple(self.log),
            planned_jobs=len(self.city.day_plan), planned_completed=self.completed,
            preemptions=self.preemptions, dispatch_rounds=self.rounds)

    def escalate(self, t: float, js: _JobState, why: str) -> None:
        if not js.escalated:
            js.escalated = True
            self.note(t, "escalate", js.job.id, None, why)

    # -- planned work ------------------------------------------------------------------------
    def plan_next(self, c: _Crew, now: float) -> None:
        """Schedule the next planned job of an idle electrician, dropping any it cannot reach
        within its window or its shift."""
        while c.queue:
            job_id, start, left = c.queue[0]
            job = self.planned[job_id]
            t = self.travel.minutes(c.pos, job.position)
            depart = max(now, start - t)
            # Work already begun may be resumed after its window; new work may not.
            started = left < job.service - _EPS
            if (not started and depart + t > job.due + _EPS) or depart + t > c.e.shift_end:
                c.queue.pop(0)
                self.note(now, "planned_drop", job_id, c.e.id)
                continue
            self.at(depart, "planned_depart", c.e.id, c.epoch)
            return

    def on_shift_start(self, t: float, eid: str) -> None:
        c = self.crew[eid]
        if c.act == _IDLE and c.hold_state != "committed":
            self.plan_next(c, t)

    def on_planned_depart(self, t: float, eid: str, epoch: int) -> None:
        c = self.crew[eid]
        if epoch != c.epoch or c.act != _IDLE or not c.queue:
            return
        job = self.planned[c.queue[0][0]]
        c.act, c.kind, c.job = _TRAVEL, "planned", job.id
        c.dest, c.t0, c.t1 = job.position, t, t + self.travel.minutes(c.pos, job.position)
        self.note(t, "depart", job.id, eid, "planned")
        self.at(c.t1, "planned_arrive", eid, c.epoch)

    def on_planned_arrive(self, t: float, eid: str, epoch: int) -> None:
        c = self.crew[eid]
        if epoch != c.epoch:
            return
        job = self.planned[c.job]
        c.pos, c.dest, c.act = job.position, None, _ONSITE
        started = c.queue[0][2] < job.service - _EPS
        c.work_start = t if started else max(t, job.ready)
        c.t1 = c.work_start + c.queue[0][2]
        self.note(t, "check_in", job.id, eid, "planned")
        self.at(c.t1, "planned_finish", eid, c.epoch)

    def on_planned_finish(self, t: float, eid: str, epoch: int) -> None:
        c = self.crew[eid]
        if epoch != c.epoch:
            return
        self.note(t, "finish", c.job, eid, "planned")
        c.queue.pop(0)
        self.completed += 1
        c.act, c.kind, c.job = _IDLE, None, None
        if c.hold_state != "committed" or c.no_show:
            self.plan_next(c, t)

    # -- urgent work -------------------------------------------------------------------------
    def on_urgent_arrival(self, t: float, job_id: str) -> None:
        js = self.jobs[job_id]
        js.state = "waiting"
        self.note(t, "arrival", job_id)
        job = js.job
        pts = [c.position(t) for c in self.crews
               if c.e.on_shift(t) and job.skills <= c.e.skills]
        if pts:
            best = float(self.travel.minutes_matrix(pts, [job.position]).min())
            js.reachable = best <= self.city.sla_minutes - self.city.response_minutes + _EPS

    def offer(self, t: float, js: _JobState, c: _Crew) -> None:
        c.hold, c.hold_state, c.no_show = js.job.id, "offer", False
        js.state, js.offers = "offered", js.offers + 1
        out = self.city.offer_outcome(js.job.id, c.e.id)
        self.offers.append(OfferRecord(round(t, 6), js.job.id, c.e.id, out))
        self.note(t, "offer", js.job.id, c.e.id)
        self.at(t + out.delay, "offer_reply", js.job.id, c.e.id)

    def expected_free(self, c: _Crew, now: float, margin: float = 1.0) -> tuple[float, LatLon]:
        """When and where an electrician on an urgent job expects to be free: the estimated
        service times `margin` (above 1 for a cautious figure)."""
        job = self.jobs[c.job].job
        start = c.t1 if c.act == _TRAVEL else c.work_start
        return max(now, start + margin * job.service_estimate), job.position

    def on_offer_reply(self, t: float, job_id: str, eid: str) -> None:
        js, c = self.jobs[job_id], self.crew[eid]
        out = self.city.offer_outcome(job_id, eid)
        if out.response != "accept":
            self.note(t, out.response, job_id, eid)
            js.excluded.add(eid)
            js.state = "waiting"
            c.hold = c.hold_state = None
            return
        self.note(t, "accept", job_id, eid)
        c.hold_state, c.no_show = "committed", out.no_show
        js.state, js.electrician = "accepted", eid
        busy_urgent = c.kind == "urgent"
        if busy_urgent:
            depart_at, where = self.expected_free(c, t)
            actual_depart = c.t1 if c.act == _ONSITE else c.t1 + self.jobs[c.job].job.service
        else:
            depart_at, where, actual_depart = t, c.position(t), t
        if depart_at + self.travel.minutes(where, js.job.position) > js.job.deadline + _EPS:
            self.escalate(t, js, "predicted_late")
        if out.no_show:
            self.at(actual_depart + self.city.no_show_grace_minutes, "no_show_check", job_id,
                    eid)
        elif not busy_urgent:
            self.depart_urgent(t, c, js)

    def on_no_show_check(self, t: float, job_id: str, eid: str) -> None:
        js, c = self.jobs[job_id], self.crew[eid]
        self.note(t, "no_show", job_id, eid)
        js.excluded.add(eid)
        js.state, js.electrician = "waiting", None
        c.hold = c.hold_state = None
        c.no_show = False
        if c.act == _IDLE:
            c.epoch += 1  # re-plan from where they are now
            self.plan_next(c, t)

    def depart_urgent(self, t: float, c: _Crew, js: _JobState) -> None:
        if c.kind == "planned":
            if c.act == _ONSITE and t > c.work_start:
                c.queue[0][2] = max(0.0, c.queue[0][2] - (t - c.work_start))
            self.preemptions += 1
            self.note(t, "interrupt", c.job, c.e.id, "planned")
        here = c.position(t)
        c.epoch += 1
        c.hold = c.hold_state = None
        c.pos, c.dest, c.act, c.kind, c.job = here, js.job.position, _TRAVEL, "urgent", js.job.id
        c.t0, c.t1 = t, t + self.travel.minutes(here, js.job.position)
        js.state = "travelling"
        self.note(t, "depart", js.job.id, c.e.id, "urgent")
        self.at(c.t1, "urgent_arrive", c.e.id, c.epoch)

    def on_urgent_arrive(self, t: float, eid: str, epoch: int) -> None:
        c = self.crew[eid]
        if epoch != c.epoch:
            return
        js = self.jobs[c.job]
        c.pos, c.dest, c.act, c.work_start = js.job.position, None, _ONSITE, t
        c.t1 = t + js.job.service
        js.check_in = t
        self.note(t, "check_in", js.job.id, eid, "urgent")
        self.at(c.t1, "urgent_finish", eid, c.epoch)

    def on_urgent_finish(self, t: float, eid: str, epoch: int) -> None:
        c = self.crew[eid]
        if epoch != c.epoch:
            return
        js = self.jobs[c.job]
        js.state = "done"
        self.note(t, "finish", js.job.id, eid, "urgent")
        c.act, c.kind, c.job = _IDLE, None, None
        if c.hold_state == "committed" and not c.no_show:
            self.depart_urgent(t, c, self.jobs[c.hold])
        elif c.hold_state != "committed":
            self.plan_next(c, t)

    # -- policies ----------------------------------------------------------------------------
    def dispatch(self, now: float) -> None:
        waiting = [js for js in self.jobs.values() if js.state == "waiting"]
        if not waiting:
            return
        self.rounds += 1
        if self.policy == "greedy":
            self.dispatch_greedy(now, waiting)
        else:
            self.dispatch_optimised(now, waiting)

    def dispatch_greedy(self, now: float, waiting: list[_JobState]) -> None:
        """First come, first served: nearest (straight-line) idle qualified electrician."""
        for js in sorted(waiting, key=lambda s: (s.job.arrival, s.job.id)):
            job = js.job
            idle = [c for c in self.crews
                    if c.act == _IDLE and c.hold is None and c.e.on_shift(now)
                    and c.e.id not in js.excluded and job.skills <= c.e.skills]
            if not idle:
                self.escalate(now, js, "no_idle_electrician")
                continue
            km = self.travel.km_matrix([c.pos for c in idle], [job.position])[:, 0]
            k = min(range(len(idle)), key=lambda i: (km[i], idle[i].e.id))
            c = idle[k]
            arrival = now + self.city.response_minutes + self.travel.minutes(c.pos, job.position)
            if arrival > job.deadline + _EPS:
                self.escalate(now, js, "predicted_late")
            self.offer(now, js, c)

    def dispatch_optimised(self, now: float, waiting: list[_JobState]) -> None:
        """Re-optimise all waiting jobs over idle electricians, those on interruptible planned
        work, and those finishing an urgent job (from its expected end and site)."""
        cands = []
        for c in self.crews:
            if c.hold is not None or not c.e.on_shift(now):
                continue
            if c.act == _IDLE:
                cands.append(CandidateElectrician(c.e.id, c.pos, now, c.e.skills, c.e.shift_end))
            elif c.kind == "planned":
                cands.append(CandidateElectrician(c.e.id, c.position(now), now, c.e.skills,
                                                  c.e.shift_end, preempts=c.job))
            else:
                free_at, where = self.expected_free(c, now, _BUSY_MARGIN)
                cands.append(CandidateElectrician(c.e.id, where, free_at, c.e.skills,
                                                  c.e.shift_end))
        jobs = [UrgentJob(js.job.id, js.job.position, js.job.deadline, js.job.skills,
                          frozenset(js.excluded)) for js in waiting]
        result = dispatch(UrgentDispatchInstance(
            now, tuple(jobs), tuple(cands), self.travel, self.city.response_minutes,
            wait_weight=1.0))
        for a in result.assignments:
            js = self.jobs[a.job_id]
            if a.escalate:
                self.escalate(now, js, "predicted_late")
            self.offer(now, js, self.crew[a.electrician_id])
        for u in result.unassigned:
            self.escalate(now, self.jobs[u.job_id], u.reason)


def simulate(city: City, policy: str = "optimised") -> CityOutcome:
    """Run one day of `city` under `policy` ("optimised" or "greedy")."""
    return _Simulation(city, policy).run()


def check_outcome(city: City, outcome: CityOutcome) -> list[str]:
    """Independent check of a simulated day from its event log; returns the broken rules.

    No electrician works two jobs at once or holds two offers at once; nobody is offered the
    same job twice (so nobody who declined, let an offer expire or did not show gets it back);
    urgent jobs are served only by qualified electricians with a valid certificate who were on
    shift when offered; every urgent job ends on site or escalated; check-in never precedes
    arrival.
    """
    problems: list[str] = []
    elecs = {e.id: e for e in city.electricians}
    urgent = {j.id: j for j in city.urgent_jobs}
    working: dict[str, str] = {}
    holding: dict[str, str] = {}
    offered: set[tuple[str, str]] = set()
    for entry in outcome.log:
        eid, jid = entry.electrician_id, entry.job_id
        if entry.kind == "depart":
            if eid in working:
                problems.append(f"{entry.t}: {eid} sets off for {jid} while on {working[eid]}")
            working[eid] = jid
            if entry.detail == "urgent":
                if holding.get(eid) != jid:
                    problems.append(f"{entry.t}: {eid} sets off for {jid} without accepting it")
                holding.pop(eid, None)
        elif entry.kind in ("finish", "interrupt"):
            if working.get(eid) != jid:
                problems.append(f"{entry.t}: {eid} ends {jid} without having set off for it")
            working.pop(eid, None)
        elif entry.kind == "offer":
            e = elecs[eid]
            if eid in holding:
                problems.append(f"{entry.t}: {eid} offered {jid} while holding {holding[eid]}")
            if (jid, eid) in offered:
                problems.append(f"{entry.t}: {eid} offered {jid} a second time")
            if not e.on_shift(entry.t):
                problems.append(f"{entry.t}: {eid} offered {jid} while off shift or invalid")
            if not urgent[jid].skills <= e.skills:
                problems.append(f"{entry.t}: {eid} offered {jid} without the skills")
            offered.add((jid, eid))
            holding[eid] = jid
        elif entry.kind in ("decline", "expire", "no_show"):
            if holding.get(eid) != jid:
                problems.append(f"{entry.t}: {entry.kind} of {jid} by {eid} without an offer")
            holding.pop(eid, None)
    for r in outcome.urgent:
        if r.check_in is None and not r.escalated:
            problems.append(f"{r.job_id}: neither on site nor escalated")
        if r.check_in is not None and r.check_in < r.arrival - _EPS:
            problems.append(f"{r.job_id}: checked in before it arrived")
    if len(outcome.urgent) != len(city.urgent_jobs):
        problems.append("the outcome does not cover every urgent job")
    return problems
