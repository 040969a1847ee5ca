"""A deterministic demonstration park (topology, enterprises, providers, logins) and its loader."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.orm import Session

from parkgrid.crypto import KeyBox, new_chain_account
from parkgrid.models import (
    AccountPurpose,
    Alliance,
    Certificate,
    ChainAccount,
    DemandProfile,
    Electrician,
    Enterprise,
    Feeder,
    MeteringPoint,
    Park,
    Provider,
    ProviderStatus,
    Role,
    Substation,
    Transformer,
    User,
)
from parkgrid.services import alliance as alliance_service

log = logging.getLogger(__name__)

DEMO_SEED = 20261123
DEMO_PARK_CODE = "DEMO"

# Published on purpose: these are the logins of a throw-away demonstration database.
DEMO_LOGINS: list[tuple[str, str, str]] = [
    (Role.ADMIN, "admin", "admin-demo-1"),
    (Role.SETTLEMENT, "settlement", "settlement-demo-1"),
    (Role.AUDITOR, "auditor", "auditor-demo-1"),
    (Role.ENTERPRISE, "enterprise", "enterprise-demo-1"),
    (Role.ENTERPRISE, "enterprise2", "enterprise-demo-2"),
    (Role.ENTERPRISE, "enterprise3", "enterprise-demo-3"),
    (Role.PROVIDER, "provider", "provider-demo-1"),
]

Progress = Callable[[str, int], None]

# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class DemoFeeder:
    code: str
    name: str
    thermal_limit_kva: Decimal


@dataclass(frozen=True)
class DemoTransformer:
    code: str
    name: str
    rated_kva: Decimal
    max_load_rate: Decimal
    feeders: tuple[DemoFeeder, ...]

    @property
    def allowed_kva(self) -> Decimal:
        return self.rated_kva * self.max_load_rate


@dataclass(frozen=True)
class DemoSubstation:
    code: str
    name: str
    voltage_kv: Decimal
    transformers: tuple[DemoTransformer, ...]


@dataclass(frozen=True)
class DemoMeteringPoint:
    code: str
    name: str
    multiplier: Decimal


@dataclass(frozen=True)
class DemoEnterprise:
    code: str
    name: str
    contracted_kva: Decimal
    feeder_code: str
    metering_points: tuple[DemoMeteringPoint, ...]


@dataclass(frozen=True)
class DemoCertificate:
    type: str
    number: str
    expires: date


@dataclass(frozen=True)
class DemoElectrician:
    code: str
    name: str
    certificates: tuple[DemoCertificate, ...]
    skills: tuple[str, ...]
    home_lat: Decimal
    home_lon: Decimal
    shift_start: time
    shift_end: time
    weekdays: tuple[int, ...]  # ISO weekdays, 1 = Monday

    @property
    def certificate_type(self) -> str:
        """The electrician's main certificate (the first listed)."""
        return self.certificates[0].type

    @property
    def certificate_expiry(self) -> date:
        return self.certificates[0].expires


@dataclass(frozen=True)
class DemoProvider:
    code: str
    name: str
    alliance: str
    licence_number: str
    licence_level: int
    licence_issued: date
    licence_expiry: date
    status: str
    electricians: tuple[DemoElectrician, ...]


@dataclass(frozen=True)
class DemoJob:
    """A demonstration job, raised `age` before the demo is loaded and taken to `status`."""

    enterprise_code: str
    kind: str
    urgent: bool
    title: str
    description: str
    skills: tuple[str, ...]
    status: str
    age: timedelta
    provider_code: str | None = None


@dataclass(frozen=True)
class DemoContractItem:
    name: str
    equipment_kind: str
    lat: Decimal
    lon: Decimal


@dataclass(frozen=True)
class DemoContract:
    """A custody O&M contract of an energy-cloud-butler member for one enterprise."""

    code: str
    provider_code: str
    enterprise_code: str
    frequency: str
    window_start: time
    window_end: time
    service_minutes: int
    skills: tuple[str, ...]
    starts_on: date
    items: tuple[DemoContractItem, ...]


@dataclass(frozen=True)
class DemoAlliance:
    """The alliance side beyond the members in good standing: a member whose licence runs
    out soon, an applicant with one valid electrician too few, jobs in every stage, and
    custody O&M contracts of the butler members."""

    providers: tuple[DemoProvider, ...]
    jobs: tuple[DemoJob, ...]
    contracts: tuple[DemoContract, ...] = ()


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    display_name: str
    role: str
    enterprise_code: str | None = None
    provider_code: str | None = None
    locale: str = "zh"


