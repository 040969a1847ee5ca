"""The alliance part of the HTTP API: provider applications and decisions, rosters and
positions, enterprise repair requests, job tracking and every step of a job's life."""

from __future__ import annotations

import json
from datetime import timedelta

from flask import current_app, g, request, send_file
from flask_babel import gettext
from flask_smorest import Blueprint
from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

from .. import tasks
from ..models import Alliance, Electrician, Role
from ..services import alliance as alliance_service
from ..services import jobs as job_service
from ..services.calendar import utcnow
from ..services.errors import N_, FieldProblem, Forbidden, NotFound, ValidationFailed
from ..storage import read_limited
from .security import MAX_ROW_ID, public, roles

BEARER = [{"bearerAuth": []}]
STAFF = (Role.ADMIN, Role.SETTLEMENT, Role.AUDITOR)
DISPATCH = (Role.ADMIN, Role.SETTLEMENT)
EVERYONE = (Role.ENTERPRISE, Role.PROVIDER, *STAFF)
TIME_OF_DAY = validate.Regexp(r"^\d{2}:\d{2}(:\d{2})?$", error="Give a time of day as HH:MM.")
ROW_ID = validate.Range(1, MAX_ROW_ID)


def _platform():
    return current_app.extensions["parkgrid"]


def dispatch_soon() -> None:
    """After a change that leaves an urgent job waiting (a new request, a decline, a no-show,
    "cannot complete"), run an urgent dispatch round now rather than at the next sweep."""
    if _platform().settings.auto_dispatch:
        tasks.queue(tasks.dispatch_urgent)


# --------------------------------------------------------------------------- schemas


class CertificateSchema(Schema):
    type = fields.String(required=True, metadata={
        "description": "low_voltage | high_voltage | explosion_proof | electrical_testing"})
    number = fields.String(required=True, validate=validate.Length(1, 64))
    expires = fields.Date(required=True)


class ElectricianSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(1, 32))
    name = fields.String(required=True, validate=validate.Length(1, 64))
    home_lat = fields.Decimal(required=True, metadata={"description": "home base, degrees"})
    home_lon = fields.Decimal(required=True)
    skills = fields.List(fields.String(), load_default=list,
                         metadata={"description": "skill codes, e.g. low_voltage, cable"})
    certificates = fields.List(fields.Nested(CertificateSchema), load_default=list)
    shift_start = fields.String(load_default=None, allow_none=True, validate=TIME_OF_DAY,
                                metadata={"description": "local time (Asia/Shanghai), HH:MM"})
    shift_end = fields.String(load_default=None, allow_none=True, validate=TIME_OF_DAY,
                              metadata={"description": "at or before the start: ends the "
                                                       "next day"})
    weekdays = fields.List(fields.Integer(validate=validate.Range(1, 7)),
                           load_default=lambda: [1, 2, 3, 4, 5, 6, 7],
                           metadata={"description": "ISO weekdays worked, 1 = Monday"})
    active = fields.Boolean(load_default=True)


class LicenceSchema(Schema):
    number = fields.String(required=True, validate=validate.Length(1, 64))
    level = fields.Integer(required=True, metadata={"description": "1 (highest) to 5"})
    issued = fields.Date(load_default=None, allow_none=True)
    expires = fields.Date(required=True)


class LoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(3, 64))
    password = fields.String(required=True, load_only=True, validate=validate.Length(10, 200))
    display_name = fields.String(load_default=None, validate=validate.Length(0, 128))


class ApplicationRequest(Schema):
    code = fields.String(required=True, validate=validate.Length(1, 32))
    name = fields.String(required=True, validate=validate.Length(1, 128))
    alliance = fields.String(required=True, validate=validate.OneOf(Alliance.ALL))
    licence = fields.Nested(LicenceSchema, required=True)
    electricians = fields.List(fields.Nested(ElectricianSchema), required=True,
                               validate=validate.Length(1, 1000))
    login = fields.Nested(LoginSchema, required=True,
                          metadata={"description": "the provider login created with it"})


