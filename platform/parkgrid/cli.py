"""The staff command-line tool: database, demo park, chain set-up, alliance membership,
outbox, worker and server."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import replace
from urllib.parse import urlsplit

import click

from .config import EMBEDDED, from_env


def _settings():
    try:
        return from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _day(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a day such as 2026-11-24 (or a month "
                                 "such as 2026-11 for a monthly run)") from exc


def _bar(label: str, length: int):
    return click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True)


@click.group()
def main() -> None:
    """ParkGrid staff tool. Settings come from PARKGRID_* environment variables."""


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Bring the database schema up to REVISION."""
    from . import migrate

    settings = _settings()
    migrate.upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Take the database schema down to REVISION ('base' drops everything)."""
    from . import migrate

    migrate.downgrade(_settings().database_url, revision)
    click.echo(f"database at {revision}")


@main.group()
def demo() -> None:
    """The demo park."""


@demo.command("load")
@click.option("--seed", default=None, type=int, help="Generator seed (default: the fixed one).")
def demo_load(seed: int | None) -> None:
    """Generate the demo park from a fixed seed and store it (does nothing if present)."""
    from .wiring import Platform

    click.echo(_load_demo(Platform(_settings()), seed))


@demo.command("readings")
@click.argument("day", metavar="YYYY-MM-DD")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default="-",
              show_default=True, help="Where to write the CSV ('-': standard output).")
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
def demo_readings(day: str, out: str, park_code: str | None) -> None:
    """Write a sample day of 15-minute readings for the park's metering points (CSV)."""

    from .demo import sample_readings
    from .wiring import Platform

    when = _day(day)
    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        data = sample_readings(session, _one_park(session, park_code), when)
    with click.open_file(out, "wb") as handle:
        handle.write(data)


def _load_demo(platform, seed=None) -> str:
    from .demo import generate_demo_park, load_demo_alliance, load_demo_park

    park = generate_demo_park() if seed is None else generate_demo_park(seed)
    total = len(park.enterprises) + len(park.providers) + len(park.users)
    with _bar("loading demo park", total) as bar, platform.unit_of_work() as session:
        counts = load_demo_park(session, platform.keybox, park,
                                progress=lambda _step, n: bar.update(n))
    with platform.unit_of_work() as session:
        extras = load_demo_alliance(session, platform.storage, park)
    return (", ".join(f"{k}: {v}" for k, v in counts.items())
            + "; alliance extras: " + ", ".join(f"{k}: {v}" for k, v in extras.items()))


@main.group()
def chain() -> None:
    """The ledger: contract deployment and account registration."""


@chain.command("setup")
@click.option("--redeploy", is_flag=True, help="Deploy a new contract even if one is recorded.")
@click.option("--fund-from-dev-key", is_flag=True,
              help="Fund accounts from the development node's well-known key (anvil only).")
def chain_setup(redeploy: bool, fund_from_dev_key: bool) -> None:
    """Deploy the market contract if needed and register every enterprise's account."""
    from .wiring import Platform

    click.echo(_setup_chain(Platform(_settings()), redeploy=redeploy,
                            dev_funds=fund_from_dev_key))


def _setup_chain(platform, *, redeploy=False, dev_funds=False) -> str:
    from eth_account import Account

    from .chain import ANVIL_DEFAULT_KEY, ChainError
    from .models import Enterprise
    from .services.chain_setup import setup_chain

    funder = None
    if dev_funds:
        funder = (platform.chain.funded_account() if platform.settings.uses_eth_tester
                  else Account.from_key(ANVIL_DEFAULT_KEY))
    with platform.unit_of_work() as session:
        total = session.query(Enterprise).count() + 1
    try:
        with _bar("setting up the chain", total) as bar:
            counts = setup_chain(platform, funder=funder, redeploy=redeploy,
                                 progress=lambda _step, n: bar.update(n))
    except ChainError as exc:
        raise click.ClickException(str(exc)) from exc
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


@main.group()
def market() -> None:
    """Market rules of a park: gate closure, clearing."""


def _one_park(session, park_code: str | None):
    from sqlalchemy import select

    from .models import Park

    parks = session.scalars(select(Park).where(Park.code == park_code) if park_code
                            else select(Park)).all()
    if len(parks) != 1:
        raise click.ClickException("name the park with --park" if parks else "no such park")
    return parks[0]


