"""Alliance pages for providers and enterprises: the provider's job board with every step of
a job, an enterprise's repair requests, and one job's page (clock, timeline, photos, the
customer's drawn sign-off). Each action calls one `services.jobs` function; the rules live
there, and a refusal is shown in the reader's language with nothing changed."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, MultipleFileField
from sqlalchemy import select
from wtforms import (
    BooleanField,
    Field,
    HiddenField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from alliance import lifecycle as core
from alliance.membership import LOW_VOLTAGE, SKILL_CERTIFICATES

from ..models import AttachmentKind, Electrician, Job, JobEventKind, Role
from ..services import calendar
from ..services import jobs as job_service
from ..services.errors import N_, ServiceError, ValidationFailed
from ..storage import UploadTooLarge, read_limited
from .alliance_api import dispatch_soon
from .labels import JOB_EVENT_LABELS, JOB_STATUS_LABELS, SKILL_LABELS
from .security import roles

bp = Blueprint("alliance_pages", __name__, url_prefix="/alliance")

EVERYONE = Role.ALL
OFFERED = core.JobStatus.OFFERED.value
AWAITING_SIGN_OFF = core.JobStatus.AWAITING_SIGN_OFF.value
TERMINAL = frozenset(s.value for s in core.TERMINAL_STATUSES)
# A provider's jobs under way, in the order of their steps.
UNDERWAY = tuple(s.value for s in (core.JobStatus.ACCEPTED, core.JobStatus.EN_ROUTE,
                                   core.JobStatus.ON_SITE, core.JobStatus.IN_PROGRESS,
                                   core.JobStatus.AWAITING_SIGN_OFF))
RECENT_CLOSED = 10
SIGNATURE_PREFIX = "data:image/png;base64,"
# The skill codes the core knows, the everyday ones (as labelled) first.
SKILL_CHOICES = ([code for code in SKILL_LABELS if code in SKILL_CERTIFICATES]
                 + sorted(set(SKILL_CERTIFICATES) - set(SKILL_LABELS)))
# Events whose electrician the customer is not shown (offers to people who did not take it).
_OFFER_EVENTS = (JobEventKind.OFFER, JobEventKind.DECLINE, JobEventKind.OFFER_EXPIRED)


def _platform():
    return current_app.extensions["parkgrid"]


# --------------------------------------------------------------------------- forms


class StepForm(FlaskForm):
    """A step that needs nothing but the job (accept, set off, start work, ask for sign-off);
    `back` says which page the button was on."""

    back = HiddenField()


class DeclineForm(StepForm):
    reason = TextAreaField(_l("Reason (optional)"), validators=[Length(max=1000)])


class CheckInForm(StepForm):
    lat = StringField(_l("Latitude (optional)"))
    lon = StringField(_l("Longitude (optional)"))


class PhotoForm(StepForm):
    photo = FileField(_l("Photo of the work"),
                      validators=[FileRequired(_l("Choose a photo to upload."))])


class CannotCompleteForm(StepForm):
    reason = TextAreaField(_l("Why the work cannot be finished"),
                           validators=[DataRequired(_l("Give a reason.")), Length(max=1000)])
    escalate = BooleanField(_l("Hand it to the dispatch desk (nobody else can do it)"))


class CancelForm(FlaskForm):
    reason = TextAreaField(_l("Why you call the job off"),
                           validators=[DataRequired(_l("Give a reason.")), Length(max=1000)])


class SignOffForm(FlaskForm):
    signer_name = StringField(_l("Name of the person signing"))
    # The drawn signature as a PNG data URL, filled in by the signature box's script.
    signature = HiddenField()


class RepairForm(FlaskForm):
    title = StringField(_l("What is wrong"))
    description = TextAreaField(_l("Details (optional)"), validators=[Length(max=4000)])
    urgent = BooleanField(_l("Urgent: an electrician on site within 30 minutes"),
                          default=True)
    lat = StringField(_l("Latitude"))
    lon = StringField(_l("Longitude"))
    skills = SelectMultipleField(
        _l("Work needed"), default=[LOW_VOLTAGE],
        choices=[(code, _l(SKILL_LABELS.get(code, code))) for code in SKILL_CHOICES],
        widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())
    photos = MultipleFileField(_l("Photos (optional)"))


# --------------------------------------------------------------------------- display


@dataclass(frozen=True)
class ClockView:
    """The 30-minute promise as a page shows it: counting down, met or missed."""

    urgent: bool
    seconds: int | None  # left (negative: overdue); at check-in, the margin it came with
    met: bool | None
    running: bool


def clock_of(job: Job, now: datetime) -> ClockView:
    found = job_service.clock(g.db, job, now)
    running = (job.urgent and found.time_left_s is not None and found.sla_met is None
               and job.status not in TERMINAL)
    return ClockView(job.urgent, found.time_left_s, found.sla_met, running)


def offer_seconds(job: Job, now: datetime) -> int | None:
    if job.status != OFFERED or job.offer_expires_at is None:
        return None
    return max(int((job.offer_expires_at - now).total_seconds()), 0)


@bp.app_template_filter("clock_text")
def clock_text(seconds: int | None) -> str:
    """12:05 or 1:02:03 (sign dropped); the same form as the countdown script writes."""
    if seconds is None:
        return ""
    left = abs(int(seconds))
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@bp.app_template_filter("job_status")
def job_status_label(code: str) -> str:
    return gettext(JOB_STATUS_LABELS[code]) if code in JOB_STATUS_LABELS else code


@bp.app_template_filter("job_event")
def job_event_label(code: str) -> str:
    return gettext(JOB_EVENT_LABELS[code]) if code in JOB_EVENT_LABELS else code


@bp.app_template_filter("skill")
def skill_label(code: str) -> str:
    return gettext(SKILL_LABELS[code]) if code in SKILL_LABELS else code


def _row(job: Job, now: datetime) -> dict:
    return {"job": job, "clock": clock_of(job, now), "offer_left": offer_seconds(job, now)}


def _timeline(job: Job) -> list[dict]:
    ids = {e.electrician_id for e in job.events if e.electrician_id is not None}
    names = {row.id: row for row in g.db.scalars(
        select(Electrician).where(Electrician.id.in_(ids)))} if ids else {}
    customer = g.user.role == Role.ENTERPRISE
    rows = []
    for event in job.events:
        data = json.loads(event.data or "{}")
        electrician = names.get(event.electrician_id)
        if customer and event.kind in _OFFER_EVENTS:
            electrician = None
        rows.append({"seq": event.seq, "kind": event.kind, "at": event.at,
                     "actor": event.actor.display_name if event.actor else None,
                     "electrician": electrician, "reason": data.get("reason"),
                     "signer": data.get("signer"),
                     "position": ((data["lat"], data["lon"])
                                  if data.get("lat") and data.get("lon") else None)})
    return rows


# --------------------------------------------------------------------------- errors


def _message(exc: ServiceError) -> str:
    """A refusal in the page's language; a job status it names is shown by its label."""
    params = dict(exc.params)
    if params.get("status") in JOB_STATUS_LABELS:
        params["status"] = job_status_label(params["status"])
    return gettext(exc.message, **params)