def _reasons(provider):
    reasons = json.loads(provider.standing_reasons or "[]")
    return [{"code": r["code"], "figures": r["figures"],
             "message": gettext(p.message, **p.params)}
            for r, p in zip(reasons, alliance_service.reason_problems(reasons), strict=True)]


class ProviderResponse(Schema):
    code = fields.String()
    name = fields.String()
    alliance = fields.String()
    status = fields.String(metadata={"description": "applied | approved | rejected | "
                                                    "suspended"})
    licence = fields.Function(lambda p: {
        "number": p.licence_number, "level": p.licence_level,
        "issued": p.licence_issued.isoformat() if p.licence_issued else None,
        "expires": p.licence_expiry.isoformat() if p.licence_expiry else None})
    applied_at = fields.DateTime(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    decision_note = fields.String(allow_none=True)
    receives_offers = fields.Boolean()
    standing_checked_on = fields.Date(allow_none=True)
    standing_reasons = fields.Function(_reasons, metadata={
        "description": "why no offers: [{code, figures, message}]"})
    electricians = fields.Function(lambda p: len(p.electricians))


class DecisionRequest(Schema):
    approve = fields.Boolean(required=True)
    note = fields.String(load_default="", validate=validate.Length(0, 2000))
    day = fields.Date(load_default=None, metadata={
        "description": "assess the rules on this day (default: today in the park)"})


class CertificateResponse(Schema):
    id = fields.Integer()
    type = fields.String()
    number = fields.String()
    expires = fields.Date()


class ElectricianResponse(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    provider = fields.Function(lambda e: e.provider.code)
    skills = fields.Function(lambda e: e.skill_list)
    certificates = fields.List(fields.Nested(CertificateResponse))
    shift_start = fields.Function(lambda e: e.shift_start.strftime("%H:%M")
                                  if e.shift_start else None)
    shift_end = fields.Function(lambda e: e.shift_end.strftime("%H:%M") if e.shift_end else None)
    weekdays = fields.Function(lambda e: e.weekday_list)
    home_lat = fields.Decimal(as_string=True, allow_none=True)
    home_lon = fields.Decimal(as_string=True, allow_none=True)
    last_lat = fields.Decimal(as_string=True, allow_none=True)
    last_lon = fields.Decimal(as_string=True, allow_none=True)
    last_seen_at = fields.DateTime(allow_none=True)
    active = fields.Boolean()


class ElectricianChangesRequest(Schema):
    name = fields.String(validate=validate.Length(1, 64))
    home_lat = fields.Decimal()
    home_lon = fields.Decimal()
    skills = fields.List(fields.String())
    shift_start = fields.String(validate=TIME_OF_DAY)
    shift_end = fields.String(validate=TIME_OF_DAY)
    clear_shift = fields.Boolean(load_default=False)
    weekdays = fields.List(fields.Integer(validate=validate.Range(1, 7)))
    active = fields.Boolean()


class PositionRequest(Schema):
    lat = fields.Decimal(required=True)
    lon = fields.Decimal(required=True)
    at = fields.AwareDateTime(load_default=None, metadata={
        "description": "when the position was taken (default: now)"})


class StandingRequest(Schema):
    day = fields.Date(load_default=None)


class StandingResponse(Schema):
    code = fields.String()
    receives_offers = fields.Boolean()
    valid_electricians = fields.Integer()
    reasons = fields.List(fields.Dict())


class RepairForm(Schema):
    title = fields.String(required=True, validate=validate.Length(1, 200))
    description = fields.String(load_default="", validate=validate.Length(0, 4000))
    lat = fields.Decimal(required=True)
    lon = fields.Decimal(required=True)
    urgent = fields.Boolean(load_default=True, metadata={
        "description": "urgent: an electrician on site within 30 minutes"})
    skills = fields.String(load_default="low_voltage",
                           metadata={"description": "comma-separated skill codes"})
    service_minutes = fields.Integer(load_default=60)
    provider = fields.String(load_default=None, metadata={
        "description": "your O&M provider's code (energy-cloud butler); default: the shared "
                       "electricians"})
    photos = fields.List(Upload(), load_default=list,
                         metadata={"description": "JPEG, PNG or WebP photos (optional)"})


class ElectricianRef(Schema):
    electrician_id = fields.Integer(load_default=None, validate=ROW_ID, metadata={
        "description": "which of your electricians (default: the job's)"})


class OfferRequest(Schema):
    electrician_id = fields.Integer(required=True, validate=ROW_ID)
    expires_in_minutes = fields.Integer(load_default=None, validate=validate.Range(1, 240))


class DeclineRequest(ElectricianRef):
    reason = fields.String(load_default="", validate=validate.Length(0, 1000))


class CheckInRequest(ElectricianRef):
    lat = fields.Decimal(load_default=None)
    lon = fields.Decimal(load_default=None)


class ReasonRequest(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 1000))


class CannotCompleteRequest(ElectricianRef):
    reason = fields.String(required=True, validate=validate.Length(1, 1000))
    escalate = fields.Boolean(load_default=False)


class PhotoForm(Schema):
    photo = Upload(required=True, metadata={"description": "JPEG, PNG or WebP"})


class SignOffForm(Schema):
    signer_name = fields.String(load_default="", validate=validate.Length(0, 64))
    # Documented here; the file itself is read from the multipart body.
    signature = Upload(load_default=None, metadata={"description": "PNG of the signature"})


class NoBody(Schema):
    """No fields: the step needs nothing but the job."""


class CandidateResponse(Schema):
    electrician_id = fields.Integer()
    code = fields.String()
    name = fields.String()
    provider_code = fields.String()
    minutes = fields.Float(metadata={"description": "estimated travel minutes"})
    in_time = fields.Boolean(allow_none=True, metadata={
        "description": "urgent jobs: can be on site by the deadline"})


class JobEventResponse(Schema):
    seq = fields.Integer()
    kind = fields.String()
    at = fields.DateTime()
    electrician_id = fields.Integer(allow_none=True)
    data = fields.Function(lambda e: json.loads(e.data))


class AttachmentResponse(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "photo | signature"})
    content_type = fields.String()
    size_bytes = fields.Integer()
    sha256 = fields.String()
    uploaded_at = fields.DateTime()


