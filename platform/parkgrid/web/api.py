"""The HTTP API (OpenAPI-documented with flask-smorest): tokens, listings, the audit view,
metering uploads, settlement runs, statements and disputes; the alliance endpoints live in
`alliance_api` and are registered here."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, jsonify, request
from flask_babel import gettext
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from .. import tasks
from ..models import (
    ApiToken,
    Dispute,
    Park,
    Role,
    SettlementKind,
    SettlementRun,
    SettlementStatus,
    User,
)
from ..services import audit as audit_service
from ..services import calendar, grid, metering, settlement_view
from ..services import orders as order_service
from ..services import settlement as settlement_service
from ..services.errors import N_, FieldProblem, ValidationFailed
from . import alliance_api
from .audit import extract_download, pdf_download
from .market import VIEWERS, amend_order, cancel_order, submit_order, submit_orders
from .security import MAX_ROW_ID, api_error, public, roles, throttled_login
from .settlement import parse_month
from .settlement import queue_run as queue_settlement_run

BEARER = [{"bearerAuth": []}]
MAX_FEN = 2**63 - 1  # a BIGINT column


class TokenRequest(Schema):
    username = fields.String(required=True, validate=validate.Length(1, 80))
    password = fields.String(required=True, validate=validate.Length(1, 200), load_only=True)
    label = fields.String(load_default="api", validate=validate.Length(0, 80))


class TokenResponse(Schema):
    token = fields.String(metadata={"description": "Send as 'Authorization: Bearer <token>'"})
    role = fields.String()
    username = fields.String()


class PeriodQuantity(Schema):
    period = fields.Integer(required=True, metadata={"description": "0 = 00:00–01:00 local"})
    quantity_kva = fields.Decimal(required=True, as_string=True, places=1)


class OrderRequest(Schema):
    side = fields.String(required=True, validate=validate.OneOf(["sell", "buy"]))
    delivery_day = fields.String(required=True, metadata={"example": "2026-11-24"})
    price = fields.String(required=True, metadata={
        "description": "yuan per kVA per hour, ≤ 4 decimals: floor (sell) or maximum (buy)"})
    all_or_none = fields.Boolean(load_default=False)
    min_fraction = fields.String(load_default=None, allow_none=True, metadata={
        "description": "accept the order at one fraction in [min_fraction, 1] of every period, "
                       "or not at all"})
    enterprise = fields.String(load_default=None,
                               metadata={"description": "enterprise code; defaults to yours"})
    periods = fields.List(fields.Dict(), required=True, validate=validate.Length(1, 96),
                          metadata={"description": "[{period: int, quantity_kva: str}]"})


class OrderBatchRequest(Schema):
    orders = fields.List(fields.Nested(OrderRequest), required=True,
                         validate=validate.Length(1, order_service.MAX_BATCH))


class OrderActionResponse(Schema):
    version = fields.Integer()
    action = fields.String()
    content_hash = fields.String()
    chain_status = fields.String()
    chain_tx_hash = fields.String(allow_none=True)
    chain_block_number = fields.Integer(allow_none=True)


class OrderResponse(Schema):
    id = fields.String(attribute="public_id")
    side = fields.String()
    enterprise = fields.Function(lambda obj: obj.enterprise.code)
    delivery_day = fields.Date()
    price = fields.Decimal(as_string=True)
    all_or_none = fields.Boolean()
    min_fraction = fields.Decimal(as_string=True, allow_none=True)
    status = fields.String()
    version = fields.Integer()
    content_hash = fields.String()
    chain_status = fields.String()
    chain_version = fields.Integer()
    chain_tx_hash = fields.String(allow_none=True)
    chain_block_number = fields.Integer(allow_none=True)
    chain_error = fields.String(allow_none=True)
    chain_path = fields.String(metadata={"description": "single: one transaction per action; "
                                                        "batch: recorded in batch events"})
    created_at = fields.DateTime()
    periods = fields.Function(lambda obj: [
        {"period": p.period_index, "quantity_kva": format(p.quantity_kva, "f")}
        for p in sorted(obj.periods, key=lambda p: p.period_index)])
    history = fields.List(fields.Nested(OrderActionResponse), attribute="actions")


class ComparisonResponse(Schema):
    order_id = fields.String(attribute="public_id")
    matches = fields.Boolean()
    mismatches = fields.List(fields.String())
    database = fields.Dict(attribute="db")
    chain = fields.Dict(allow_none=True)


class MarketCalendarResponse(Schema):
    park = fields.String()
    timezone = fields.String()
    open_delivery_day = fields.Date()
    gate_closure = fields.DateTime()
    period_minutes = fields.Integer()
    periods = fields.Integer()


class LimitsQuery(Schema):
    side = fields.String(required=True, validate=validate.OneOf(["sell", "buy"]))


class PeriodLimitResponse(Schema):
    period = fields.Integer()
    available_kva = fields.Decimal(as_string=True)


class LimitsResponse(Schema):
    enterprise = fields.String()
    delivery_day = fields.Date()
    side = fields.String()
    periods = fields.List(fields.Nested(PeriodLimitResponse))


tokens = Blueprint("tokens", __name__, url_prefix="/api/v1/tokens",
                   description="Log in to the API")
orders = Blueprint("orders", __name__, url_prefix="/api/v1/orders",
                   description="Sell listings and buy bids for the open delivery day")
audit = Blueprint("audit_api", __name__, url_prefix="/api/v1/audit",
                  description="The auditor: records and market days checked against the chain")


@tokens.route("", methods=["POST"])
@tokens.arguments(TokenRequest)
@tokens.response(201, TokenResponse)
@tokens.alt_response(401, description="Wrong username or password")
@tokens.alt_response(429, description="Too many failed logins from this address: wait")
@public
@throttled_login
def issue_token(body):
    """Exchange a username and password for a bearer token (valid 30 days)."""
    user = g.db.scalar(select(User).where(User.username == body["username"].strip()))
    if user is None or not user.active or not user.check_password(body["password"]):
        return api_error(401, gettext("Wrong username or password."))
    token, plaintext = ApiToken.issue(user, body["label"], ttl=timedelta(days=30))
    g.db.add(token)
    g.db.commit()
    return {"token": plaintext, "role": user.role, "username": user.username}


def _order_input(body):
    periods: dict = {}
    for item in body["periods"]:
        key = item.get("period")
        if key in periods:
            raise ValidationFailed([FieldProblem("periods", N_("Period %(p)s is listed twice."),
                                                 {"p": key})])
        periods[key] = item.get("quantity_kva")
    return order_service.OrderInput(
        side=body["side"], delivery_day=body["delivery_day"], periods=periods,
        price=body["price"], all_or_none=body["all_or_none"],
        min_fraction=body["min_fraction"], enterprise_code=body["enterprise"])


@orders.route("", methods=["GET"])
@orders.response(200, OrderResponse(many=True))
@orders.doc(security=BEARER)
@roles(*VIEWERS)
def list_orders():
    """Your enterprise's orders (staff and auditors: all), newest first."""
    return order_service.visible_orders(g.db, g.user)