@market.command("set-gate")
@click.argument("closure", metavar="HH:MM[:SS]")
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
def market_set_gate(closure: str, park_code: str | None) -> None:
    """Set the park's gate closure time of day (local time, on the day before delivery).

    Refused while the open delivery day has orders: its gate is already on chain.
    """
    from datetime import time

    from sqlalchemy import func, select

    from .models import Enterprise, Order
    from .services import calendar
    from .wiring import Platform

    try:
        new_time = time.fromisoformat(closure)
    except ValueError as exc:
        raise click.BadParameter(f"{closure!r} is not a time of day such as 12:00") from exc
    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        park = _one_park(session, park_code)
        day = calendar.open_delivery_day(park, calendar.utcnow())
        placed = session.scalar(select(func.count()).select_from(Order).join(Enterprise).where(
            Enterprise.park_id == park.id, Order.delivery_day == day))
        if placed:
            raise click.ClickException(
                f"{placed} order(s) are placed for {day} under the current gate; change the "
                "gate once that day is cleared")
        park.gate_closure_time = new_time
        new_day = calendar.open_delivery_day(park, calendar.utcnow())
        click.echo(f"gate closure of {park.code} is now {new_time.isoformat()} "
                   f"({park.timezone}); orders now go to {new_day}, whose gate closes at "
                   f"{calendar.gate_closure(park, new_day).isoformat()}")


@market.command("set-rules")
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
@click.option("--scope", type=click.Choice(["park", "substation", "transformer"]),
              help="Who may trade with whom: the whole park, or only behind one substation "
                   "or one transformer.")
@click.option("--pricing", type=click.Choice(["zonal", "pay_as_bid"]))
@click.option("--ties", type=click.Choice(["pro_rata", "time_priority"]))
def market_set_rules(park_code: str | None, scope: str | None, pricing: str | None,
                     ties: str | None) -> None:
    """Set the park's clearing rules; they apply to the next clearing run."""

    from .wiring import Platform

    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        park = _one_park(session, park_code)
        park.trade_scope = scope or park.trade_scope
        park.pricing_rule = pricing or park.pricing_rule
        park.tie_rule = ties or park.tie_rule
        click.echo(f"{park.code}: scope {park.trade_scope}, pricing {park.pricing_rule}, "
                   f"ties {park.tie_rule}")


@main.group()
def metering() -> None:
    """Metering data: import interval readings (CSV or NEM12)."""


def _file_chunks(handle, bar, size: int = 1 << 20):
    while chunk := handle.read(size):
        bar.update(len(chunk))
        yield chunk


@metering.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
@click.option("--format", "file_format", type=click.Choice(["csv", "nem12"]), default=None,
              help="File format (default: recognised from the file).")
@click.option("--substitute", "reason", default=None,
              help="The file corrects data: flag its values substituted, for this reason.")
def metering_import(path: str, park_code: str | None, file_format: str | None,
                    reason: str | None) -> None:
    """Import a file of 15-minute readings; a malformed file is refused whole."""
    import os

    from .services import metering as metering_service
    from .services.errors import ServiceError
    from .wiring import Platform

    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        park_id = _one_park(session, park_code).id
    with open(path, "rb") as handle, _bar("reading", os.path.getsize(path)) as bar:
        try:
            record = metering_service.import_readings(
                platform, park_id, _file_chunks(handle, bar), filename=os.path.basename(path),
                file_format=file_format, substitute_reason=reason)
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from exc
    report = json.loads(record.report)
    click.echo(f"import {record.id}: {record.readings} readings, {record.accepted} accepted, "
               f"{record.rejected} rejected, {record.point_days} point-days stored")
    for rule, count in report["counts"].items():
        click.echo(f"  {rule}: {count}")


@metering.command("outage")
@click.argument("start", metavar="START")
@click.argument("end", metavar="END")
@click.option("--point", "point_code", default=None,
              help="Metering point code (default: every point of the park).")
@click.option("--reason", required=True, help="What happened (feeder trip, maintenance…).")
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
def metering_outage(start: str, end: str, point_code: str | None, reason: str,
                    park_code: str | None) -> None:
    """Mark a supply outage (ISO 8601 times with offsets): never estimated over."""
    from datetime import datetime

    from .services import metering as metering_service
    from .services.errors import ServiceError
    from .wiring import Platform

    try:
        starts_at, ends_at = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError as exc:
        raise click.BadParameter("give times such as 2026-11-24T08:00:00+08:00") from exc
    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        park_id = _one_park(session, park_code).id
    try:
        outage_id = metering_service.add_outage(platform, park_id, starts_at, ends_at, reason,
                                                point_code=point_code)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"outage {outage_id} marked")


