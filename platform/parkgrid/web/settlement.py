"""Settlement pages: staff import metering files, run and review settlements and resolve
disputes; enterprises read their statements (page, CSV, PDF) and dispute them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from markupsafe import Markup, escape
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired

from .. import tasks
from ..models import Role, SettlementKind, SettlementStatus
from ..services import calendar, metering, statement_pdf
from ..services import settlement as service
from ..services import settlement_view as view
from ..services.errors import N_, ServiceError, ValidationFailed
from .security import roles

bp = Blueprint("settlement", __name__, url_prefix="/settlement")
log = logging.getLogger(__name__)
STAFF = (Role.SETTLEMENT, Role.ADMIN, Role.AUDITOR)
CHUNK = 64 * 1024
UNFINISHED = (SettlementStatus.QUEUED, SettlementStatus.RUNNING)


# --------------------------------------------------------------------------- forms


class ImportForm(FlaskForm):
    file = FileField(_l("Metering file (CSV or NEM12)"),
                     validators=[FileRequired(_l("Choose a file."))])
    file_format = SelectField(_l("Format"), choices=[
        ("", _l("recognise it")), ("csv", "CSV"), ("nem12", "NEM12")], default="")
    correction = BooleanField(_l("This file corrects data already held"))
    reason = StringField(_l("Reason for the correction"))


class RunForm(FlaskForm):
    kind = SelectField(_l("Run type"), choices=[
        (SettlementKind.INITIAL, _l("initial")), (SettlementKind.FINAL, _l("final")),
        (SettlementKind.RERUN, _l("rerun")), (SettlementKind.MONTHLY, _l("monthly"))])
    day = StringField(_l("Day (YYYY-MM-DD)"))
    month = StringField(_l("Month for a monthly run (YYYY-MM)"))
    reason = StringField(_l("Reason (required for a re-run)"))


class DisputeForm(FlaskForm):
    claimed_yuan = StringField(_l("Amount in dispute (yuan)"),
                               validators=[DataRequired(_l("Give the amount."))])
    text = TextAreaField(_l("What is wrong"),
                         validators=[DataRequired(_l("Say what is wrong."))])


class ResolveForm(FlaskForm):
    resolution = TextAreaField(_l("Resolution"), validators=[DataRequired(_l("Give a reason."))])


# --------------------------------------------------------------------------- helpers


@bp.app_template_filter("yuan")
def _yuan_filter(fen: int) -> str:
    return view.yuan(fen)


def _messages(exc: ServiceError) -> list[str]:
    """A service error in the page's language; input problems one by one."""
    if isinstance(exc, ValidationFailed):
        return [gettext(p.message, **p.params) for p in exc.problems]
    return [gettext(exc.message, **exc.params)]


def _flash_error(exc: ServiceError) -> None:
    for message in _messages(exc):
        flash(message)


def _flash_form_errors(form: FlaskForm) -> None:
    for errors in form.errors.values():
        for message in errors:
            flash(str(message))


def _chunks(stream) -> Iterator[bytes]:
    """An upload read in blocks, never whole."""
    while True:
        block = stream.read(CHUNK)
        if not block:
            return
        yield block


def queue_run(run_id: int) -> ServiceError | None:
    """Queue the task that computes and publishes a run.

    With tasks in-process the run is settled before this returns; a refusal (a final run
    with missing intervals) is recorded on the run and returned. With a broker down the run
    stays queued and the periodic sweep sends it again.
    """
    try:
        tasks.settle_run.delay(run_id)
    except ServiceError as exc:
        return exc
    except Exception:
        log.exception("could not queue settlement run %s", run_id)
    return None


def parse_month(text: str) -> date | None:
    """The first day of a month written YYYY-MM, or None."""
    try:
        year, month = (int(part) for part in text.strip().split("-"))
        return date(year, month, 1)
    except ValueError:
        return None