@orders.route("", methods=["POST"])
@orders.arguments(OrderRequest)
@orders.response(201, OrderResponse)
@orders.alt_response(422, description="A rule was broken; nothing was stored")
@orders.alt_response(403, description="Not your enterprise")
@orders.doc(security=BEARER)
@roles(Role.ENTERPRISE)
def create_order(body):
    """Place a sell listing or a buy bid; a task then records it on chain."""
    # Without workers the order was recorded in this request: its result is read back. With
    # workers the answer is the order as committed (pending on chain), all in this session.
    eager = current_app.extensions["parkgrid"].settings.tasks_eager
    return submit_order(_order_input(body), refresh=eager)


@orders.route("/batch", methods=["POST"])
@orders.arguments(OrderBatchRequest)
@orders.response(201, OrderResponse(many=True))
@orders.alt_response(422, description="A rule was broken by one of them; nothing was stored")
@orders.alt_response(403, description="Not your enterprise")
@orders.doc(security=BEARER)
@roles(Role.ENTERPRISE)
def create_orders(body):
    """Place many orders at once (up to 500), all or none; recorded on chain in batches."""
    return submit_orders([_order_input(item) for item in body["orders"]])


@orders.route("/calendar", methods=["GET"])
@orders.response(200, MarketCalendarResponse)
@orders.doc(security=BEARER)
@roles(*VIEWERS)
def market_calendar():
    """The delivery day orders go to now, its gate closure and its periods (your park)."""
    park = g.user.enterprise.park if g.user.enterprise_id else g.db.scalar(select(Park))
    day = calendar.open_delivery_day(park, calendar.utcnow())
    return {"park": park.code, "timezone": park.timezone, "open_delivery_day": day,
            "gate_closure": calendar.gate_closure(park, day),
            "period_minutes": park.period_minutes, "periods": calendar.periods_per_day(park)}


