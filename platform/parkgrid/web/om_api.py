"""The custody O&M part of the HTTP API: energy-cloud-butler contracts and the generation of
their planned patrol and inspection jobs."""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from ..models import PatrolFrequency, Role
from ..services import om as om_service
from .security import roles

BEARER = [{"bearerAuth": []}]
DISPATCH = (Role.ADMIN, Role.SETTLEMENT)
READERS = (Role.ENTERPRISE, Role.PROVIDER, Role.ADMIN, Role.SETTLEMENT, Role.AUDITOR)
TIME_OF_DAY = validate.Regexp(r"^\d{2}:\d{2}(:\d{2})?$", error="Give a time of day as HH:MM.")


def _platform():
    return current_app.extensions["parkgrid"]


# --------------------------------------------------------------------------- schemas


class ItemSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 128),
                         metadata={"description": "the equipment, e.g. 1号主变"})
    equipment_kind = fields.String(load_default="", validate=validate.Length(0, 32),
                                   metadata={"description": "e.g. transformer, switchgear"})
    lat = fields.Decimal(load_default=None, allow_none=True, metadata={
        "description": "degrees; leave out lat and lon: at the enterprise's site"})
    lon = fields.Decimal(load_default=None, allow_none=True)


class ContractRequest(Schema):
    provider = fields.String(load_default=None, allow_none=True, metadata={
        "description": "the O&M provider's code (staff); a provider's own company otherwise"})
    enterprise = fields.String(required=True, metadata={"description": "the customer's code"})
    frequency = fields.String(required=True, validate=validate.OneOf(PatrolFrequency.ALL),
                              metadata={"description": "daily | weekly (on the weekday of "
                                                       "starts_on) | monthly (on its day of "
                                                       "the month, or the month's last day)"})
    job_kind = fields.String(load_default="patrol",
                             validate=validate.OneOf(om_service.JOB_KINDS))
    window_start = fields.String(required=True, validate=TIME_OF_DAY, metadata={
        "description": "local time (the park's zone), HH:MM"})
    window_end = fields.String(required=True, validate=TIME_OF_DAY, metadata={
        "description": "after window_start, the same day"})
    service_minutes = fields.Integer(load_default=30, metadata={
        "description": "expected work per visit and item"})
    skills = fields.List(fields.String(), load_default=lambda: list(om_service.DEFAULT_SKILLS))
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(load_default=None, allow_none=True, metadata={
        "description": "last day covered; open-ended when left out"})
    code = fields.String(load_default=None, allow_none=True, metadata={
        "description": "the contract's code (generated when left out)"})
    items = fields.List(fields.Nested(ItemSchema), required=True,
                        validate=validate.Length(1, om_service.MAX_ITEMS))


class ItemResponse(Schema):
    id = fields.Integer()
    name = fields.String()
    equipment_kind = fields.String()
    lat = fields.Decimal(as_string=True)
    lon = fields.Decimal(as_string=True)


class ContractResponse(Schema):
    code = fields.String()
    provider = fields.Function(lambda c: c.provider.code)
    enterprise = fields.Function(lambda c: c.enterprise.code)
    frequency = fields.String()
    job_kind = fields.String()
    window_start = fields.Function(lambda c: c.window_start.strftime("%H:%M"))
    window_end = fields.Function(lambda c: c.window_end.strftime("%H:%M"))
    service_minutes = fields.Integer()
    skills = fields.Function(lambda c: c.skill_list)
    starts_on = fields.Date()
    ends_on = fields.Date(allow_none=True)
    active = fields.Boolean(metadata={"description": "false: withdrawn before its first day"})
    created_at = fields.DateTime()
    items = fields.List(fields.Nested(ItemResponse))


class EndRequest(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 1000), metadata={
        "description": "why; the cancelled jobs carry it"})
    last_day = fields.Date(load_default=None, allow_none=True, metadata={
        "description": "the last day covered (default: today in the park)"})


class EndResponse(Schema):
    contract = fields.Nested(ContractResponse)
    cancelled_jobs = fields.List(fields.String(), metadata={
        "description": "later jobs nobody was on the way to yet, now cancelled"})