def _electrician(job):
    e = job.electrician
    if e is None:
        return None
    return {"id": e.id, "code": e.code, "name": e.name, "provider": e.provider.code}


def _clock(job):
    found = job_service.clock(g.db, job, utcnow())
    return {"time_left_s": found.time_left_s, "sla_met": found.sla_met}


class JobResponse(Schema):
    code = fields.String()
    kind = fields.String()
    alliance = fields.String()
    provider = fields.Function(lambda j: j.provider.code if j.provider else None)
    enterprise = fields.Function(lambda j: j.enterprise.code)
    urgent = fields.Boolean()
    title = fields.String()
    description = fields.String()
    lat = fields.Decimal(as_string=True)
    lon = fields.Decimal(as_string=True)
    required_skills = fields.Function(lambda j: j.skill_list)
    status = fields.String(metadata={"description": "new | awaiting_dispatch | offered | "
                                                    "accepted | en_route | on_site | "
                                                    "in_progress | awaiting_sign_off | closed "
                                                    "| cancelled | escalated"})
    electrician = fields.Function(_electrician)
    offered_at = fields.DateTime(allow_none=True)
    offer_expires_at = fields.DateTime(allow_none=True)
    on_site_deadline = fields.DateTime(allow_none=True)
    accepted_at = fields.DateTime(allow_none=True)
    checked_in_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    photos = fields.Integer(metadata={"description": "photos of the work"})
    signer_name = fields.String(allow_none=True)
    last_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    on_site_clock = fields.Function(_clock, metadata={
        "description": "{time_left_s, sla_met}: the 30-minute promise of an urgent job"})
    events = fields.List(fields.Nested(JobEventResponse))
    attachments = fields.List(fields.Nested(AttachmentResponse))


# --------------------------------------------------------------------------- membership


alliance_api = Blueprint("alliance_api", __name__, url_prefix="/api/v1/alliance",
                         description="Alliance membership: applications, decisions, rosters, "
                                     "positions and standing")