def _messages(exc: ServiceError) -> list[str]:
    """A service error in the page's language; input problems one by one."""
    if isinstance(exc, ValidationFailed):
        return [gettext(p.message, **p.params) for p in exc.problems]
    return [_message(exc)]


def _flash_form_errors(form: FlaskForm) -> None:
    for errors in form.errors.values():
        for message in errors:
            flash(str(message))


def _attach(form: FlaskForm, exc: ServiceError, default) -> None:
    """Put each problem under its field (or `default`), translated."""
    if not isinstance(exc, ValidationFailed):
        default.errors.append(_message(exc))
        return
    for problem in exc.problems:
        target = getattr(form, problem.field, None)
        if not isinstance(target, Field):
            target = default
        target.errors.append(gettext(problem.message, **problem.params))


# --------------------------------------------------------------------------- provider


@bp.route("/board")
@roles(Role.PROVIDER)
def board():
    now = calendar.utcnow()
    jobs = job_service.visible_jobs(g.db, g.user)
    offered = sorted((j for j in jobs if j.status == OFFERED),
                     key=lambda j: (j.offer_expires_at, j.id))
    underway = sorted((j for j in jobs if j.status in UNDERWAY),
                      key=lambda j: (not j.urgent, UNDERWAY.index(j.status), j.created_at))
    closed = sorted((j for j in jobs if j.status in TERMINAL),
                    key=lambda j: (j.closed_at or j.last_event_at), reverse=True)[:RECENT_CLOSED]
    return render_template(
        "alliance/board.html", offered=[_row(j, now) for j in offered],
        underway=[_row(j, now) for j in underway], closed=[_row(j, now) for j in closed])


def _back(code: str) -> str:
    if request.form.get("back") == "job":
        return url_for("alliance_pages.job", code=code)
    return url_for("alliance_pages.board") + f"#job-{code}"


def _step(code: str, form: FlaskForm, call, done: str):
    """Validate the form, run one service call, and go back with what happened."""
    if not form.validate_on_submit():
        _flash_form_errors(form)
    else:
        try:
            call(form)
        except UploadTooLarge:
            raise  # refused whole: the 413 page, like a body over MAX_CONTENT_LENGTH
        except ServiceError as exc:
            for message in _messages(exc):
                flash(message)
        else:
            flash(gettext(done, code=code))
    return redirect(_back(code))