@orders.route("/limits", methods=["GET"])
@orders.arguments(LimitsQuery, location="query")
@orders.response(200, LimitsResponse)
@orders.doc(security=BEARER)
@roles(Role.ENTERPRISE)
def order_limits(query):
    """The most a new order of yours may offer (sell) or ask (buy) in each period of the
    open delivery day: spare capacity for sellers, supply-path headroom for buyers."""
    enterprise = g.user.enterprise
    day = calendar.open_delivery_day(enterprise.park, calendar.utcnow())
    limits = grid.order_limits(g.db, enterprise, day, query["side"])
    return {"enterprise": enterprise.code, "delivery_day": day, "side": query["side"],
            "periods": [{"period": i, "available_kva": limit.available}
                        for i, limit in sorted(limits.items())]}


@orders.route("/<public_id>", methods=["GET"])
@orders.response(200, OrderResponse)
@orders.doc(security=BEARER)
@roles(*VIEWERS)
def get_order(public_id):
    """One order with its chain status and the history of its versions."""
    return order_service.get_order(g.db, g.user, public_id)


@orders.route("/<public_id>", methods=["PUT"])
@orders.arguments(OrderRequest)
@orders.response(200, OrderResponse)
@orders.alt_response(409, description="Cancelled, not yet on chain, or after gate closure")
@orders.alt_response(422, description="A rule was broken; nothing changed")
@orders.doc(security=BEARER)
@roles(Role.ENTERPRISE)
def replace_order(body, public_id):
    """Amend your order (a new version, recorded on chain) until gate closure."""
    return amend_order(public_id, _order_input(body))


@orders.route("/<public_id>", methods=["DELETE"])
@orders.response(200, OrderResponse)
@orders.alt_response(409, description="Already cancelled, or after gate closure")
@orders.doc(security=BEARER)
@roles(Role.ENTERPRISE)
def delete_order(public_id):
    """Cancel your order until gate closure; the cancellation is recorded on chain."""
    return cancel_order(public_id)


@audit.route("/orders/<public_id>", methods=["GET"])
@audit.response(200, ComparisonResponse)
@audit.doc(security=BEARER)
@roles(Role.AUDITOR, Role.ADMIN)
def audit_order(public_id):
    """The database record of an order beside its on-chain record, with every mismatch."""
    platform = current_app.extensions["parkgrid"]
    item = order_service.get_order(g.db, g.user, public_id)
    return audit_service.compare_order(platform.market(g.db), item)


class AuditDayQuery(Schema):
    park = fields.String(load_default=None, metadata={
        "description": "Park code (default: the only park)"})


class SignedReportResponse(Schema):
    report = fields.Dict(metadata={"description": "The audit report: counts, findings, the "
                                   "history rebuilt from the chain"})
    signature = fields.Dict(metadata={"description": "signer, digest and EIP-191 signature"})


class AuditLogQuery(Schema):
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class AuditLogResponse(Schema):
    id = fields.Integer()
    at = fields.String()
    action = fields.String()
    user = fields.String(allow_none=True)
    target = fields.String()
    detail = fields.String()


FILE_DOC = {"200": {"description": "The file", "content": {"application/zip": {}}}}
PDF_DOC = {"200": {"description": "The PDF; its detached signature is in the "
                   "X-Report-Signature header", "content": {"application/pdf": {}}}}


@audit.route("/days/<day>", methods=["GET"])
@audit.arguments(AuditDayQuery, location="query")
@audit.response(200, SignedReportResponse)
@audit.doc(security=BEARER)
@roles(Role.AUDITOR, Role.ADMIN)
def audit_day(query, day):
    """A market day rebuilt from the chain and checked against the published extract and the
    database, signed with your key. `report.clean` is true when nothing differs."""
    platform = current_app.extensions["parkgrid"]
    park, parsed = audit_service.parse_audit_day(g.db, query["park"], day)
    return audit_service.signed_day_report(platform, g.db, g.user, park, parsed)


@audit.route("/days/<day>/report.pdf", methods=["GET"])
@audit.arguments(AuditDayQuery, location="query")
@audit.doc(security=BEARER, responses=PDF_DOC)
@roles(Role.AUDITOR, Role.ADMIN)
def audit_day_pdf(query, day):
    """The signed audit report of a day as a PDF."""
    park, parsed = audit_service.parse_audit_day(g.db, query["park"], day)
    return pdf_download(current_app.extensions["parkgrid"], park, parsed)