jobs_api = Blueprint("jobs_api", __name__, url_prefix="/api/v1/jobs",
                     description="Repair requests and dispatched jobs, from the offer to the "
                                 "customer's sign-off")


def _provider(code):
    return alliance_service.visible_provider(g.db, g.user, code)


@alliance_api.route("/applications", methods=["POST"])
@alliance_api.arguments(ApplicationRequest)
@alliance_api.response(201, ProviderResponse)
@alliance_api.alt_response(422, description="Something was refused (by field); nothing stored")
@public
def apply(body):
    """A company applies to an alliance: licence, electrician roster and the login it will
    use. The park operator then decides; until then it receives no offers."""
    licence, login = body["licence"], body["login"]
    data = alliance_service.ApplicationInput(
        code=body["code"], name=body["name"], alliance=body["alliance"],
        licence_number=licence["number"], licence_level=licence["level"],
        licence_issued=licence["issued"], licence_expires=licence["expires"],
        electricians=[alliance_service.ElectricianInput(
            **{k: v for k, v in e.items() if k != "certificates"},
            certificates=[alliance_service.CertificateInput(**c) for c in e["certificates"]])
            for e in body["electricians"]],
        username=login["username"], password=login["password"],
        display_name=login["display_name"])
    code = alliance_service.apply(_platform(), data)
    return alliance_service.provider_by_code(g.db, code)


@alliance_api.route("/providers", methods=["GET"])
@alliance_api.response(200, ProviderResponse(many=True))
@alliance_api.doc(security=BEARER)
@roles(Role.PROVIDER, *STAFF)
def list_providers():
    """Every provider (staff), or your own company (providers)."""
    return alliance_service.visible_providers(g.db, g.user)


@alliance_api.route("/providers/<code>", methods=["GET"])
@alliance_api.response(200, ProviderResponse)
@alliance_api.doc(security=BEARER)
@roles(Role.PROVIDER, *STAFF)
def get_provider(code):
    """A provider's licence, status and standing (why it receives no offers, if it does not)."""
    return _provider(code)


@alliance_api.route("/providers/<code>/decision", methods=["POST"])
@alliance_api.arguments(DecisionRequest)
@alliance_api.response(200, ProviderResponse)
@alliance_api.alt_response(409, description="Refused with every rule the application fails, "
                                            "or decided already")
@alliance_api.doc(security=BEARER)
@roles(Role.ADMIN)
def decide(body, code):
    """Approve or reject an application (the park operator). Approval is refused unless the
    licence is valid and of level 5 or better and ten electricians hold valid certificates."""
    alliance_service.decide(_platform(), code, actor_id=g.user.id, approve=body["approve"],
                            note=body["note"], day=body["day"])
    return alliance_service.provider_by_code(g.db, code)


@alliance_api.route("/providers/<code>/electricians", methods=["GET"])
@alliance_api.response(200, ElectricianResponse(many=True))
@alliance_api.doc(security=BEARER)
@roles(Role.PROVIDER, *STAFF)
def list_electricians(code):
    """A provider's roster with certificates, skills, shifts and last positions."""
    return _provider(code).electricians


@alliance_api.route("/providers/<code>/electricians", methods=["POST"])
@alliance_api.arguments(ElectricianSchema)
@alliance_api.response(201, ElectricianResponse)
@alliance_api.doc(security=BEARER)
@roles(Role.PROVIDER, Role.ADMIN)
def add_electrician(body, code):
    """Add an electrician to your roster."""
    data = alliance_service.ElectricianInput(
        **{k: v for k, v in body.items() if k != "certificates"},
        certificates=[alliance_service.CertificateInput(**c) for c in body["certificates"]])
    new_id = alliance_service.add_electrician(_platform(), code, data, actor_id=g.user.id)
    return g.db.get(Electrician, new_id)


def _roster_entry(electrician_id):
    row = g.db.get(Electrician, electrician_id)
    if row is None or not alliance_service.may_view(g.user, row.provider):
        raise NotFound(N_("No such electrician."))
    return row