@bp.route("/jobs/<code>/accept", methods=["POST"])
@roles(Role.PROVIDER)
def accept(code: str):
    return _step(code, StepForm(), lambda form: job_service.accept(
        _platform(), code, actor_id=g.user.id), N_("You took job %(code)s."))


@bp.route("/jobs/<code>/decline", methods=["POST"])
@roles(Role.PROVIDER)
def decline(code: str):
    def step(form):
        job_service.decline(_platform(), code, actor_id=g.user.id,
                            reason=form.reason.data or "")
        dispatch_soon()

    return _step(code, DeclineForm(), step, N_("You turned job %(code)s down."))


@bp.route("/jobs/<code>/travel", methods=["POST"])
@roles(Role.PROVIDER)
def travel(code: str):
    return _step(code, StepForm(), lambda form: job_service.start_travel(
        _platform(), code, actor_id=g.user.id), N_("On the way to job %(code)s."))


@bp.route("/jobs/<code>/check-in", methods=["POST"])
@roles(Role.PROVIDER)
def check_in(code: str):
    form = CheckInForm()
    lat, lon = (form.lat.data or "").strip(), (form.lon.data or "").strip()
    if bool(lat) != bool(lon):
        flash(gettext("Give both latitude and longitude, or neither."))
        return redirect(_back(code))
    return _step(code, form, lambda _form: job_service.check_in(
        _platform(), code, actor_id=g.user.id, lat=lat or None, lon=lon or None),
        N_("Checked in on site of job %(code)s."))


@bp.route("/jobs/<code>/work", methods=["POST"])
@roles(Role.PROVIDER)
def work(code: str):
    return _step(code, StepForm(), lambda form: job_service.start_work(
        _platform(), code, actor_id=g.user.id), N_("Work on job %(code)s started."))


@bp.route("/jobs/<code>/photos", methods=["POST"])
@roles(Role.PROVIDER)
def photo(code: str):
    def upload(form):
        data = read_limited(form.photo.data.stream, _platform().settings.upload_max_bytes,
                            field="photo")
        job_service.attach_photo(_platform(), code, data, actor_id=g.user.id)

    return _step(code, PhotoForm(), upload, N_("Photo added to job %(code)s."))


@bp.route("/jobs/<code>/sign-off-request", methods=["POST"])
@roles(Role.PROVIDER)
def sign_off_request(code: str):
    return _step(code, StepForm(), lambda form: job_service.request_sign_off(
        _platform(), code, actor_id=g.user.id),
        N_("The customer is asked to sign job %(code)s off."))


@bp.route("/jobs/<code>/cannot-complete", methods=["POST"])
@roles(Role.PROVIDER)
def cannot_complete(code: str):
    form = CannotCompleteForm()
    done = (N_("Job %(code)s is handed to the dispatch desk.") if form.escalate.data
            else N_("Job %(code)s goes back to dispatch."))
    def step(form):
        job_service.cannot_complete(_platform(), code, form.reason.data, actor_id=g.user.id,
                                    escalate=bool(form.escalate.data))
        dispatch_soon()

    return _step(code, form, step, done)


# --------------------------------------------------------------------------- enterprise


@bp.route("/repair", methods=["GET", "POST"])
@roles(Role.ENTERPRISE)
def repair():
    form = RepairForm()
    enterprise = g.user.enterprise
    if request.method == "GET" and enterprise.site_lat is not None:
        form.lat.data, form.lon.data = str(enterprise.site_lat), str(enterprise.site_lon)
    problems: list[str] = []
    if form.validate_on_submit():
        try:
            limit = _platform().settings.upload_max_bytes
            photos = [read_limited(f.stream, limit, field="photos")
                      for f in request.files.getlist(form.photos.name) if f and f.filename]
            data = job_service.RepairRequest(
                lat=form.lat.data or "", lon=form.lon.data or "", title=form.title.data or "",
                description=form.description.data or "", urgent=bool(form.urgent.data),
                skills=form.skills.data or [LOW_VOLTAGE])
            code = job_service.request_repair(_platform(), data, actor_id=g.user.id,
                                              photos=photos)
            dispatch_soon()
        except ValidationFailed as exc:
            for problem in exc.problems:
                target = getattr(form, problem.field, None)
                message = gettext(problem.message, **problem.params)
                if isinstance(target, Field):
                    target.errors.append(message)
                else:
                    problems.append(message)
        except ServiceError as exc:
            problems.extend(_messages(exc))
        else:
            flash(gettext("Repair request %(code)s raised; an electrician is being found.",
                          code=code))
            return redirect(url_for("alliance_pages.job", code=code))
    status = 422 if request.method == "POST" else 200
    return render_template("alliance/repair.html", form=form, problems=problems,
                           enterprise=enterprise), status


