"""The HTTP API (OpenAPI-documented with flask-smorest): tokens, listings and the audit view."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g
from flask_babel import gettext
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from ..models import ApiToken, Park, Role, User
from ..services import audit as audit_service
from ..services import calendar, grid
from ..services import orders as order_service
from ..services.errors import N_, FieldProblem, ValidationFailed
from .market import VIEWERS, amend_order, cancel_order, submit_order, submit_orders
from .security import api_error, public, roles

BEARER = [{"bearerAuth": []}]


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
                  description="Database records beside their on-chain records")


@tokens.route("", methods=["POST"])
@tokens.arguments(TokenRequest)
@tokens.response(201, TokenResponse)
@tokens.alt_response(401, description="Wrong username or password")
@public
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
    return submit_order(_order_input(body))


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


def blueprints():
    return [tokens, orders, audit]
