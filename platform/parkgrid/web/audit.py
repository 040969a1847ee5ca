"""The auditor's pages: each order's database record beside its on-chain record."""

from __future__ import annotations

from flask import Blueprint, current_app, g, render_template

from ..models import Role
from ..services import audit as audit_service
from ..services import orders as order_service
from .security import roles

bp = Blueprint("audit", __name__, url_prefix="/audit")


@bp.route("/orders")
@roles(Role.AUDITOR, Role.ADMIN)
def orders():
    platform = current_app.extensions["parkgrid"]
    market = platform.market(g.db)
    rows = [audit_service.compare_order(market, order)
            for order in order_service.visible_orders(g.db, g.user, limit=50)]
    return render_template("audit/orders.html", rows=rows)


@bp.route("/orders/<public_id>")
@roles(Role.AUDITOR, Role.ADMIN)
def order(public_id: str):
    platform = current_app.extensions["parkgrid"]
    item = order_service.get_order(g.db, g.user, public_id)
    row = audit_service.compare_order(platform.market(g.db), item)
    return render_template("audit/order.html", row=row, order=item)
