"""Seeded synthetic field-service days (planned patrols and inspections in a park district).

Distances and times are in travel minutes: the platform projects real positions so that the
Euclidean distance between two points is the driving time, and times of day are minutes after
midnight (480 = 08:00). The same seed always gives the same instance.

The default day (`field_service_day(seed)`): 500 jobs and 200 electricians in a 60 × 40
minute district.

- Electricians live around a handful of provider bases; each starts and ends the day at home.
  Everyone holds "low_voltage"; about 35 % also hold "high_voltage", 30 % "metering" and
  25 % "testing" (independently).
- Shifts: 80 % work 08:00–17:00 (480–1020), 20 % 10:00–19:00 (600–1140). Within the 9-hour
  shift at most 8 hours may pass between leaving home and coming back (`max_duration` 480)
  and at most 6 jobs may be taken (`max_jobs`), so the work is spread over the crew.
- Jobs sit at enterprise sites (several jobs may share a site). Each needs "low_voltage" and
  at most one special skill (55 % none, 20 % high voltage, 15 % metering, 10 % testing);
  service lasts 20–90 minutes (steps of 5). 40 % carry a customer window of 2–4 hours for
  the service start; the rest may start at any time the site is open (08:00–18:00 start).
- No load dimension (capacity 0, demand 0).

Every job is reachable by itself: each window opens no earlier than 08:40 and closes so that
a qualified electrician of the matching shift can arrive, work and drive home in time. The
crew has roughly twice the working time the jobs need, so a good plan serves every job; the
tests and the benchmark report how many a plan leaves out (0 in the figures so far).
"""

from __future__ import annotations

import math

import numpy as np

from alliance.instances import Job, RoutingInstance, Vehicle

LOW_VOLTAGE = "low_voltage"
SPECIAL_SKILLS = ("high_voltage", "metering", "testing")
DAY_SHIFT = (480.0, 1020.0)
LATE_SHIFT = (600.0, 1140.0)


def field_service_day(seed: int, jobs: int = 500, electricians: int = 200, *,
                      width: float = 60.0, height: float = 40.0, bases: int = 8,
                      sites: int | None = None, window_share: float = 0.4,
                      late_shift_share: float = 0.2, max_duration: float = 480.0,
                      max_jobs: int = 6) -> RoutingInstance:
    """A deterministic day of planned field-service jobs for `electricians` electricians."""
    if jobs < 0 or electricians < 1 or bases < 1:
        raise ValueError("need jobs >= 0, electricians >= 1 and bases >= 1")
    rng = np.random.default_rng(seed)
    size = np.array([width, height])

    base_xy = rng.uniform(0.1, 0.9, size=(bases, 2)) * size
    vehicles = []
    home_of = rng.integers(0, bases, size=electricians)
    homes = np.clip(base_xy[home_of] + rng.normal(0.0, 4.0, size=(electricians, 2)),
                    0.0, size)
    holds = rng.random((electricians, len(SPECIAL_SKILLS))) < np.array([0.35, 0.30, 0.25])
    late = rng.random(electricians) < late_shift_share
    for k in range(electricians):
        special = [s for s, h in zip(SPECIAL_SKILLS, holds[k], strict=True) if h]
        skills = frozenset([LOW_VOLTAGE, *special])
        home = (round(float(homes[k, 0]), 2), round(float(homes[k, 1]), 2))
        start, end = LATE_SHIFT if late[k] else DAY_SHIFT
        vehicles.append(Vehicle(
            id=f"e{k + 1:03d}", capacity=0, shift_start=start, shift_end=end, skills=skills,
            start=home, end=home, max_duration=max_duration, max_jobs=max_jobs))

    # Enterprise sites: a mix of clusters (industrial estates) and scattered plants.
    n_sites = sites if sites is not None else max(1, (jobs * 3) // 5)
    centres = rng.uniform(0.1, 0.9, size=(6, 2)) * size
    clustered = rng.random(n_sites) < 0.6
    site_xy = np.where(
        clustered[:, None],
        centres[rng.integers(0, len(centres), size=n_sites)]
        + rng.normal(0.0, 3.5, size=(n_sites, 2)),
        rng.uniform(0.0, 1.0, size=(n_sites, 2)) * size)
    site_xy = np.clip(site_xy, 0.0, size)

    site_of = rng.integers(0, n_sites, size=jobs)
    need = rng.choice(len(SPECIAL_SKILLS) + 1, size=jobs, p=[0.55, 0.20, 0.15, 0.10])
    service = rng.integers(4, 19, size=jobs) * 5.0
    windowed = rng.random(jobs) < window_share
    length = rng.integers(120, 241, size=jobs).astype(float)
    opens = rng.random(jobs)
    out = []
    for i in range(jobs):
        skills = frozenset([LOW_VOLTAGE] if need[i] == 0
                           else [LOW_VOLTAGE, SPECIAL_SKILLS[need[i] - 1]])
        x, y = site_xy[site_of[i]]
        location = (round(float(x), 2), round(float(y), 2))
        if windowed[i]:
            # Open between 08:40 and the latest time a 2-4 h window still lets a day-shift
            # electrician start by 16:00 - service, so the job is reachable by itself.
            earliest, latest_due = 520.0, 1020.0 - 45.0 - service[i]
            latest_ready = max(earliest, latest_due - length[i])
            ready = math.floor(earliest + opens[i] * (latest_ready - earliest))
            due = min(ready + length[i], latest_due)
        else:
            ready, due = 480.0, 1080.0
        out.append(Job(id=f"j{i + 1:04d}", location=location, demand=0, ready=float(ready),
                       due=float(due), service=float(service[i]), skills=skills))
    return RoutingInstance(
        name=f"field-service-{seed}-{jobs}x{electricians}",
        depot=(round(float(base_xy[0, 0]), 2), round(float(base_xy[0, 1]), 2)),
        jobs=tuple(out), vehicles=tuple(vehicles),
        meta={"generator": "field_service_day", "seed": seed, "area": (width, height),
              "bases": [tuple(b) for b in base_xy.round(2).tolist()]})