@main.group()
def settlement() -> None:
    """Settlement runs: initial, final, re-runs and the monthly roll-up."""


@settlement.command("run")
@click.argument("period", metavar="YYYY-MM-DD|YYYY-MM")
@click.option("--kind", type=click.Choice(["initial", "final", "rerun", "monthly"]),
              default="initial", show_default=True)
@click.option("--reason", default="", help="Why a re-run is made.")
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
def settlement_run(period: str, kind: str, reason: str, park_code: str | None) -> None:
    """Settle a delivery day (or roll up a month with --kind monthly) and anchor it."""

    from .services import settlement as settlement_service
    from .services.errors import ServiceError
    from .wiring import Platform

    platform = Platform(_settings())
    when = _day(period if kind != "monthly" else f"{period}-01")
    with platform.unit_of_work() as session:
        park_id = _one_park(session, park_code).id
    try:
        run_id = settlement_service.request_run(
            platform, park_id, kind, day=when if kind != "monthly" else None,
            month=when if kind == "monthly" else None, reason=reason)
        with _bar("settling", 100) as bar:
            done = [0]

            def progress(percent: int) -> None:
                bar.update(percent - done[0])
                done[0] = percent

            run = settlement_service.execute(platform, run_id, progress)
            progress(100)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"run {run.run_number} ({run.kind}) of {period} {run.status}: "
               f"{run.line_count} lines, statements root {run.statements_root}")


@settlement.command("exempt")
@click.argument("enterprise")
@click.argument("day", metavar="YYYY-MM-DD")
@click.argument("period", type=int)
@click.option("--reason", required=True, help="Why: a documented outage, force majeure…")
@click.option("--evidence", required=True, help="The evidence (document or log reference).")
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
def settlement_exempt(enterprise: str, day: str, period: int, reason: str, evidence: str,
                      park_code: str | None) -> None:
    """Excuse an enterprise's period from deviation charges, with its evidence."""

    from .services import settlement as settlement_service
    from .services.errors import ServiceError
    from .wiring import Platform

    when = _day(day)
    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        park_id = _one_park(session, park_code).id
    try:
        settlement_service.add_exemption(platform, park_id, enterprise, when, period, reason,
                                         evidence)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{enterprise} {day} period {period} exempt; runs made from now on apply it")


@settlement.command("set-rules")
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
@click.option("--rule", "rule_name", default=None, help="Deviation rule preset name.")
@click.option("--rule-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A rule of your own: JSON in the form of a run's rule document.")
@click.option("--dispute-days", type=int, default=None)
@click.option("--materiality-fen", type=int, default=None)
@click.option("--reference-price", default=None,
              help="Penalty price basis (yuan/kVA·h) in periods without a clearing price.")
def settlement_set_rules(park_code: str | None, rule_name: str | None,
                         rule_file: str | None, dispute_days: int | None,
                         materiality_fen: int | None, reference_price: str | None) -> None:
    """Choose the park's deviation rule, dispute window and materiality threshold."""
    from decimal import Decimal, InvalidOperation

    from .services import settlement as settlement_service
    from .services.errors import ServiceError
    from .wiring import Platform

    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        park_id = _one_park(session, park_code).id
    try:
        price = Decimal(reference_price) if reference_price is not None else None
        rule = None
        if rule_file is not None:
            with open(rule_file, "rb") as handle:
                rule = settlement_service.rule_from_file(handle.read())
        settings = settlement_service.configure(
            platform, park_id, rule_name=rule_name, rule=rule, dispute_days=dispute_days,
            materiality_fen=materiality_fen, reference_price=price)
    except InvalidOperation as exc:
        raise click.BadParameter(f"{reference_price!r} is not a price") from exc
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(", ".join(f"{k} {v}" for k, v in settings.items()))


@main.group()
def alliance() -> None:
    """Alliance membership: applications, decisions, standing, rosters; O&M contracts."""


def _service_call(call):
    """Run a service call, turning its refusal into a message on the command line."""
    from .services.errors import ServiceError

    try:
        return call()
    except ServiceError as exc:
        message = exc.message % exc.params if exc.params else exc.message
        details = getattr(exc, "problems", None)
        if details:
            message = message.split(": ", 1)[0] + ":\n" + "\n".join(
                f"  {p.field}: {p.text()}" for p in details)
        raise click.ClickException(message) from exc