class GenerateRequest(Schema):
    first = fields.Date(required=True)
    last = fields.Date(required=True, metadata={
        "description": f"at most {om_service.MAX_GENERATION_DAYS} days after first"})


class GenerateResponse(Schema):
    created = fields.Integer()
    jobs = fields.List(fields.String(), metadata={"description": "the new jobs' codes"})


# --------------------------------------------------------------------------- routes


contracts_api = Blueprint("contracts_api", __name__, url_prefix="/api/v1/contracts",
                          description="Custody O&M contracts of the energy-cloud butler")
patrols_api = Blueprint("patrols_api", __name__, url_prefix="/api/v1/patrols",
                        description="Planned patrol and inspection jobs of O&M contracts")


@contracts_api.route("", methods=["POST"])
@contracts_api.arguments(ContractRequest)
@contracts_api.response(201, ContractResponse)
@contracts_api.alt_response(422, description="Refused (by field); nothing stored")
@contracts_api.doc(security=BEARER)
@roles(Role.PROVIDER, *DISPATCH)
def create_contract(body):
    """Enter a custody O&M contract: an admitted energy-cloud-butler provider patrols or
    inspects an enterprise's equipment daily, weekly or monthly within a local time window
    (staff for any provider, a provider for its own company)."""
    data = om_service.ContractInput(
        provider_code=body["provider"], enterprise_code=body["enterprise"],
        frequency=body["frequency"], job_kind=body["job_kind"],
        window_start=body["window_start"], window_end=body["window_end"],
        service_minutes=body["service_minutes"], skills=body["skills"],
        starts_on=body["starts_on"], ends_on=body["ends_on"], code=body["code"],
        items=[om_service.ItemInput(**item) for item in body["items"]])
    code = om_service.create_contract(_platform(), data, g.user.id)
    return om_service.get_contract(g.db, g.user, code)


@contracts_api.route("", methods=["GET"])
@contracts_api.response(200, ContractResponse(many=True))
@contracts_api.doc(security=BEARER)
@roles(*READERS)
def list_contracts():
    """Contracts you may see: every one (staff, auditors), your company's (providers), those
    covering your enterprise (enterprises)."""
    return om_service.visible_contracts(g.db, g.user)


@contracts_api.route("/<code>", methods=["GET"])
@contracts_api.response(200, ContractResponse)
@contracts_api.doc(security=BEARER)
@roles(*READERS)
def get_contract(code):
    """A contract with its equipment."""
    return om_service.get_contract(g.db, g.user, code)


@contracts_api.route("/<code>/end", methods=["POST"])
@contracts_api.arguments(EndRequest)
@contracts_api.response(200, EndResponse)
@contracts_api.alt_response(409, description="Withdrawn already")
@contracts_api.alt_response(422, description="It ends on that day or earlier already")
@contracts_api.doc(security=BEARER)
@roles(Role.PROVIDER, *DISPATCH)
def end_contract(body, code):
    """End a contract after its last day: nothing falls due later, and later jobs nobody is
    on the way to yet are cancelled. Ended before its first day, it is withdrawn."""
    cancelled = om_service.end_contract(_platform(), code, body["reason"], actor_id=g.user.id,
                                        last_day=body["last_day"])
    return {"contract": om_service.get_contract(g.db, g.user, code),
            "cancelled_jobs": cancelled}


@patrols_api.route("/generate", methods=["POST"])
@patrols_api.arguments(GenerateRequest)
@patrols_api.response(200, GenerateResponse)
@patrols_api.alt_response(422, description="The range is reversed or too long")
@patrols_api.doc(security=BEARER)
@roles(*DISPATCH)
def generate(body):
    """Create the patrol and inspection jobs of every active contract due from `first` to
    `last` (local days), one per item and day; those that exist are skipped, so running it
    twice adds nothing."""
    codes = om_service.generate_patrols(_platform(), body["first"], body["last"])
    return {"created": len(codes), "jobs": codes}


def blueprints():
    return [contracts_api, patrols_api]
