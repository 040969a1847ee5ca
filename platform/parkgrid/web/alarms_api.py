"""The power-monitoring part of the HTTP API: alarms raised from metering data, and a check
of a park's day run on demand by staff."""

from __future__ import annotations

import json

from flask import current_app, g
from flask_babel import gettext
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from ..models import AlarmRule, Park, Role
from ..services import alarms as alarm_service
from ..services.errors import N_, NotFound
from .security import roles

BEARER = [{"bearerAuth": []}]
READERS = (Role.ENTERPRISE, Role.PROVIDER, Role.ADMIN, Role.SETTLEMENT, Role.AUDITOR)
DISPATCH = (Role.ADMIN, Role.SETTLEMENT)


def _platform():
    return current_app.extensions["parkgrid"]


class AlarmQuery(Schema):
    open = fields.Boolean(load_default=False, metadata={
        "description": "only alarms whose job is still open"})
    rule = fields.String(load_default=None, validate=validate.OneOf(AlarmRule.ALL), metadata={
        "description": " | ".join(AlarmRule.ALL)})


class ScanRequest(Schema):
    park = fields.String(required=True, validate=validate.Length(1, 32),
                         metadata={"description": "the park's code"})
    day = fields.Date(required=True, metadata={"description": "the park's local day to check"})


def _job(alarm):
    job = alarm.job
    if job is None:
        return None
    return {"code": job.code, "status": job.status, "urgent": job.urgent,
            "alliance": job.alliance, "provider": job.provider.code if job.provider else None}


def _message(alarm) -> str:
    text, params = alarm_service.message(alarm)
    return gettext(text, **params)


def _no_job_reason(alarm) -> str | None:
    found = alarm_service.no_job_reason(alarm)
    return None if found is None else gettext(found[0], **found[1])


def _details(alarm) -> dict:
    details = json.loads(alarm.details or "{}")
    return {"check": details.get("check"), "figures": details.get("figures", {}),
            "first_interval": details.get("first"), "last_interval": details.get("last")}


class AlarmResponse(Schema):
    key = fields.String(metadata={"description": "rule:check:subject:code:first interval "
                                                 "(UTC); the same data give the same key"})
    rule = fields.String(metadata={"description": " | ".join(AlarmRule.ALL)})
    enterprise = fields.Function(lambda a: a.enterprise.code if a.enterprise else None)
    transformer = fields.Function(lambda a: a.transformer.code if a.transformer else None)
    metering_point = fields.Function(lambda a: a.metering_point.code if a.metering_point
                                     else None)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    raised_at = fields.DateTime()
    found = fields.Function(_details, metadata={
        "description": "{check, figures, first_interval, last_interval}: what the rule saw"})
    message = fields.Function(_message, metadata={"description": "in the request's language"})
    job = fields.Function(_job, metadata={
        "description": "{code, status, urgent, alliance, provider} of the job it opened"})
    no_job_reason = fields.Function(_no_job_reason, metadata={
        "description": "why it opened no job (a main transformer; no site position)"})


class ScanResponse(Schema):
    park = fields.String()
    day = fields.Date()
    new = fields.List(fields.Nested(AlarmResponse), metadata={
        "description": "the alarms this check raised (none when checked before)"})


alarms_api = Blueprint("alarms_api", __name__, url_prefix="/api/v1/alarms",
                       description="Alarms from power monitoring: load over the limit, metering "
                                   "gaps and abnormal readings, and the jobs they opened")


@alarms_api.route("", methods=["GET"])
@alarms_api.arguments(AlarmQuery, location="query")
@alarms_api.response(200, AlarmResponse(many=True))
@alarms_api.doc(security=BEARER)
@roles(*READERS)
def list_alarms(query):
    """Alarms you may see, newest first: every alarm for staff and auditors, your own for an
    enterprise, those whose job is your company's for a provider."""
    return alarm_service.visible_alarms(g.db, g.user, query["open"], rule=query["rule"])


@alarms_api.route("/scan", methods=["POST"])
@alarms_api.arguments(ScanRequest)
@alarms_api.response(200, ScanResponse)
@alarms_api.alt_response(404, description="No such park")
@alarms_api.alt_response(422, description="The day has not begun in the park")
@alarms_api.doc(security=BEARER)
@roles(*DISPATCH)
def scan(body):
    """Check a park's day of metering data now (staff): new alarms are stored and open their
    jobs; checking the same data again raises nothing new."""
    park = g.db.scalar(select(Park).where(Park.code == body["park"]))
    if park is None:
        raise NotFound(N_("No such park."))
    keys = alarm_service.scan_day(_platform(), park.id, body["day"])
    return {"park": park.code, "day": body["day"],
            "new": alarm_service.alarms_by_key(g.db, keys)}


def blueprints():
    return [alarms_api]