@alliance_api.route("/electricians/<int:electrician_id>", methods=["PATCH"])
@alliance_api.arguments(ElectricianChangesRequest)
@alliance_api.response(200, ElectricianResponse)
@alliance_api.doc(security=BEARER)
@roles(Role.PROVIDER, Role.ADMIN)
def update_electrician(body, electrician_id):
    """Change an electrician's name, home base, skills, shift, weekdays or active flag."""
    alliance_service.update_electrician(_platform(), electrician_id,
                                        alliance_service.ElectricianChanges(**body),
                                        actor_id=g.user.id)
    return _roster_entry(electrician_id)


@alliance_api.route("/electricians/<int:electrician_id>/certificates", methods=["POST"])
@alliance_api.arguments(CertificateSchema)
@alliance_api.response(200, ElectricianResponse)
@alliance_api.doc(security=BEARER)
@roles(Role.PROVIDER, Role.ADMIN)
def put_certificate(body, electrician_id):
    """Add a certificate, or renew one (same type and number: the new expiry date counts)."""
    alliance_service.put_certificate(_platform(), electrician_id,
                                     alliance_service.CertificateInput(**body),
                                     actor_id=g.user.id)
    return _roster_entry(electrician_id)


@alliance_api.route("/certificates/<int:certificate_id>", methods=["DELETE"])
@alliance_api.response(204)
@alliance_api.doc(security=BEARER)
@roles(Role.PROVIDER, Role.ADMIN)
def remove_certificate(certificate_id):
    """Remove a certificate from an electrician."""
    alliance_service.remove_certificate(_platform(), certificate_id, actor_id=g.user.id)


@alliance_api.route("/electricians/<int:electrician_id>/position", methods=["POST"])
@alliance_api.arguments(PositionRequest)
@alliance_api.response(200, ElectricianResponse)
@alliance_api.doc(security=BEARER)
@roles(Role.PROVIDER, Role.ADMIN)
def report_position(body, electrician_id):
    """Report where one of your electricians is (used to estimate travel to jobs)."""
    alliance_service.update_position(_platform(), electrician_id, body["lat"], body["lon"],
                                     actor_id=g.user.id, at=body["at"])
    return _roster_entry(electrician_id)


@alliance_api.route("/standing", methods=["POST"])
@alliance_api.arguments(StandingRequest)
@alliance_api.response(200, StandingResponse(many=True))
@alliance_api.doc(security=BEARER)
@roles(Role.ADMIN)
def refresh_standing(body):
    """Recompute every provider's standing now: an expired licence or fewer than ten valid
    electricians stops its offers at once, with the reasons stored for the provider to see."""
    results = alliance_service.refresh_standing(_platform(), body["day"])
    return [{"code": code, "receives_offers": r.receives_offers,
             "valid_electricians": r.valid_electricians, "reasons": r.reasons}
            for code, r in results.items()]


# --------------------------------------------------------------------------- jobs


def _job(code):
    return job_service.get_job(g.db, g.user, code)


def _upload(name: str, *, many: bool = False):
    limit = _platform().settings.upload_max_bytes
    files = request.files.getlist(name)
    if not many and not files:
        raise ValidationFailed([FieldProblem(name, N_("Attach the file."))])
    return [read_limited(f.stream, limit, field=name) for f in files]


@jobs_api.route("", methods=["POST"])
@jobs_api.arguments(RepairForm, location="form", content_type="multipart/form-data")
@jobs_api.response(201, JobResponse)
@jobs_api.alt_response(422, description="Refused (by field); nothing stored")
@jobs_api.doc(security=BEARER)
@roles(Role.ENTERPRISE)
def request_repair(form):
    """Raise a repair request for your enterprise (multipart form; photos optional). An
    urgent request must see an electrician on site within 30 minutes."""
    photos = _upload("photos", many=True)
    data = job_service.RepairRequest(
        lat=form["lat"], lon=form["lon"], title=form["title"], description=form["description"],
        urgent=form["urgent"], skills=[s for s in form["skills"].split(",") if s.strip()],
        service_minutes=form["service_minutes"], provider_code=form["provider"])
    code = job_service.request_repair(_platform(), data, actor_id=g.user.id, photos=photos)
    dispatch_soon()
    return _job(code)