@dataclass(frozen=True)
class DemoPark:
    """Everything the demo database holds, as plain values (no database involved)."""

    seed: int
    code: str
    name: str
    timezone: str
    gate_closure_time: time
    period_minutes: int
    substation: DemoSubstation
    enterprises: tuple[DemoEnterprise, ...]
    providers: tuple[DemoProvider, ...]
    users: tuple[DemoUser, ...]
    alliance: DemoAlliance
    today: date

    @property
    def transformers(self) -> tuple[DemoTransformer, ...]:
        return self.substation.transformers

    @property
    def feeders(self) -> tuple[DemoFeeder, ...]:
        return tuple(f for t in self.transformers for f in t.feeders)

    def transformer_of(self, enterprise: DemoEnterprise) -> DemoTransformer:
        for transformer in self.transformers:
            if any(f.code == enterprise.feeder_code for f in transformer.feeders):
                return transformer
        raise KeyError(enterprise.feeder_code)

    def contracted_kva_by_transformer(self) -> dict[str, Decimal]:
        totals = {t.code: Decimal(0) for t in self.transformers}
        for enterprise in self.enterprises:
            totals[self.transformer_of(enterprise).code] += enterprise.contracted_kva
        return totals

    def contracted_kva_by_feeder(self) -> dict[str, Decimal]:
        totals = {f.code: Decimal(0) for f in self.feeders}
        for enterprise in self.enterprises:
            totals[enterprise.feeder_code] += enterprise.contracted_kva
        return totals


# --------------------------------------------------------------------------- generation

TRANSFORMER_RATINGS_KVA = (31_500, 40_000, 50_000, 63_000)
MAX_LOAD_RATE = Decimal("0.8000")
BUSY_HEADROOM_KVA = Decimal(200)
# Feeders out of one transformer can carry somewhat more than it, so the transformer binds.
FEEDER_HEADROOM_PERCENT = 115
# Standard distribution-transformer sizes; a contract is usually one or two of them.
SMALL_KVA = (315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500)
SMALL_WEIGHTS = (3, 4, 5, 7, 8, 10, 10, 10, 9, 8)
LARGE_KVA = (5000, 6300, 8000, 10000, 12500)
LARGE_WEIGHTS = (3, 3, 3, 2, 1)

# fmt: off
PLACES = (
    "东湖", "西岭", "南山", "北辰", "金桥", "银河", "华阳", "青山", "临江", "长风",
    "新港", "明珠", "锦程", "瑞丰", "恒通", "泰和", "永盛", "宏达", "天成", "嘉禾",
    "振华", "润泽", "鼎新", "凯旋", "博远", "中孚", "丰源", "启航", "汇金", "远景",
)
INDUSTRIES = (
    "精密机械", "电子科技", "汽车零部件", "新材料", "食品", "包装材料", "纺织", "塑胶制品",
    "五金制品", "光电科技", "医疗器械", "印刷", "家具制造", "环保设备", "智能装备", "电线电缆",
    "冷链物流", "生物科技", "模具", "涂料",
)
HEAVY_INDUSTRIES = ("半导体", "特钢", "铝业", "化工", "数据科技", "锂电科技", "玻璃", "铸造")
COMPANY_SUFFIXES = ("有限公司", "有限公司", "股份有限公司")
FEEDER_WORDS = (
    "兴业", "创新", "科技", "园东", "园西", "纬一", "纬二", "经三", "经四", "工业",
    "港湾", "和平", "振兴", "长江", "丰收", "致远",
)
SHARED_ELECTRICIAN_FIRMS = ("电力工程有限公司", "电气安装有限公司", "机电设备安装有限公司")
BUTLER_FIRMS = ("能源运维服务有限公司", "智慧能源科技有限公司")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋"
GIVEN_CHARS = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林洋峰建国志文海"
CERTIFICATES = ("low_voltage", "high_voltage")
EXTRA_SKILLS = (
    "cable", "switchgear", "transformer", "relay_protection", "metering", "testing", "patrol"
)
# fmt: on
# The demo park sits in the Yangtze delta; electricians live within ~15 km of it.
PARK_LAT_MICRO = 31_300_000
PARK_LON_MICRO = 120_700_000


def _kva(value: int) -> Decimal:
    return Decimal(value).quantize(Decimal("0.1"))


def _round_down(value: int, step: int) -> int:
    return value - value % step