@bp.route("/requests")
@roles(Role.ENTERPRISE)
def requests():
    now = calendar.utcnow()
    jobs = job_service.visible_jobs(g.db, g.user)
    ordered = ([j for j in jobs if j.status not in TERMINAL]
               + [j for j in jobs if j.status in TERMINAL])
    return render_template("alliance/requests.html", rows=[_row(j, now) for j in ordered])


# --------------------------------------------------------------------------- one job


def _job_page(job: Job, *, sign_form: SignOffForm | None = None,
              cancel_form: CancelForm | None = None):
    now = calendar.utcnow()
    user = g.user
    owner = user.role == Role.ENTERPRISE  # get_job let only the owner of the job through
    assignee_company = (user.role == Role.PROVIDER and job.electrician is not None
                        and job.electrician.provider_id == user.provider_id)
    return render_template(
        "alliance/job.html", job=job, row=_row(job, now), timeline=_timeline(job),
        photos=[a for a in job.attachments if a.kind == AttachmentKind.PHOTO],
        signatures=[a for a in job.attachments if a.kind == AttachmentKind.SIGNATURE],
        owner=owner, show_steps=assignee_company and job.status not in TERMINAL,
        can_cancel=owner and job.status not in TERMINAL,
        can_sign=owner and job.status == AWAITING_SIGN_OFF,
        sign_form=sign_form or SignOffForm(), cancel_form=cancel_form or CancelForm(),
        show_electrician=job.electrician is not None and (not owner or job.status != OFFERED))


@bp.route("/jobs/<code>")
@roles(*EVERYONE)
def job(code: str):
    return _job_page(job_service.get_job(g.db, g.user, code))


@bp.route("/jobs/<code>/files/<int:attachment_id>")
@roles(*EVERYONE)
def attachment(code: str, attachment_id: int):
    found = job_service.attachment(g.db, g.user, code, attachment_id)
    path = _platform().storage.path(found.storage_key)
    return send_file(path, mimetype=found.content_type, max_age=3600,
                     download_name=f"{code}-{found.id}.{found.content_type.split('/')[1]}")


@bp.route("/jobs/<code>/cancel", methods=["POST"])
@roles(Role.ENTERPRISE)
def cancel(code: str):
    current = job_service.get_job(g.db, g.user, code)  # someone else's job: 404 first
    form = CancelForm()
    if form.validate_on_submit():
        try:
            job_service.cancel(_platform(), code, form.reason.data, actor_id=g.user.id)
        except ServiceError as exc:
            _attach(form, exc, form.reason)
        else:
            flash(gettext("Job %(code)s cancelled.", code=code))
            return redirect(url_for("alliance_pages.job", code=code))
    return _job_page(current, cancel_form=form), 422


def signature_png(text: str, max_bytes: int) -> bytes:
    """The bytes of a drawn signature sent as a PNG data URL, or ValueError with the reason
    shown to the signer. Whether they are a real PNG the service checks."""
    text = (text or "").strip()
    if not text:
        raise ValueError(gettext("Draw your signature in the box before signing off."))
    # Base64 takes four characters for three bytes; a longer text is too large anyway.
    if not text.startswith(SIGNATURE_PREFIX) or len(text) > max_bytes * 4 // 3 + 100:
        raise ValueError(gettext("The signature could not be read; clear the box and draw "
                                 "it again."))
    try:
        return base64.b64decode(text[len(SIGNATURE_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(gettext("The signature could not be read; clear the box and draw "
                                 "it again.")) from None


@bp.route("/jobs/<code>/sign-off", methods=["POST"])
@roles(Role.ENTERPRISE)
def sign_off(code: str):
    current = job_service.get_job(g.db, g.user, code)
    form = SignOffForm()
    if form.validate_on_submit():
        try:
            signature = signature_png(form.signature.data,
                                      _platform().settings.upload_max_bytes)
        except ValueError as exc:
            form.signature.errors.append(str(exc))
        else:
            try:
                job_service.sign_off(_platform(), code, signature, actor_id=g.user.id,
                                     signer_name=form.signer_name.data or "")
            except ServiceError as exc:
                _attach(form, exc, form.signature)
            else:
                flash(gettext("Job %(code)s is signed off and closed. Thank you.", code=code))
                return redirect(url_for("alliance_pages.job", code=code))
    return _job_page(current, sign_form=form), 422