def _staff_user(platform, username: str | None) -> int | None:
    """The id of the admin a decision is recorded under (None: the platform itself)."""
    if not username:
        return None
    from sqlalchemy import select

    from .models import User

    with platform.unit_of_work() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        return user.id


@alliance.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def alliance_apply(path: str) -> None:
    """Enter an application from a JSON file: {code, name, alliance, licence: {number, level,
    issued, expires}, electricians: [{code, name, home_lat, home_lon, skills, certificates:
    [{type, number, expires}], shift_start, shift_end, weekdays}], login: {username,
    password}} (login optional)."""
    from .services import alliance as service
    from .wiring import Platform

    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: not a JSON document ({exc})") from exc
    platform = Platform(_settings())
    code = _service_call(lambda: service.apply(platform,
                                               service.application_from_document(document)))
    click.echo(f"provider {code} applied; decide with 'parkgrid alliance approve {code}'")


def _decision(code: str, approve: bool, note: str, day: str | None, by: str | None) -> None:
    from .services import alliance as service
    from .wiring import Platform

    platform = Platform(_settings())
    actor = _staff_user(platform, by)
    result = _service_call(lambda: service.decide(
        platform, code, actor_id=actor, approve=approve, note=note,
        day=_day(day) if day else None))
    state = "approved" if approve else "rejected"
    click.echo(f"provider {code} {state}; receives offers: "
               f"{'yes' if result.receives_offers else 'no'}")


@alliance.command("approve")
@click.argument("code")
@click.option("--note", default="", help="The decision's note.")
@click.option("--day", default=None, metavar="YYYY-MM-DD",
              help="Assess the rules on this day (default: today in the park).")
@click.option("--by", default=None, help="The admin's username the decision is recorded under.")
def alliance_approve(code: str, note: str, day: str | None, by: str | None) -> None:
    """Admit an applicant (refused, with the reasons, unless it meets the alliance's rules)."""
    _decision(code, True, note, day, by)


@alliance.command("reject")
@click.argument("code")
@click.option("--note", required=True, help="Why the application is rejected.")
@click.option("--by", default=None, help="The admin's username the decision is recorded under.")
def alliance_reject(code: str, note: str, by: str | None) -> None:
    """Reject an application."""
    _decision(code, False, note, None, by)


@alliance.command("standing")
@click.option("--day", default=None, metavar="YYYY-MM-DD",
              help="The day to assess (default: today in the park).")
def alliance_standing(day: str | None) -> None:
    """Recompute every provider's standing (who receives offers) and say why not."""
    from .services import alliance as service
    from .wiring import Platform

    platform = Platform(_settings())
    results = service.refresh_standing(platform, _day(day) if day else None)
    for code, result in results.items():
        why = "; ".join(p.text() for p in service.reason_problems(result.reasons))
        click.echo(f"{code:<8} {'offers' if result.receives_offers else 'no offers':<10} "
                   f"valid electricians: {result.valid_electricians:>3}  {why}".rstrip())


@alliance.command("roster")
@click.argument("code")
@click.option("--day", default=None, metavar="YYYY-MM-DD",
              help="The day validity is judged on (default: today in the park).")
@click.option("--warn-days", default=30, show_default=True,
              help="Flag certificates running out within this many days.")
def alliance_roster(code: str, day: str | None, warn_days: int) -> None:
    """A provider's licence, standing and roster: certificates, skills, shifts, expiries."""
    from .services import alliance as service
    from .wiring import Platform

    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        when = _day(day) if day else service.today(platform.settings.park_timezone)
        provider, standing, rows = _service_call(
            lambda: service.roster(session, None, code, when, warn_days))
        click.echo(f"{provider.code} {provider.name} ({provider.alliance}, {provider.status})")
        click.echo(f"licence {provider.licence_number} level {provider.licence_level}, "
                   f"valid {provider.licence_issued} to {provider.licence_expiry}")
        why = "; ".join(p.text() for p in service.reason_problems(standing.reasons))
        click.echo(f"on {when}: {'meets the rules' if standing.receives_offers else why}; "
                   f"{standing.valid_electricians} valid electricians")
        for row in rows:
            e = row.electrician
            shift = (f"{e.shift_start:%H:%M}-{e.shift_end:%H:%M} "
                     f"{''.join(str(d) for d in e.weekday_list)}" if e.shift_start else "-")
            certificates = ", ".join(f"{c.type} {c.number} until {c.expires}"
                                     for c in e.certificates)
            flags = ("" if e.active else " [inactive]") + ("" if row.valid else " [NOT VALID]")
            soon = "".join(f" [{x['type']} expires in {x['days_left']} d]" for x in row.expiring)
            click.echo(f"  {e.code:<10} {e.name:<6} {shift:<20} "
                       f"skills: {','.join(row.offerable_skills) or '-'}; {certificates}"
                       f"{flags}{soon}")