@jobs_api.route("", methods=["GET"])
@jobs_api.response(200, JobResponse(many=True))
@jobs_api.doc(security=BEARER)
@roles(*EVERYONE)
def list_jobs():
    """Your jobs, newest first: an enterprise's requests, a provider's electricians' and O&M
    jobs, every job for staff."""
    return job_service.visible_jobs(g.db, g.user)


@jobs_api.route("/<code>", methods=["GET"])
@jobs_api.response(200, JobResponse)
@jobs_api.doc(security=BEARER)
@roles(*EVERYONE)
def get_job(code):
    """A job with its electrician, on-site clock, events and attachments."""
    return _job(code)


@jobs_api.route("/<code>/candidates", methods=["GET"])
@jobs_api.response(200, CandidateResponse(many=True))
@jobs_api.doc(security=BEARER)
@roles(Role.PROVIDER, *DISPATCH)
def candidates(code):
    """Electricians who may be offered the job now, nearest first (dispatch desk; a butler
    provider for its own jobs)."""
    job = _job(code)
    if g.user.role == Role.PROVIDER and job.provider_id != g.user.provider_id:
        raise Forbidden(N_("Only the dispatch desk may do this."))
    return alliance_service.offerable_electricians(g.db, job, utcnow())


def _action_route(path: str, schema, allowed: tuple[str, ...], doc: str):
    """Register one job step: JSON body (schema), roles, the job back as response."""

    def register(call):
        def view(body, code):
            call(body, code)
            return _job(code)

        view.__name__ = f"job_{path.replace('-', '_')}"
        view.__doc__ = doc
        view = roles(*allowed)(view)
        view = jobs_api.doc(security=BEARER)(view)
        view = jobs_api.alt_response(409, description="Refused in the job's current state "
                                                      "(a message per reason); nothing "
                                                      "changed")(view)
        view = jobs_api.alt_response(403, description="Not your job")(view)
        view = jobs_api.response(200, JobResponse)(view)
        view = jobs_api.arguments(schema)(view)
        jobs_api.route(f"/<code>/{path}", methods=["POST"])(view)
        return call

    return register


ELECTRICIAN_SIDE = (Role.PROVIDER, *DISPATCH)
CUSTOMER_SIDE = (Role.ENTERPRISE, *DISPATCH)


@_action_route("offer", OfferRequest, (Role.PROVIDER, *DISPATCH),
               "Offer the job to one electrician (dispatch desk; a butler provider its own "
               "jobs). Refused, with the reasons, unless the electrician may be offered it.")
def _offer(body, code):
    at = utcnow()
    expires = (at + timedelta(minutes=body["expires_in_minutes"])
               if body["expires_in_minutes"] else None)
    job_service.offer(_platform(), code, body["electrician_id"], actor_id=g.user.id, at=at,
                      expires_at=expires)


@_action_route("accept", ElectricianRef, ELECTRICIAN_SIDE,
               "Your electrician takes the offered job (until the offer expires).")
def _accept(body, code):
    job_service.accept(_platform(), code, actor_id=g.user.id,
                       electrician_id=body["electrician_id"])


@_action_route("decline", DeclineRequest, ELECTRICIAN_SIDE,
               "Your electrician turns the offer down (and is never offered this job again).")
def _decline(body, code):
    job_service.decline(_platform(), code, actor_id=g.user.id, reason=body["reason"],
                        electrician_id=body["electrician_id"])
    dispatch_soon()


@_action_route("travel", ElectricianRef, ELECTRICIAN_SIDE, "Your electrician sets off.")
def _travel(body, code):
    job_service.start_travel(_platform(), code, actor_id=g.user.id,
                             electrician_id=body["electrician_id"])


@_action_route("check-in", CheckInRequest, ELECTRICIAN_SIDE,
               "Your electrician is on site (stops the 30-minute clock); the position sent is "
               "recorded.")