@audit.route("/days/<day>/extract", methods=["GET"])
@audit.arguments(AuditDayQuery, location="query")
@audit.doc(security=BEARER, responses=FILE_DOC)
@roles(Role.AUDITOR, Role.ADMIN)
def audit_day_extract(query, day):
    """The day's published extract (a zip): what a third party audits the chain with."""
    park, parsed = audit_service.parse_audit_day(g.db, query["park"], day)
    return extract_download(park, parsed)


@audit.route("/log", methods=["GET"])
@audit.arguments(AuditLogQuery, location="query")
@audit.response(200, AuditLogResponse(many=True))
@audit.doc(security=BEARER)
@roles(Role.AUDITOR, Role.ADMIN)
def audit_log(query):
    """Staff actions (every changing request of admin and settlement staff), newest first."""
    return audit_service.recent_audit_log(g.db, query["limit"])


# --------------------------------------------------------------------------- settlement


class ReadingsQuery(Schema):
    format = fields.String(load_default=None, validate=validate.OneOf(["csv", "nem12"]),
                           metadata={"description": "csv or nem12; recognised when left out"})
    substitute_reason = fields.String(load_default=None, validate=validate.Length(1, 500),
                                      metadata={"description": "the file corrects data already "
                                                               "held: its values replace them, "
                                                               "flagged substituted, with this "
                                                               "reason"})
    filename = fields.String(load_default="", validate=validate.Length(0, 255))
    park = fields.String(load_default=None, metadata={"description": "park code; default: the "
                                                                     "first park"})


class ImportResponse(Schema):
    id = fields.Integer()
    filename = fields.String()
    file_format = fields.String()
    sha256 = fields.String()
    size_bytes = fields.Integer()
    status = fields.String(metadata={"description": "accepted | refused"})
    readings = fields.Integer()
    accepted = fields.Integer(metadata={"description": "intervals with a valid value"})
    rejected = fields.Integer()
    point_days = fields.Integer(metadata={"description": "metering point-days stored as new "
                                                         "versions"})
    refusal = fields.String(allow_none=True)
    report = fields.Function(lambda obj: settlement_view.import_report(obj, shown=100),
                             metadata={"description": "{counts: {rule: n}, problems: [...], "
                                                      "problem_count}"})
    created_at = fields.DateTime()


class RunRequest(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(SettlementKind.ALL))
    day = fields.Date(load_default=None, metadata={"description": "the day (not monthly)"})
    month = fields.String(load_default=None, validate=validate.Regexp(r"^\d{4}-\d{2}$"),
                          metadata={"description": "YYYY-MM, for a monthly run"})
    reason = fields.String(load_default="", validate=validate.Length(0, 1000),
                           metadata={"description": "required for a re-run"})
    park = fields.String(load_default=None)


class RunAccepted(Schema):
    id = fields.Integer()
    status = fields.String()
    progress = fields.Integer()


class RunResponse(Schema):
    id = fields.Integer()
    park = fields.Function(lambda obj: obj.park.code)
    period_id = fields.Integer(metadata={"description": "YYYYMMDD, or YYYYMM00 for a month"})
    period = fields.Function(settlement_view.period_label)
    kind = fields.String()
    status = fields.String(metadata={"description": "queued | running | computed | published "
                                                    "| failed"})
    progress = fields.Integer(metadata={"description": "percent"})
    run_number = fields.Function(
        lambda obj: obj.run_number if obj.status == SettlementStatus.PUBLISHED else None)
    reason = fields.String()
    error = fields.String(allow_none=True)
    rule = fields.Function(lambda obj: {"name": obj.rule.name, "version": obj.rule.version})
    metering_root = fields.String(allow_none=True)
    rule_hash = fields.String(allow_none=True)
    statements_root = fields.String(allow_none=True)
    result_hash = fields.String(allow_none=True)
    line_count = fields.Integer()
    previous_run_id = fields.Integer(allow_none=True)
    publish_tx_hash = fields.String(allow_none=True)
    publish_block_number = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    computed_at = fields.DateTime(allow_none=True)
    published_at = fields.DateTime(allow_none=True)
    counts = fields.Function(settlement_view.assessment_counts)
    totals = fields.Function(lambda obj: {
        key: value for key, value in settlement_view.run_overview(obj).items()
        if key.endswith("_fen")}, metadata={"description": "fen; positive: paid"})