def bars_svg(bars: list[tuple[str, object]], unit: str) -> Markup:
    """A bar chart of labelled values (counts or yuan), server-side SVG without script."""
    width, height, pad, foot = 640, 220, 36, 46
    top = max([float(v) for _, v in bars] + [1e-9])
    step = (width - 2 * pad) / max(len(bars), 1)
    parts = [f'<svg viewBox="0 0 {width} {height}" class="chart" role="img">',
             f'<line x1="{pad}" y1="{height - foot}" x2="{width - pad}" y2="{height - foot}" '
             'stroke="#999"/>']
    for i, (label, value) in enumerate(bars):
        h = float(value) / top * (height - foot - pad)
        x = pad + i * step
        parts.append(f'<rect x="{x + 2:.1f}" y="{height - foot - h:.1f}" '
                     f'width="{max(step - 4, 1):.1f}" height="{h:.1f}" fill="#0b6bcb">'
                     f'<title>{escape(label)}: {escape(str(value))} {escape(unit)}</title></rect>')
        parts.append(f'<text x="{x + step / 2:.1f}" y="{height - foot - h - 4:.1f}" '
                     f'text-anchor="middle" font-size="10">{escape(str(value))}</text>')
        parts.append(f'<text x="{x + step / 2:.1f}" y="{height - foot + 14:.1f}" '
                     f'text-anchor="end" font-size="10" transform="rotate(-35 '
                     f'{x + step / 2:.1f} {height - foot + 14:.1f})">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


# --------------------------------------------------------------------------- staff


@bp.route("/")
@roles(*STAFF)
def index():
    park = view.default_park(g.db)
    imports = view.recent_imports(g.db, park.id)
    chosen = request.args.get("import_id", type=int)
    shown = None
    if chosen is not None:
        shown = view.get_import(g.db, chosen)
    elif imports:
        shown = imports[0]
    run_form = RunForm()
    if not run_form.day.data:
        yesterday = calendar.park_today(park, calendar.utcnow()) - timedelta(days=1)
        run_form.day.data = yesterday.isoformat()
    return render_template(
        "settlement/index.html", park=park, imports=imports, shown=shown,
        report=view.import_report(shown) if shown is not None else None,
        import_form=ImportForm(), run_form=run_form,
        runs=view.runs_by_period(g.db, park.id))


@bp.route("/imports", methods=["POST"])
@roles(Role.SETTLEMENT)
def upload():
    form = ImportForm()
    if not form.validate_on_submit():
        _flash_form_errors(form)
        return redirect(url_for("settlement.index"))
    reason = None
    if form.correction.data:
        reason = (form.reason.data or "").strip()
        if not reason:
            flash(gettext("Say why the file corrects the data held."))
            return redirect(url_for("settlement.index"))
    park = view.default_park(g.db)
    storage = form.file.data
    platform = current_app.extensions["parkgrid"]
    try:
        record = metering.import_readings(
            platform, park.id, _chunks(storage.stream), filename=storage.filename or "",
            file_format=form.file_format.data or None, user_id=g.user.id,
            substitute_reason=reason)
    except metering.FileRefused as exc:
        _flash_error(exc)
        return redirect(url_for("settlement.index", import_id=exc.import_id) + "#import-report")
    except ServiceError as exc:
        _flash_error(exc)
        return redirect(url_for("settlement.index"))
    tasks.queue(tasks.scan_import, record.id)  # power monitoring: alarms from the new data
    flash(gettext("Imported %(accepted)s of %(readings)s readings into %(days)s point-days.",
                  accepted=record.accepted, readings=record.readings, days=record.point_days))
    return redirect(url_for("settlement.index", import_id=record.id) + "#import-report")


@bp.route("/runs", methods=["POST"])
@roles(Role.SETTLEMENT)
def request_run():
    form = RunForm()
    if not form.validate_on_submit():
        _flash_form_errors(form)
        return redirect(url_for("settlement.index"))
    kind = form.kind.data
    day = month = None
    if kind == SettlementKind.MONTHLY:
        month = parse_month(form.month.data or "")
        if month is None:
            flash(gettext("Give the month as YYYY-MM."))
            return redirect(url_for("settlement.index"))
    else:
        try:
            day = date.fromisoformat((form.day.data or "").strip())
        except ValueError:
            flash(gettext("Give the day as YYYY-MM-DD."))
            return redirect(url_for("settlement.index"))
    park = view.default_park(g.db)
    platform = current_app.extensions["parkgrid"]
    try:
        run_id = service.request_run(platform, park.id, kind, day=day, month=month,
                                     user_id=g.user.id, reason=form.reason.data or "")
    except ServiceError as exc:
        _flash_error(exc)
        return redirect(url_for("settlement.index"))
    refused = queue_run(run_id)
    if refused is not None:
        _flash_error(refused)
    return redirect(url_for("settlement.run", run_id=run_id))


@bp.route("/runs/<int:run_id>")
@roles(*STAFF)
def run(run_id: int):
    item = view.get_run(g.db, run_id)
    distribution = view.deviation_distribution(item)
    unit = "" if distribution["source"] == "assessments" else gettext("yuan")
    return render_template(
        "settlement/run.html", run=item, label=view.period_label(item),
        overview=view.run_overview(item), distribution=distribution,
        counts=view.assessment_counts(item),
        chart=bars_svg(distribution["bars"], unit) if distribution["bars"] else None,
        disputes=view.run_disputes(g.db, item), resolve_form=ResolveForm(),
        refreshing=item.status in UNFINISHED)


@bp.route("/runs/<int:run_id>/progress")
@roles(*STAFF)
def progress(run_id: int):
    item = view.get_run(g.db, run_id)
    return {"id": item.id, "status": item.status, "progress": item.progress,
            "error": item.error}


@bp.route("/runs/<int:run_id>/accounts/<account>")
@roles(*STAFF)
def account_statement(run_id: int, account: str):
    found = view.statement_of(g.db, g.user, run_id, account)
    return render_template(
        "settlement/statement.html", found=found, dispute_form=None, disputes=[], deadline=None,
        window_open=False, assessments=view.account_assessments(found["run"], account))


@bp.route("/runs/<int:run_id>/extract")
@roles(*STAFF)
def extract(run_id: int):
    item = view.get_run(g.db, run_id)
    data = view.extract(g.db, item)
    name = f"settlement-{item.park.code}-{item.period_id}-run-{item.run_number or item.id}.zip"
    return Response(data, mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/disputes/<int:dispute_id>/resolve", methods=["POST"])
@roles(Role.SETTLEMENT)
def resolve(dispute_id: int):
    form = ResolveForm()
    run_id = request.form.get("run_id", type=int)
    back = url_for("settlement.run", run_id=run_id) if run_id else url_for("settlement.index")
    if not form.validate_on_submit():
        flash(gettext("Give a reason."))
        return redirect(back)
    accept = request.form.get("decision") == "accept"
    platform = current_app.extensions["parkgrid"]
    try:
        rerun = service.resolve_dispute(platform, dispute_id, g.user.id, accept=accept,
                                        resolution=form.resolution.data)
    except ServiceError as exc:
        _flash_error(exc)
        return redirect(back)
    if rerun is None:
        flash(gettext("Dispute rejected."))
        return redirect(back)
    flash(gettext("Dispute accepted; the day is settled again."))
    refused = queue_run(rerun)
    if refused is not None:
        _flash_error(refused)
    return redirect(url_for("settlement.run", run_id=rerun))


# --------------------------------------------------------------------------- enterprises


@bp.route("/statements")
@roles(Role.ENTERPRISE)
def statements():
    return render_template("settlement/statements.html",
                           rows=view.enterprise_statements(g.db, g.user.enterprise))


def _statement_page(run_id: int, form: DisputeForm):
    found = view.statement_of(g.db, g.user, run_id)
    run_ = found["run"]
    deadline = view.dispute_deadline(g.db, run_)
    return render_template(
        "settlement/statement.html", found=found, dispute_form=form,
        assessments=view.account_assessments(run_, found["account"]),
        disputes=view.enterprise_disputes(g.db, run_, g.user.enterprise_id), deadline=deadline,
        window_open=deadline is not None and calendar.utcnow() <= deadline)


@bp.route("/statements/<int:run_id>")
@roles(Role.ENTERPRISE)
def statement(run_id: int):
    return _statement_page(run_id, DisputeForm())


@bp.route("/statements/<int:run_id>/dispute", methods=["POST"])
@roles(Role.ENTERPRISE)
def dispute(run_id: int):
    form = DisputeForm()
    view.statement_of(g.db, g.user, run_id)  # 404 before anything else for a foreign run
    if form.validate_on_submit():
        try:
            fen = Decimal(form.claimed_yuan.data.strip().replace(",", "")) * 100
        except InvalidOperation:
            fen = None
        if fen is None or fen != fen.to_integral_value():
            form.claimed_yuan.errors.append(
                gettext("Give the amount in yuan with at most two decimals."))
        else:
            platform = current_app.extensions["parkgrid"]
            try:
                service.raise_dispute(platform, run_id, g.user.id, int(fen), form.text.data)
            except ValidationFailed as exc:
                fields = {"claimed_fen": form.claimed_yuan, "text": form.text}
                for problem in exc.problems:
                    target = fields.get(problem.field, form.text)
                    target.errors.append(gettext(problem.message, **problem.params))
            except ServiceError as exc:
                _flash_error(exc)
            else:
                flash(gettext("Dispute raised; settlement staff will answer it."))
                return redirect(url_for("settlement.statement", run_id=run_id))
    return _statement_page(run_id, form), 422


@bp.route("/statements/<int:run_id>.csv")
@roles(Role.ENTERPRISE)
def statement_csv(run_id: int):
    found = view.statement_of(g.db, g.user, run_id)
    name = f"statement-{found['account']}-{found['run'].period_id}-{found['run'].run_number}.csv"
    return Response(view.statement_csv(found), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/statements/<int:run_id>.pdf")
@roles(Role.ENTERPRISE)
def statement_pdf_download(run_id: int):
    found = view.statement_of(g.db, g.user, run_id)
    enterprise = g.user.enterprise
    generated = calendar.utcnow().astimezone(ZoneInfo(enterprise.park.timezone))
    data = statement_pdf.render_statement(found, park=enterprise.park.name,
                                          account_name=enterprise.name,
                                          generated_at=generated, translate=gettext)
    name = f"statement-{found['account']}-{found['run'].period_id}-{found['run'].run_number}.pdf"
    return Response(data, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# Stored codes the settlement pages show, marked for the catalogue.
LABELS = [
    N_("queued"), N_("running"), N_("computed"), N_("published"), N_("failed"),
    N_("initial"), N_("final"), N_("rerun"), N_("monthly"),
    N_("accepted"), N_("refused"), N_("open"), N_("rejected"),
    N_("full"), N_("difference"),
    N_("capacity"), N_("deviation"), N_("penalty-pool"), N_("congestion-rent"),
    N_("operator"), N_("actual"), N_("estimated"), N_("substituted"), N_("missing"),
    N_("negative"), N_("spike"), N_("over-maximum"), N_("off-grid"), N_("outside-day"),
    N_("duplicate"), N_("conflicting-duplicate"), N_("unknown-point"),
]