def _check_in(body, code):
    job_service.check_in(_platform(), code, actor_id=g.user.id,
                         electrician_id=body["electrician_id"], lat=body["lat"],
                         lon=body["lon"])


@_action_route("work", ElectricianRef, ELECTRICIAN_SIDE, "Your electrician starts the work.")
def _work(body, code):
    job_service.start_work(_platform(), code, actor_id=g.user.id,
                           electrician_id=body["electrician_id"])


@_action_route("sign-off-request", ElectricianRef, ELECTRICIAN_SIDE,
               "The work is done: ask the customer to sign it off.")
def _sign_off_request(body, code):
    job_service.request_sign_off(_platform(), code, actor_id=g.user.id,
                                 electrician_id=body["electrician_id"])


@_action_route("cannot-complete", CannotCompleteRequest, ELECTRICIAN_SIDE,
               "On site, your electrician cannot finish: back to dispatch, or escalated.")
def _cannot_complete(body, code):
    job_service.cannot_complete(_platform(), code, body["reason"], actor_id=g.user.id,
                                escalate=body["escalate"],
                                electrician_id=body["electrician_id"])
    dispatch_soon()


@_action_route("no-show", NoBody, DISPATCH,
               "The accepted electrician did not turn up: back to dispatch, excluded.")
def _no_show(body, code):
    job_service.no_show(_platform(), code, actor_id=g.user.id)
    dispatch_soon()


@_action_route("escalate", ReasonRequest, DISPATCH,
               "Hand a job nobody holds to staff and the provider.")
def _escalate(body, code):
    job_service.escalate(_platform(), code, body["reason"], actor_id=g.user.id)


@_action_route("cancel", ReasonRequest, CUSTOMER_SIDE, "Call the job off (the customer or "
                                                       "the dispatch desk).")
def _cancel(body, code):
    job_service.cancel(_platform(), code, body["reason"], actor_id=g.user.id)


@jobs_api.route("/<code>/photos", methods=["POST"])
@jobs_api.arguments(PhotoForm, location="files", content_type="multipart/form-data")
@jobs_api.response(201, JobResponse)
@jobs_api.alt_response(409, description="Not while the job is in this state")
@jobs_api.alt_response(422, description="Not a JPEG, PNG or WebP image, or too large")
@jobs_api.doc(security=BEARER)
@roles(*ELECTRICIAN_SIDE)
def attach_photo(_files, code):
    """A photo of the work (on site, in progress or awaiting sign-off)."""
    (data,) = _upload("photo")
    job_service.attach_photo(_platform(), code, data, actor_id=g.user.id)
    return _job(code)


@jobs_api.route("/<code>/sign-off", methods=["POST"])
@jobs_api.arguments(SignOffForm, location="form", content_type="multipart/form-data")
@jobs_api.response(200, JobResponse)
@jobs_api.alt_response(409, description="No photo of the work yet, or not awaiting sign-off")
@jobs_api.alt_response(422, description="The signature is not a PNG image")
@jobs_api.doc(security=BEARER)
@roles(*CUSTOMER_SIDE)
def sign_off(form, code):
    """The customer signs the finished job off with a PNG of the signature; the job closes
    only with the signature and at least one photo of the work."""
    (signature,) = _upload("signature")
    job_service.sign_off(_platform(), code, signature, actor_id=g.user.id,
                         signer_name=form["signer_name"])
    return _job(code)


@jobs_api.route("/<code>/attachments/<int:attachment_id>", methods=["GET"])
@jobs_api.response(200, description="The image file")
@jobs_api.doc(security=BEARER)
@roles(*EVERYONE)
def get_attachment(code, attachment_id):
    """A photo or signature of a job you may see."""
    found = job_service.attachment(g.db, g.user, code, attachment_id)
    path = _platform().storage.path(found.storage_key)
    return send_file(path, mimetype=found.content_type, max_age=3600,
                     download_name=f"{code}-{found.id}.{found.content_type.split('/')[1]}")


def blueprints():
    return [alliance_api, jobs_api]