class StatementQuery(Schema):
    account = fields.String(load_default=None, metadata={
        "description": "staff: the enterprise code (or operator); enterprises get their own"})


class StatementLineResponse(Schema):
    position = fields.Integer(metadata={"description": "the index of its Merkle leaf"})
    section = fields.String(metadata={"description": "full | difference"})
    kind = fields.Function(lambda item: item["line"].kind)
    period = fields.Function(lambda item: item["line"].period)
    reference = fields.Function(lambda item: item["line"].reference)
    fen = fields.Function(lambda item: item["line"].fen,
                          metadata={"description": "positive: the account pays"})
    leaf = fields.String()
    proof = fields.List(fields.String())


class StatementResponse(Schema):
    run_id = fields.Function(lambda found: found["run"].id)
    period = fields.String(attribute="label")
    period_id = fields.Function(lambda found: found["run"].period_id)
    run_number = fields.Function(lambda found: found["run"].run_number)
    kind = fields.Function(lambda found: found["run"].kind)
    account = fields.String()
    statements_root = fields.Function(lambda found: found["run"].statements_root)
    publish_tx_hash = fields.Function(lambda found: found["run"].publish_tx_hash)
    publish_block_number = fields.Function(lambda found: found["run"].publish_block_number)
    total_fen = fields.Integer(metadata={"description": "the run's own lines"})
    difference_fen = fields.Integer(metadata={"description": "against the previous run"})
    lines = fields.List(fields.Nested(StatementLineResponse))


class StatementSummary(Schema):
    run_id = fields.Function(lambda row: row["run"].id)
    period = fields.String(attribute="label")
    run_number = fields.Function(lambda row: row["run"].run_number)
    kind = fields.Function(lambda row: row["run"].kind)
    total_fen = fields.Integer()
    difference_fen = fields.Integer()
    lines = fields.Integer()


class DisputeRequest(Schema):
    run_id = fields.Integer(required=True, validate=validate.Range(1, MAX_ROW_ID))
    claimed_fen = fields.Integer(required=True, validate=validate.Range(-MAX_FEN, MAX_FEN),
                                 metadata={"description": "the amount in dispute, in fen"})
    text = fields.String(required=True, validate=validate.Length(1, 4000))


class DisputeResponse(Schema):
    id = fields.Integer()
    run_id = fields.Integer()
    enterprise = fields.Function(lambda obj: obj.enterprise.code)
    claimed_fen = fields.Integer()
    text = fields.String()
    status = fields.String()
    resolution = fields.String()
    resolving_run_id = fields.Integer(allow_none=True)
    raised_at = fields.DateTime()


metering_api = Blueprint("metering_api", __name__, url_prefix="/api/v1/metering",
                         description="Metering data: bulk uploads and their reports")
settlement_api = Blueprint("settlement_api", __name__, url_prefix="/api/v1/settlement",
                           description="Settlement runs, statements with Merkle proofs, "
                                       "disputes")
READINGS_BODY = {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}, "example": "point,start,kw\n"
                 "E001-M1,2026-11-24T00:00:00+08:00,812.500\n"},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
UPLOAD_TYPES = ("text/csv", "text/plain", "application/octet-stream")
STAFF = (Role.SETTLEMENT, Role.AUDITOR, Role.ADMIN)


def _request_chunks(size: int = 64 * 1024):
    """The request body in blocks as it arrives, never read whole."""
    stream = request.stream
    while True:
        block = stream.read(size)
        if not block:
            return
        yield block


@metering_api.route("/readings", methods=["POST"])
@metering_api.arguments(ReadingsQuery, location="query")
@metering_api.response(201, ImportResponse)
@metering_api.alt_response(422, description="The file was refused (its line and reason); "
                                            "nothing of it was kept")
@metering_api.alt_response(415, description="Send the file as text/csv or "
                                            "application/octet-stream")