@alliance.command("expire-offers")
def alliance_expire_offers() -> None:
    """Take back job offers left open past their expiry (their electricians are excluded)."""
    from .services import jobs
    from .wiring import Platform

    expired = jobs.expire_offers(Platform(_settings()))
    click.echo(f"{len(expired)} offer(s) expired" + (f": {', '.join(expired)}" if expired else ""))


@alliance.command("contract-add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--by", default=None, help="The username the contract is recorded under.")
def alliance_contract_add(path: str, by: str | None) -> None:
    """Enter a custody O&M contract from a JSON file: {provider, enterprise, frequency
    (daily|weekly|monthly), job_kind (patrol|inspection), window_start, window_end (HH:MM,
    local), service_minutes, skills, starts_on, ends_on, code, items: [{name,
    equipment_kind, lat, lon}]} (an item without lat/lon stands at the enterprise's site)."""
    from .services import om
    from .wiring import Platform

    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: not a JSON document ({exc})") from exc
    platform = Platform(_settings())
    actor = _staff_user(platform, by)
    code = _service_call(lambda: om.create_contract(
        platform, om.contract_from_document(document), actor))
    click.echo(f"contract {code} entered; create its jobs with "
               "'parkgrid alliance patrols --first YYYY-MM-DD --last YYYY-MM-DD'")


@alliance.command("patrols")
@click.option("--first", required=True, metavar="YYYY-MM-DD", help="The first local day.")
@click.option("--last", required=True, metavar="YYYY-MM-DD", help="The last local day.")
@click.option("--park", "park_code", default=None, help="Park code (default: every park).")
def alliance_patrols(first: str, last: str, park_code: str | None) -> None:
    """Create the patrol and inspection jobs of every active O&M contract due from --first
    to --last: one per item and day; those that exist are skipped."""
    from .services import om
    from .wiring import Platform

    platform = Platform(_settings())
    park_id = None
    if park_code:
        with platform.unit_of_work() as session:
            park_id = _one_park(session, park_code).id
    created = _service_call(lambda: om.generate_patrols(platform, _day(first), _day(last),
                                                        park_id=park_id))
    click.echo(f"{len(created)} job(s) created" + (f": {', '.join(created)}" if created else ""))


@main.group()
def alarms() -> None:
    """Power monitoring: alarms from metering data, and the jobs they open."""


@alarms.command("scan")
@click.option("--day", "day", required=True, metavar="YYYY-MM-DD",
              help="The park's local day to check.")
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
def alarms_scan(day: str, park_code: str | None) -> None:
    """Check a day of metering data: store new alarms and open their jobs (a second check of
    the same data raises nothing new)."""
    from .services import alarms as alarm_service
    from .wiring import Platform

    when = _day(day)
    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        park_id = _one_park(session, park_code).id
    keys = _service_call(lambda: alarm_service.scan_day(platform, park_id, when))
    click.echo(f"{len(keys)} new alarm(s) on {when}")
    for key in keys:
        click.echo(f"  {key}")


@main.group()
def outbox() -> None:
    """Records waiting for the chain."""


@outbox.command("flush")
def outbox_flush() -> None:
    """Queue a chain write for every order still pending (after a node or broker outage)."""
    from . import tasks

    tasks.configure(_settings())
    click.echo(f"queued {tasks.flush_outbox()} pending order(s)")


@main.command()
@click.option("--concurrency", default=2, show_default=True)
@click.option("--loglevel", default="info", show_default=True)
@click.option("--beat", is_flag=True,
              help="Also run the scheduler (gate closure → clearing); one per deployment.")