def _transformers(rng: random.Random) -> list[DemoTransformer]:
    words = list(FEEDER_WORDS)
    rng.shuffle(words)
    transformers = []
    for number, rated in enumerate(TRANSFORMER_RATINGS_KVA, start=1):
        n_feeders = rng.choice((3, 4))
        shares = [rng.randint(80, 120) for _ in range(n_feeders)]
        feeders = tuple(
            DemoFeeder(
                code=f"T{number}-F{k}",
                name=f"{words.pop()}线",
                thermal_limit_kva=_kva(
                    _round_down(rated * FEEDER_HEADROOM_PERCENT * share // (100 * sum(shares)), 100)
                ),
            )
            for k, share in enumerate(shares, start=1)
        )
        transformers.append(
            DemoTransformer(
                code=f"T{number}",
                name=f"{number}号主变",
                rated_kva=_kva(rated),
                max_load_rate=MAX_LOAD_RATE,
                feeders=feeders,
            )
        )
    return transformers


def _enterprise_sizes(rng: random.Random) -> list[int]:
    n_total = rng.randint(56, 64)
    n_large = rng.randint(7, 9)
    large = rng.choices(LARGE_KVA, weights=LARGE_WEIGHTS, k=n_large)
    small = rng.choices(SMALL_KVA, weights=SMALL_WEIGHTS, k=n_total - n_large)
    return large + small


def _assign_to_feeders(
    rng: random.Random, sizes: list[int], transformers: list[DemoTransformer]
) -> list[str]:
    """Feeder code per size: largest first, each onto the relatively emptiest feeder.

    A random weight per transformer makes some transformers fuller than others, so the
    market has tight and slack spots. A feeder never takes more than 95 % of its limit.
    """
    weight = {t.code: rng.randint(80, 120) for t in transformers}
    feeders = [(t.code, f) for t in transformers for f in t.feeders]
    load = {f.code: 0 for _, f in feeders}
    limit = {f.code: int(f.thermal_limit_kva) for _, f in feeders}
    assignment: list[str] = [""] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        size = sizes[i]
        fitting = [
            (t_code, f)
            for t_code, f in feeders
            if (load[f.code] + size) * 100 <= limit[f.code] * 95
        ]
        if not fitting:
            raise RuntimeError(f"no demo feeder can take an enterprise of {size} kVA")
        # Fill ratio relative to the transformer's weight; ties go to the lower code.
        t_code, feeder = min(
            fitting,
            key=lambda tf: (
                Fraction(load[tf[1].code] + size, limit[tf[1].code] * weight[tf[0]]),
                tf[1].code,
            ),
        )
        load[feeder.code] += size
        assignment[i] = feeder.code
    return assignment


def _company_names(rng: random.Random, sizes: list[int]) -> list[str]:
    names: list[str] = []
    taken: set[str] = set()
    for size in sizes:
        industries = HEAVY_INDUSTRIES if size >= LARGE_KVA[0] else INDUSTRIES
        while True:
            name = rng.choice(PLACES) + rng.choice(industries) + rng.choice(COMPANY_SUFFIXES)
            if name not in taken:
                break
        taken.add(name)
        names.append(name)
    return names


def _metering_points(rng: random.Random, code: str, size: int) -> tuple[DemoMeteringPoint, ...]:
    if size >= LARGE_KVA[0]:
        count = rng.randint(2, 3)
    elif size >= 1000:
        count = rng.randint(1, 2)
    else:
        count = 1
    return tuple(
        DemoMeteringPoint(code=f"{code}-M{k}", name=f"{k}号进线计量点", multiplier=Decimal(1))
        for k in range(1, count + 1)
    )


def _enterprises(rng: random.Random, transformers: list[DemoTransformer]) -> list[DemoEnterprise]:
    sizes = _enterprise_sizes(rng)
    feeder_codes = _assign_to_feeders(rng, sizes, transformers)
    order = list(range(len(sizes)))
    rng.shuffle(order)
    # The two demo enterprise logins get mid-sized enterprises under different transformers,
    # so a trade between them moves load from one transformer to another.
    mid = [i for i in order if 1000 <= sizes[i] <= 2500]
    first = mid[0]
    transformer_of = {f.code: t.code for t in transformers for f in t.feeders}
    second = next(
        i for i in mid if transformer_of[feeder_codes[i]] != transformer_of[feeder_codes[first]]
    )
    order = [first, second] + [i for i in order if i not in (first, second)]
    names = _company_names(rng, [sizes[i] for i in order])
    enterprises = []
    for number, (i, name) in enumerate(zip(order, names, strict=True), start=1):
        code = f"E{number:03d}"
        enterprises.append(
            DemoEnterprise(
                code=code,
                name=name,
                contracted_kva=_kva(sizes[i]),
                feeder_code=feeder_codes[i],
                metering_points=_metering_points(rng, code, sizes[i]),
            )
        )
    return enterprises


def _derate_busy_transformer(transformers: list[DemoTransformer],
                             enterprises: list[DemoEnterprise]) -> list[DemoTransformer]:
    """Restrict the second demo enterprise's transformer to a lower maximum load rate.

    Utilities do this to an aging or hot transformer; here it leaves BUSY_HEADROOM_KVA of
    headroom at the day's peak, so bids behind it compete for little room and the clearing
    shows congestion and a zonal price difference.
    """
    feeder_to = {f.code: t.code for t in transformers for f in t.feeders}
    busy = feeder_to[enterprises[1].feeder_code]
    peak = max(
        sum(load) for load in zip(*(
            demand_profile(e.code, e.contracted_kva, 24) for e in enterprises
            if feeder_to[e.feeder_code] == busy), strict=True))
    out = []
    for t in transformers:
        if t.code == busy:
            rate = ((peak + BUSY_HEADROOM_KVA) / t.rated_kva).quantize(Decimal("0.0001"))
            t = dataclasses.replace(t, max_load_rate=rate)
        out.append(t)
    return out


def _person_name(rng: random.Random) -> str:
    given = "".join(rng.choice(GIVEN_CHARS) for _ in range(rng.choice((1, 2, 2))))
    return rng.choice(SURNAMES) + given


# Shift patterns (local times): day and night shifts every day, office hours on weekdays.
SHIFTS = (
    (time(8, 0), time(20, 0), (1, 2, 3, 4, 5, 6, 7)),
    (time(20, 0), time(8, 0), (1, 2, 3, 4, 5, 6, 7)),
    (time(8, 30), time(17, 30), (1, 2, 3, 4, 5)),
)
SHIFT_WEIGHTS = (5, 3, 2)


def _certificate_number(rng: random.Random) -> str:
    # Special-operation certificates carry the holder's 18-character ID number; made up here.
    return "T" + "".join(rng.choice("0123456789") for _ in range(17))


def _electricians(rng: random.Random, today: date, provider_code: str,
                  count: int | None = None) -> tuple[DemoElectrician, ...]:
    electricians = []
    for number in range(1, (count or rng.randint(10, 14)) + 1):
        certificate = rng.choices(CERTIFICATES, weights=(2, 1))[0]
        certificates = [DemoCertificate(certificate, _certificate_number(rng),
                                        today + timedelta(days=rng.randint(90, 6 * 365)))]
        if rng.random() < 0.25:  # some hold both the low- and the high-voltage class
            other = CERTIFICATES[1 - CERTIFICATES.index(certificate)]
            certificates.append(DemoCertificate(other, _certificate_number(rng),
                                                today + timedelta(days=rng.randint(60, 4 * 365))))
        extra = rng.sample(EXTRA_SKILLS, rng.randint(1, 3))
        skills = tuple(sorted({c.type for c in certificates} | set(extra)))
        start, end, weekdays = rng.choices(SHIFTS, weights=SHIFT_WEIGHTS)[0]
        electricians.append(
            DemoElectrician(
                code=f"{provider_code}-E{number:02d}",
                name=_person_name(rng),
                certificates=tuple(certificates),
                skills=skills,
                home_lat=Decimal(PARK_LAT_MICRO + rng.randint(-120_000, 120_000)).scaleb(-6),
                home_lon=Decimal(PARK_LON_MICRO + rng.randint(-140_000, 140_000)).scaleb(-6),
                shift_start=start,
                shift_end=end,
                weekdays=weekdays,
            )
        )
    return tuple(electricians)


def _licence_number(rng: random.Random, level: int, issued: date) -> str:
    # The licence's own numbering: level-region-serial-year.
    return f"{level}-2-{rng.randint(100, 99999):05d}-{issued.year}"


def _provider(rng: random.Random, today: date, code: str, name: str, alliance: str,
              expiry: date, status: str, count: int | None = None) -> DemoProvider:
    level = rng.randint(3, 5)
    issued = expiry.replace(year=expiry.year - 6)
    return DemoProvider(
        code=code, name=name, alliance=alliance,
        licence_number=_licence_number(rng, level, issued), licence_level=level,
        licence_issued=issued, licence_expiry=expiry, status=status,
        electricians=_electricians(rng, today, code, count))


def _providers(rng: random.Random, today: date) -> list[DemoProvider]:
    places = rng.sample(PLACES, 5)
    kinds = [(Alliance.SHARED_ELECTRICIANS, firm) for firm in SHARED_ELECTRICIAN_FIRMS]
    kinds += [(Alliance.ENERGY_CLOUD_BUTLER, firm) for firm in BUTLER_FIRMS]
    providers = []
    for number, ((alliance, firm), place) in enumerate(zip(kinds, places, strict=True), start=1):
        expiry = date(today.year + 1, rng.randint(1, 12), rng.randint(1, 28))
        providers.append(_provider(rng, today, f"P{number:02d}", place + firm, alliance,
                                   expiry, ProviderStatus.APPROVED))
    return providers


LICENCE_EXPIRES_SOON_DAYS = 12


def _alliance_extras(seed: int, today: date, members: list[DemoProvider],
                     enterprises: list[DemoEnterprise]) -> DemoAlliance:
    """A separate random stream, so the members and the park stay as they were."""
    rng = random.Random(f"alliance:{seed}")
    taken = {p.name for p in members}
    names = [n for n in (place + firm for place in PLACES for firm in SHARED_ELECTRICIAN_FIRMS)
             if n not in taken]
    soon = _provider(rng, today, "P06", rng.choice(names), Alliance.SHARED_ELECTRICIANS,
                     today + timedelta(days=LICENCE_EXPIRES_SOON_DAYS), ProviderStatus.APPROVED)
    applicant = _provider(rng, today, "P07", rng.choice([n for n in names if n != soon.name]),
                          Alliance.SHARED_ELECTRICIANS, date(today.year + 3, 6, 30),
                          ProviderStatus.APPLIED, count=10)
    # One certificate lapsed last month: nine valid electricians, one too few.
    lapsed = applicant.electricians[-1]
    lapsed = dataclasses.replace(lapsed, certificates=(dataclasses.replace(
        lapsed.certificates[0], expires=today - timedelta(days=rng.randint(3, 30))),))
    applicant = dataclasses.replace(
        applicant, electricians=applicant.electricians[:-1] + (lapsed,))
    butler = next(p for p in members if p.alliance == Alliance.ENERGY_CLOUD_BUTLER)
    e1, e2, e3 = (e.code for e in enterprises[:3])
    jobs = (
        DemoJob(e1, "repair", True, "配电室低压柜跳闸", "2号低压柜总开关跳闸，车间停电。",
                ("low_voltage",), "new", timedelta(minutes=4)),
        DemoJob(e2, "repair", True, "车间照明回路故障", "三楼照明回路无电，疑似电缆破损。",
                ("low_voltage",), "offered", timedelta(minutes=8)),
        DemoJob(e3, "repair", True, "空压机电源异常", "空压机启动时断路器频繁跳闸。",
                ("low_voltage",), "en_route", timedelta(minutes=15)),
        DemoJob(e1, "repair", False, "更换计量表箱门锁", "表箱门锁损坏，需更换。",
                ("low_voltage",), "in_progress", timedelta(hours=3)),
        DemoJob(e2, "repair", True, "电容补偿柜告警", "补偿柜电容器鼓包，功率因数下降。",
                ("low_voltage",), "closed", timedelta(days=2)),
        DemoJob(e3, "repair", False, "插座回路漏电", "办公区插座回路漏电保护器动作。",
                ("low_voltage",), "cancelled", timedelta(days=1)),
        DemoJob(e1, "patrol", False, "配电房月度巡视", "高低压配电房例行巡视。",
                ("patrol",), "new", timedelta(hours=1),
                provider_code=butler.code),
    )
    return DemoAlliance(providers=(soon, applicant), jobs=jobs,
                        contracts=_contracts(seed, today, members, enterprises))


# The equipment of an enterprise's substation room a custody contract looks after.
CONTRACT_EQUIPMENT = (
    ("1号主变压器", "transformer"), ("10kV高压开关柜", "switchgear"),
    ("低压配电柜", "switchgear"), ("电容补偿柜", "capacitor"), ("直流屏", "dc_panel"),
    ("2号主变压器", "transformer"),
)


def _contracts(seed: int, today: date, members: list[DemoProvider],
               enterprises: list[DemoEnterprise]) -> tuple[DemoContract, ...]:
    """A weekly patrol contract of the first butler member and a daily one of the second,
    each with 3-5 pieces of equipment a few metres from the enterprise's site; they began on
    the first of the current month. A stream of its own keeps everything else as it was."""
    rng = random.Random(f"contracts:{seed}")
    butlers = [p for p in members if p.alliance == Alliance.ENERGY_CLOUD_BUTLER]
    plans = [("weekly", time(9, 0), time(11, 30), 40, ("patrol",)),
             ("daily", time(8, 0), time(10, 0), 20, ("low_voltage",))]
    contracts = []
    for provider, enterprise, (frequency, start, end, minutes, skills) in zip(
            butlers, enterprises, plans, strict=False):
        lat, lon = site_of(enterprise.code)
        equipment = CONTRACT_EQUIPMENT[:rng.randint(3, 5)]
        items = tuple(DemoContractItem(name, kind,
                                       lat + Decimal(rng.randint(-300, 300)).scaleb(-6),
                                       lon + Decimal(rng.randint(-300, 300)).scaleb(-6))
                      for name, kind in equipment)
        contracts.append(DemoContract(
            code=f"OM-{provider.code}-{enterprise.code}", provider_code=provider.code,
            enterprise_code=enterprise.code, frequency=frequency, window_start=start,
            window_end=end, service_minutes=minutes, skills=skills,
            starts_on=today.replace(day=1), items=items))
    return tuple(contracts)


def _users(enterprises: list[DemoEnterprise], providers: list[DemoProvider]) -> list[DemoUser]:
    passwords = {username: password for _, username, password in DEMO_LOGINS}
    # A third enterprise behind the same transformer as the second: two bidders there.
    busy = enterprises[1].feeder_code.split("-")[0]  # feeder codes are "<transformer>-F<n>"
    third = next(e for e in enterprises[2:] if e.feeder_code.split("-")[0] == busy)
    return [
        DemoUser("admin", passwords["admin"], "园区运营管理员", Role.ADMIN),
        DemoUser("settlement", passwords["settlement"], "交易结算专员", Role.SETTLEMENT),
        DemoUser("auditor", passwords["auditor"], "链上审计员", Role.AUDITOR),
        DemoUser(
            "enterprise",
            passwords["enterprise"],
            f"{enterprises[0].name}能源主管",
            Role.ENTERPRISE,
            enterprise_code=enterprises[0].code,
        ),
        DemoUser(
            "enterprise2",
            passwords["enterprise2"],
            f"{enterprises[1].name}能源主管",
            Role.ENTERPRISE,
            enterprise_code=enterprises[1].code,
        ),
        DemoUser(
            "enterprise3",
            passwords["enterprise3"],
            f"{third.name}能源主管",
            Role.ENTERPRISE,
            enterprise_code=third.code,
        ),
        DemoUser(
            "provider",
            passwords["provider"],
            f"{providers[0].name}调度员",
            Role.PROVIDER,
            provider_code=providers[0].code,
        ),
    ]


def generate_demo_park(seed: int = DEMO_SEED, *, today: date | None = None) -> DemoPark:
    """The demo park for ``seed``; the same seed (and ``today``) always gives the same park.

    ``today`` anchors licence and certificate expiry dates (default: the current date), so a
    demo loaded at any time has valid licences; everything else depends on the seed alone.
    """
    today = today or date.today()
    rng = random.Random(seed)
    transformers = _transformers(rng)
    enterprises = _enterprises(rng, transformers)
    transformers = _derate_busy_transformer(transformers, enterprises)
    providers = _providers(rng, today)
    extras = _alliance_extras(seed, today, providers, enterprises)
    return DemoPark(
        seed=seed,
        code=DEMO_PARK_CODE,
        name="示范产业园",
        timezone="Asia/Shanghai",
        gate_closure_time=time(12, 0),
        period_minutes=60,
        substation=DemoSubstation(
            code="S1",
            name="示范110kV变电站",
            voltage_kv=Decimal("110.0"),
            transformers=tuple(transformers),
        ),
        enterprises=tuple(enterprises),
        providers=tuple(providers),
        users=tuple(_users(enterprises, providers)),
        alliance=extras,
        today=today,
    )


# --------------------------------------------------------------------------- loading

# fmt: off
COUNT_KEYS = (
    "parks", "substations", "transformers", "feeders", "enterprises", "metering_points",
    "providers", "electricians", "chain_accounts", "users",
)
# fmt: on


# Share of an industrial enterprise's typical demand by hour of day (two shifts, a night base).
_DAY_SHAPE = (0.55, 0.52, 0.50, 0.50, 0.52, 0.58, 0.70, 0.82, 0.92, 0.97, 1.00, 0.98,
              0.90, 0.95, 1.00, 0.99, 0.96, 0.92, 0.85, 0.78, 0.72, 0.66, 0.61, 0.57)


def demand_profile(code: str, contracted_kva: Decimal, periods: int) -> list[Decimal]:
    """A standing expected-demand profile, as if taken from recent metered demand.

    Deterministic per enterprise code: peak demand is 55–85% of the contracted capacity.
    """
    peak = Decimal(str(round(random.Random(f"demand:{code}").uniform(0.55, 0.85), 3)))
    per_hour = periods // 24
    return [(contracted_kva * peak * Decimal(str(_DAY_SHAPE[p // per_hour])))
            .quantize(Decimal("0.1")) for p in range(periods)]


def load_demo_park(
    session: Session, keybox: KeyBox, demo: DemoPark, progress: Progress | None = None
) -> dict[str, int]:
    """Store ``demo`` in the session's database and return how many rows of each kind it added.

    Does nothing if a park with the demo's code exists (``already_loaded`` is then 1).
    ``progress(step, n)`` is told after each enterprise, provider and user, so the ``n`` add
    up to ``len(demo.enterprises) + len(demo.providers) + len(demo.users)``. Flushes but does
    not commit: the caller's unit of work does.
    """
    step = progress or (lambda _step, _n: None)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    if session.scalar(select(Park.id).where(Park.code == demo.code)) is not None:
        log.info("demo park %s is already in the database; nothing loaded", demo.code)
        return {**counts, "already_loaded": 1}

    park = Park(
        code=demo.code,
        name=demo.name,
        timezone=demo.timezone,
        gate_closure_time=demo.gate_closure_time,
        period_minutes=demo.period_minutes,
    )
    substation = Substation(
        park=park,
        code=demo.substation.code,
        name=demo.substation.name,
        voltage_kv=demo.substation.voltage_kv,
    )
    session.add_all([park, substation])
    counts["parks"] = counts["substations"] = 1
    feeders: dict[str, Feeder] = {}
    for t in demo.transformers:
        transformer = Transformer(
            substation=substation,
            code=t.code,
            name=t.name,
            rated_kva=t.rated_kva,
            max_load_rate=t.max_load_rate,
        )
        session.add(transformer)
        counts["transformers"] += 1
        for f in t.feeders:
            feeders[f.code] = Feeder(
                transformer=transformer,
                code=f.code,
                name=f.name,
                thermal_limit_kva=f.thermal_limit_kva,
            )
            session.add(feeders[f.code])
            counts["feeders"] += 1
    session.flush()
    step("topology", 0)

    operator_exists = session.scalar(
        select(ChainAccount.id).where(ChainAccount.purpose == AccountPurpose.OPERATOR)
    )
    if operator_exists is None:
        new_chain_account(session, keybox, AccountPurpose.OPERATOR)
        counts["chain_accounts"] += 1

    enterprises: dict[str, Enterprise] = {}
    for e in demo.enterprises:
        enterprise = Enterprise(
            park=park,
            feeder=feeders[e.feeder_code],
            code=e.code,
            name=e.name,
            contracted_kva=e.contracted_kva,
        )
        session.add(enterprise)
        for m in e.metering_points:
            session.add(
                MeteringPoint(
                    enterprise=enterprise, code=m.code, name=m.name, multiplier=m.multiplier
                )
            )
            counts["metering_points"] += 1
        new_chain_account(session, keybox, AccountPurpose.ENTERPRISE, enterprise=enterprise)
        counts["chain_accounts"] += 1
        enterprises[e.code] = enterprise
        counts["enterprises"] += 1
        step("enterprises", 1)
    session.flush()
    for code, enterprise in enterprises.items():
        for period, kva in enumerate(demand_profile(code, enterprise.contracted_kva,
                                                    park.periods_per_day)):
            session.add(DemandProfile(enterprise_id=enterprise.id, delivery_day=None,
                                      period_index=period, demand_kva=kva, source="metered"))

    providers: dict[str, Provider] = {}
    for p in demo.providers:
        provider = _store_provider(session, p, demo.today)
        counts["electricians"] += len(p.electricians)
        providers[p.code] = provider
        counts["providers"] += 1
        step("providers", 1)
    session.flush()
    for provider in providers.values():
        alliance_service.refresh_provider(provider, demo.today)
    session.flush()

    for u in demo.users:
        if session.scalar(select(User.id).where(User.username == u.username)) is not None:
            # Someone made this login by hand before loading the demo: keep theirs.
            log.info("user %s exists already; demo login not created", u.username)
        else:
            user = User(
                username=u.username,
                display_name=u.display_name,
                role=u.role,
                enterprise=enterprises[u.enterprise_code] if u.enterprise_code else None,
                provider=providers[u.provider_code] if u.provider_code else None,
                locale=u.locale,
            )
            user.set_password(u.password)
            session.add(user)
            counts["users"] += 1
        step("users", 1)
    session.flush()
    log.info("demo park %s loaded: %s", demo.code, counts)
    return {**counts, "already_loaded": 0}


def _store_provider(session: Session, p: DemoProvider, today: date) -> Provider:
    # Members applied a year ago and were admitted a week later; applicants applied today.
    applied = datetime.combine(today - timedelta(days=365 if p.status == ProviderStatus.APPROVED
                                                 else 0), time(2, 0), UTC)
    provider = Provider(
        code=p.code,
        name=p.name,
        alliance=p.alliance,
        licence_number=p.licence_number,
        licence_level=p.licence_level,
        licence_issued=p.licence_issued,
        licence_expiry=p.licence_expiry,
        status=p.status,
        applied_at=applied,
        decided_at=applied + timedelta(days=7) if p.status != ProviderStatus.APPLIED else None,
        decision_note=None,
        created_at=applied,
    )
    session.add(provider)
    for el in p.electricians:
        electrician = Electrician(
            provider=provider,
            code=el.code,
            name=el.name,
            skills=",".join(el.skills),
            home_lat=el.home_lat,
            home_lon=el.home_lon,
            shift_start=el.shift_start,
            shift_end=el.shift_end,
            weekdays=sum(1 << (d - 1) for d in el.weekdays),
            active=True,
            created_at=applied,
        )
        for c in el.certificates:
            electrician.certificates.append(
                Certificate(type=c.type, number=c.number, expires=c.expires))
        session.add(electrician)
    return provider


def site_of(enterprise_code: str) -> tuple[Decimal, Decimal]:
    """Where an enterprise's substation room sits in the demo park (deterministic)."""
    rng = random.Random(f"site:{enterprise_code}")
    return (Decimal(PARK_LAT_MICRO + rng.randint(-25_000, 25_000)).scaleb(-6),
            Decimal(PARK_LON_MICRO + rng.randint(-30_000, 30_000)).scaleb(-6))


def demo_image(text: str, *, signature: bool = False) -> bytes:
    """A small PNG standing in for a site photo or a customer's signature (deterministic)."""
    from io import BytesIO

    from PIL import Image, ImageDraw

    size = (240, 80) if signature else (320, 240)
    image = Image.new("RGB", size, "white" if signature else (70, 110, 150))
    draw = ImageDraw.Draw(image)
    if signature:
        rng = random.Random(f"signature:{text}")
        points = [(20 + 20 * i, 40 + rng.randint(-25, 25)) for i in range(11)]
        draw.line(points, fill="black", width=3)
    else:
        draw.rectangle((20, 20, size[0] - 20, size[1] - 20), outline="white", width=3)
        draw.text((30, 30), text, fill="white")
    buffer = BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


ALLIANCE_COUNT_KEYS = ("providers", "electricians", "jobs", "attachments", "sites",
                       "contracts")


def load_demo_alliance(session: Session, storage, demo: DemoPark,
                       now: datetime | None = None) -> dict[str, int]:
    """Store the demo's alliance extras: the member whose licence runs out soon, the applicant
    one valid electrician short, and jobs in different stages raised up to two days before
    `now`, taken through the lifecycle by the same code the platform runs; every enterprise's
    site position and the butler members' custody O&M contracts. Photos and signatures go to
    `storage`. Does nothing if the extras are there already. Flushes, does not commit.
    """
    from parkgrid.services import jobs as job_service

    now = now or datetime.now(UTC)
    counts = dict.fromkeys(ALLIANCE_COUNT_KEYS, 0)
    extras = demo.alliance
    if session.scalar(select(Provider.id).where(Provider.code == extras.providers[0].code)):
        return {**counts, "already_loaded": 1}
    for p in extras.providers:
        provider = _store_provider(session, p, demo.today)
        counts["providers"] += 1
        counts["electricians"] += len(p.electricians)
        session.flush()
        alliance_service.refresh_provider(provider, demo.today)
    session.flush()

    enterprises = {e.code: e for e in session.scalars(select(Enterprise))}
    for code, enterprise in enterprises.items():
        if enterprise.site_lat is None:  # where alarm and O&M jobs send electricians
            enterprise.site_lat, enterprise.site_lon = site_of(code)
            counts["sites"] += 1
    for spec in extras.jobs:
        counts["jobs"] += 1
        counts["attachments"] += _demo_job(session, storage, job_service, spec, enterprises,
                                           now)
    for contract in extras.contracts:
        _demo_contract(session, contract, now)
        counts["contracts"] += 1
    session.flush()
    return {**counts, "already_loaded": 0}


def _demo_contract(session: Session, spec: DemoContract, now: datetime) -> None:
    """Enter a demo contract through the same checks the platform applies."""
    from parkgrid.services import om as om_service

    om_service.add_contract(session, om_service.ContractInput(
        code=spec.code, provider_code=spec.provider_code,
        enterprise_code=spec.enterprise_code, frequency=spec.frequency,
        window_start=spec.window_start, window_end=spec.window_end,
        service_minutes=spec.service_minutes, skills=spec.skills, starts_on=spec.starts_on,
        items=[om_service.ItemInput(i.name, i.equipment_kind, i.lat, i.lon)
               for i in spec.items]), at=now)


def _demo_job(session: Session, storage, job_service, spec: DemoJob,
              enterprises: dict[str, Enterprise], now: datetime) -> int:
    """Raise one demo job and take it to its stage; returns the attachments stored."""
    from alliance import lifecycle as core
    from parkgrid.storage import PHOTO_FORMATS, SIGNATURE_FORMATS, check_image

    lat, lon = site_of(spec.enterprise_code)
    created = now - spec.age
    provider = None
    if spec.provider_code:
        provider = session.scalar(select(Provider).where(Provider.code == spec.provider_code))
    job, _ = job_service.create_job(
        session, enterprise=enterprises[spec.enterprise_code], kind=spec.kind,
        title=spec.title, lat=lat, lon=lon, urgent=spec.urgent, at=created,
        description=spec.description, skills=spec.skills, provider=provider)
    if spec.status == "new":
        return 0
    if spec.status == "cancelled":
        job_service.apply_event(session, None, job, core.Cancel(
            "system", created + timedelta(minutes=20), "客户自行排除故障，取消报修"))
        return 0
    # Steps spread over the time since the job was raised, at most six minutes apart.
    step = min(spec.age / 10, timedelta(minutes=6))
    candidates = alliance_service.offerable_electricians(session, job, created + step)
    if not candidates:
        log.warning("demo job %s: nobody offerable; left awaiting dispatch", job.code)
        return 0
    who = str(candidates[0].electrician_id)
    # The open offer of an "offered" job runs a while past loading time.
    expiry = now + timedelta(minutes=10) if spec.status == "offered" else None
    plan = [
        ("offered", lambda t: core.Offer(who, t, expiry or t + timedelta(minutes=10))),
        ("accepted", lambda t: core.Accept(who, t)),
        ("en_route", lambda t: core.StartTravel(who, t)),
        ("on_site", lambda t: core.CheckIn(who, t)),
        ("working", lambda t: core.StartWork(who, t)),
        ("in_progress", lambda t: core.AttachPhoto(t)),
        ("awaiting_sign_off", lambda t: core.RequestSignOff(who, t)),
        ("closed", lambda t: core.SignOff("system", t, signature=True)),
    ]
    stored = 0
    for number, (stage, event) in enumerate(plan, start=1):
        row = job_service.apply_event(session, None, job, event(created + step * number))
        if stage == "in_progress":
            image = check_image(demo_image(job.code), field="photo", formats=PHOTO_FORMATS)
            job_service.store_attachment(session, storage, job, row, image, "photo", None)
            stored += 1
        elif stage == "closed":
            image = check_image(demo_image(job.code, signature=True), field="signature",
                                formats=SIGNATURE_FORMATS)
            job.signer_name = "现场负责人"
            job_service.store_attachment(session, storage, job, row, image, "signature", None)
            stored += 1
        if stage == spec.status:
            break
    return stored


def sample_readings(session: Session, park: Park, day: date, seed: int = DEMO_SEED, *,
                    faults: bool = True) -> bytes:
    """A day of 15-minute readings for every metering point of the park, as the documented
    CSV, with a few enterprises drawing beyond their contracted capacity in the afternoon
    peak and, with `faults`, the faults real files have: a short gap, a long gap, a repeated
    line.

    Deterministic per park, day and seed; values follow each enterprise's standing profile.
    """
    from zoneinfo import ZoneInfo

    rng = random.Random(f"readings:{seed}:{day.isoformat()}")
    zone = ZoneInfo(park.timezone)
    start = datetime.combine(day, time(0), zone)
    enterprises = session.scalars(select(Enterprise).where(Enterprise.park_id == park.id)
                                  .order_by(Enterprise.code)).all()
    over_users = {e.code for e in rng.sample(enterprises, k=min(3, len(enterprises)))}
    lines = ["point,start,kw"]
    first_point = faults
    for enterprise in enterprises:
        points = sorted(enterprise.metering_points, key=lambda p: p.code)
        if not points:
            continue
        hourly = demand_profile(enterprise.code, Decimal(enterprise.contracted_kva), 24)
        for number, point in enumerate(points):
            for quarter in range(96):
                kw = hourly[quarter // 4] / len(points)
                if enterprise.code in over_users and 56 <= quarter < 64:  # 14:00–16:00
                    kw = Decimal(enterprise.contracted_kva) * Decimal("1.15") / len(points)
                kw *= Decimal(str(round(rng.uniform(0.96, 1.04), 3)))
                if first_point and number == 0 and (quarter in (20, 21) or 40 <= quarter < 48):
                    continue  # a 30-minute gap (interpolated) and a 2-hour one (like days)
                moment = (start + timedelta(minutes=15 * quarter)).isoformat()
                line = f"{point.code},{moment},{kw.quantize(Decimal('0.001'))}"
                lines.append(line)
                if first_point and number == 0 and quarter == 60:
                    lines.append(line)  # the same reading delivered twice
            first_point = False
    return ("\n".join(lines) + "\n").encode()