@metering_api.doc(security=BEARER, requestBody=READINGS_BODY)
@roles(Role.SETTLEMENT)
def upload_readings(query):
    """Upload a file of 15-minute readings (our CSV or NEM12) as the raw request body.

    The body is read as a stream. Readings of unknown points and conflicting duplicates are
    rejected and reported; a malformed file is refused whole with its line and reason."""
    if request.mimetype not in UPLOAD_TYPES:
        return api_error(415, gettext("Send the file as text/csv or application/octet-stream."))
    park = settlement_view.park_by_code(g.db, query["park"])
    platform = current_app.extensions["parkgrid"]
    try:
        record = metering.import_readings(
            platform, park.id, _request_chunks(), filename=query["filename"],
            file_format=query["format"], user_id=g.user.id,
            substitute_reason=query["substitute_reason"])
    except metering.FileRefused as exc:
        cause = exc.__cause__  # the format error: its line and reason
        response = jsonify({"code": 422, "message": gettext(exc.message, **exc.params),
                            "import_id": exc.import_id, "line": getattr(cause, "line", None),
                            "reason": getattr(cause, "reason", None) or exc.params["reason"]})
        response.status_code = 422
        return response
    tasks.queue(tasks.scan_import, record.id)  # power monitoring: alarms from the new data
    return record


@metering_api.route("/imports/<int:import_id>", methods=["GET"])
@metering_api.response(200, ImportResponse)
@metering_api.doc(security=BEARER)
@roles(*STAFF)
def get_import(import_id):
    """One metering import: what it held, what was rejected and why."""
    return settlement_view.get_import(g.db, import_id)


@settlement_api.route("/runs", methods=["POST"])
@settlement_api.arguments(RunRequest)
@settlement_api.response(202, RunAccepted)
@settlement_api.alt_response(409, description="A run of the day is under way, the day is not "
                                              "over, or the run type does not fit")
@settlement_api.doc(security=BEARER)
@roles(Role.SETTLEMENT)
def create_run(body):
    """Request a settlement run of a day (initial, final, rerun) or a month (monthly); a task
    computes it and anchors it on chain. Follow it with GET /runs/{id}."""
    month = None
    if body["month"]:
        month = parse_month(body["month"])
        if month is None:
            raise ValidationFailed([FieldProblem("month", N_("give the month as YYYY-MM"))])
    park = settlement_view.park_by_code(g.db, body["park"])
    platform = current_app.extensions["parkgrid"]
    run_id = settlement_service.request_run(platform, park.id, body["kind"], day=body["day"],
                                            month=month, user_id=g.user.id,
                                            reason=body["reason"])
    queue_settlement_run(run_id)
    return g.db.get(SettlementRun, run_id)


@settlement_api.route("/runs/<int:run_id>", methods=["GET"])
@settlement_api.response(200, RunResponse)
@settlement_api.doc(security=BEARER)
@roles(*STAFF)
def get_run(run_id):
    """A run's status and progress, then its roots, hashes, transaction and counts."""
    return settlement_view.get_run(g.db, run_id)


@settlement_api.route("/statements", methods=["GET"])
@settlement_api.response(200, StatementSummary(many=True))
@settlement_api.doc(security=BEARER)
@roles(Role.ENTERPRISE)
def list_statements():
    """Your enterprise's statements of published runs, newest first, with their totals."""
    return settlement_view.enterprise_statements(g.db, g.user.enterprise)


@settlement_api.route("/statements/<int:run_id>", methods=["GET"])
@settlement_api.arguments(StatementQuery, location="query")
@settlement_api.response(200, StatementResponse)
@settlement_api.alt_response(404, description="No such published run (or not yours)")
@settlement_api.doc(security=BEARER)
@roles(Role.ENTERPRISE, *STAFF)
def get_statement(query, run_id):
    """A statement of a published run with each line's Merkle leaf and proof against the
    statements root anchored on chain: yours, or (staff) the account named."""
    return settlement_view.statement_of(g.db, g.user, run_id, query["account"])


@settlement_api.route("/disputes", methods=["POST"])
@settlement_api.arguments(DisputeRequest)
@settlement_api.response(201, DisputeResponse)
@settlement_api.alt_response(403, description="The dispute window has closed")
@settlement_api.alt_response(422, description="Below the materiality threshold or no text")
@settlement_api.doc(security=BEARER)
@roles(Role.ENTERPRISE)
def create_dispute(body):
    """Dispute a published run of your park within its dispute window."""
    platform = current_app.extensions["parkgrid"]
    dispute_id = settlement_service.raise_dispute(platform, body["run_id"], g.user.id,
                                                  body["claimed_fen"], body["text"])
    return g.db.get(Dispute, dispute_id)


def blueprints():
    return [tokens, orders, audit, metering_api, settlement_api, *alliance_api.blueprints()]