def worker(concurrency: int, loglevel: str, beat: bool) -> None:
    """Start a Celery worker (service mode: needs PARKGRID_BROKER_URL)."""
    settings = _settings()
    if settings.tasks_eager:
        raise click.ClickException("no broker configured: set PARKGRID_BROKER_URL "
                                   "(embedded mode runs tasks inside the web process)")
    from .chain import ChainResetError
    from .services.chain_setup import check_chain
    from .tasks import celery_app, configure, get_platform

    configure(settings)
    try:
        click.echo(check_chain(get_platform()), err=True)
    except ChainResetError as exc:
        raise click.ClickException(str(exc)) from exc
    argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}",
            "-Q", "parkgrid", "--without-gossip", "--without-mingle"]
    if beat:
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    celery_app.worker_main(argv)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Threads handling requests.")
@click.option("--connection-limit", default=1000, show_default=True,
              type=click.IntRange(1, 100_000),
              help="Open client connections served at once (per process); API clients keep "
                   "theirs open, and past the limit new ones wait until others close.")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes answering on the one port: one process uses at most "
                   "one CPU core (Python's GIL). With more than one, count failed logins in a "
                   "shared store (PARKGRID_RATE_LIMIT_STORAGE).")
def serve(host: str, port: int, threads: int, connection_limit: int, processes: int) -> None:
    """Serve the web app and API only (database, chain and broker must be ready)."""
    from .chain import ChainResetError
    from .services.chain_setup import check_chain
    from .web import create_app
    from .wiring import Platform

    settings = _settings()
    platform = Platform(settings)
    try:
        click.echo(check_chain(platform), err=True)
    except ChainResetError as exc:
        raise click.ClickException(str(exc)) from exc
    if processes == 1:
        _serve(create_app(settings, platform), host, port, threads=threads,
               connection_limit=connection_limit)
        return
    if settings.rate_limit_storage.startswith("memory"):
        click.echo(f"warning: failed logins are counted in each of the {processes} processes "
                   "on its own; set PARKGRID_RATE_LIMIT_STORAGE to a shared store "
                   "(e.g. redis://…) to count them together", err=True)
    # Each process builds its own app after the fork: nothing open here (database
    # connections, the chain node's HTTP connection, the broker's) is shared between them.
    platform.engine.dispose()
    _serve_processes(lambda: create_app(settings), host, port, processes, threads=threads,
                     connection_limit=connection_limit)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--chain-port", default=None, type=int,
              help="Port of the local chain node (default: from PARKGRID_CHAIN_URL, 8545).")
def run(host: str, port: int, chain_port: int | None) -> None:
    """Embedded mode in one command: local chain, database, demo park, web app."""
    from .chain import AnvilNode
    from .demo import DEMO_LOGINS
    from .web import create_app
    from .wiring import Platform

    settings = _settings()
    if settings.mode != EMBEDDED:
        raise click.ClickException("'run' is for embedded mode; use 'serve' and 'worker'")
    if chain_port is not None and not settings.uses_eth_tester:
        settings = replace(settings, chain_url=f"http://127.0.0.1:{chain_port}")
    _stop_on_signals()
    with ExitStack() as stack:
        chain_url = settings.chain_url
        if not settings.uses_eth_tester and urlsplit(chain_url).hostname in ("127.0.0.1",
                                                                               "localhost"):
            chain_port = urlsplit(chain_url).port or 8545
            click.echo(f"starting the local chain node on port {chain_port} "
                       f"(state kept in {settings.data_dir / 'chain-state.json'})", err=True)
            node = AnvilNode(port=chain_port, state_file=settings.data_dir / "chain-state.json",
                             state_interval=2, log_file=settings.data_dir / "anvil.log")
            stack.enter_context(node)
        from . import migrate

        migrate.upgrade(settings.database_url)
        platform = Platform(settings)
        click.echo(_load_demo(platform), err=True)
        click.echo(_setup_chain(platform, dev_funds=True), err=True)
        app = create_app(settings, platform)
        from . import tasks

        click.echo(f"queued {tasks.flush_outbox()} pending order(s)", err=True)
        _start_beat_watch()
        click.echo("")
        click.echo(f"ParkGrid is running: open http://{host}:{port}/")
        click.echo(f"API docs:            http://{host}:{port}/api/docs")
        click.echo("Demo logins (role, username, password):")
        for role, username, password in DEMO_LOGINS:
            click.echo(f"  {role:<11} {username:<12} {password}")
        click.echo("Stop with Ctrl+C; the database and the chain are kept in "
                   f"{settings.data_dir}.")
        _serve(app, host, port)


def _start_beat_watch(interval_s: float = 5.0) -> None:
    """Embedded mode has no scheduler process: a thread runs the beat schedule's tasks
    (closing gates, finishing settlement runs left unanchored, dispatch sweeps and plans),
    each at its own interval."""
    import logging
    import threading
    import time

    from .tasks import celery_app

    scheduled = [(celery_app.tasks[entry["task"]], float(entry["schedule"]),
                  entry.get("kwargs", {})) for entry in celery_app.conf.beat_schedule.values()]
    last_run: dict[str, float] = {}

    def watch():
        while True:
            for task, every_s, kwargs in scheduled:
                if time.monotonic() - last_run.get(task.name, -every_s) < every_s:
                    continue
                last_run[task.name] = time.monotonic()
                try:
                    task(**kwargs)
                except Exception:  # a failed round is logged and tried again next round
                    logging.getLogger(__name__).exception("scheduled task %s", task.name)
            time.sleep(interval_s)

    threading.Thread(target=watch, name="beat-watch", daemon=True).start()


def _stop_on_signals() -> None:
    """Ctrl+C and SIGTERM stop the run command cleanly, so it stops its chain node (which
    writes its state file) — even when started from a shell that ignores interrupts for
    background jobs, where the process would inherit SIGINT ignored."""
    import signal

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _serve(app, host: str, port: int, *, threads: int = 8,
           connection_limit: int | None = None) -> None:
    """A production WSGI server (waitress), in embedded and service mode alike."""
    from waitress import serve as waitress_serve

    waitress_serve(app, host=host, port=port, **_waitress_options(threads, connection_limit))


def _waitress_options(threads: int, connection_limit: int | None) -> dict:
    options = {"threads": threads, "ident": "parkgrid"}
    if connection_limit is not None:
        # poll() rather than select(), which cannot watch more than 1024 sockets.
        options.update(connection_limit=connection_limit, asyncore_use_poll=True)
    return options


def _serve_processes(make_app, host: str, port: int, processes: int, *, threads: int = 8,
                     connection_limit: int | None = None) -> None:
    """`processes` waitress servers on one port, each in a process of its own with its own
    app (`make_app()`, called after the fork). Each has a listening socket of its own on the
    port (SO_REUSEPORT), so the kernel spreads new connections evenly among them (on one
    shared socket, the process that wakes first takes most of them); where the option is
    missing they share one socket. This process only waits: when one server process ends,
    or this one is told to stop (SIGTERM, Ctrl+C), it stops the others and returns."""
    import os
    import signal
    import socket

    from waitress import serve as waitress_serve

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]
    # First a plain socket: it fails on a port already in use (even by servers that share
    # it with SO_REUSEPORT, which this one is not allowed to join), and picks port 0's port.
    with socket.create_server((host, port), family=family) as probe:
        port = probe.getsockname()[1]
    reuse_port = hasattr(socket, "SO_REUSEPORT")
    sockets = [socket.create_server((host, port), family=family, backlog=1024,
                                    reuse_port=reuse_port)
               for _ in range(processes if reuse_port else 1)]
    options = _waitress_options(threads, connection_limit)
    children: list[int] = []

    def stop(_signum, _frame):
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        for number in range(processes):
            pid = os.fork()
            if pid == 0:  # a server process: it never returns into the caller's code
                code = 1
                try:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    own = sockets[number % len(sockets)]
                    for other in sockets:
                        if other is not own:
                            other.close()
                    waitress_serve(make_app(), sockets=[own], **options)
                    code = 0
                except BaseException:  # reported, then the process ends
                    import traceback

                    traceback.print_exc()
                finally:
                    os._exit(code)
            children.append(pid)
        click.echo(f"{processes} server processes on http://{host}:{port}/ "
                   f"(pids {', '.join(map(str, children))})", err=True)
        pid, status = os.wait()
        children.remove(pid)
        raise click.ClickException(f"server process {pid} ended (wait status {status}); "
                                   "the others were stopped")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for sock in sockets:
            sock.close()


def _add_commands() -> None:
    from .audit_cli import audit
    from .cli_audit import audit_commands

    main.add_command(audit)
    audit_commands(main)  # every staff action from here goes to the audit log


_add_commands()

if __name__ == "__main__":
    main()
