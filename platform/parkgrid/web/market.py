"""Capacity-market pages: an enterprise's orders, placing, amending and cancelling them."""

from __future__ import annotations

import logging

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext

from .. import tasks
from ..models import OrderSide, Role
from ..services import calendar
from ..services import orders as service
from ..services.errors import ServiceError, ValidationFailed
from .forms import ConfirmForm, OrderForm
from .security import roles

bp = Blueprint("market", __name__, url_prefix="/market")
log = logging.getLogger(__name__)
VIEWERS = (Role.ENTERPRISE, Role.SETTLEMENT, Role.AUDITOR, Role.ADMIN)


def commit_and_queue(order, *, refresh: bool = True) -> None:
    """Commit an order's new action and have it written on chain: the enterprise's chain
    writer is queued, unless one is queued already and will take this action too.

    The action is committed before the task is queued, so a broker or chain outage leaves it
    in the outbox (chain status pending) instead of losing it. Without a broker the writer
    runs here, and `refresh` reads back what it wrote.
    """
    first = service.request_chain_write(g.db, order)
    g.db.commit()
    if first:
        tasks.queue(tasks.record_enterprise_orders, order.enterprise_id)
    if refresh:
        g.db.refresh(order)


def _queue(task, *args) -> None:
    try:
        task.delay(*args)
    except Exception:  # broker down: the outbox flush sends it later
        log.exception("could not queue %s%s", task.name, args)


def submit_order(data: service.OrderInput, *, refresh: bool = True):
    order = service.create_order(g.db, g.user, data, calendar.utcnow())
    commit_and_queue(order, refresh=refresh)
    return order


def submit_orders(items: list[service.OrderInput]):
    """Many orders at once, all or none; one task records them on chain in batches."""
    placed = service.create_orders(g.db, g.user, items, calendar.utcnow())
    g.db.commit()
    _queue(tasks.record_batch, [order.id for order in placed])
    for order in placed:
        g.db.refresh(order)
    return placed


def amend_order(public_id: str, data: service.OrderInput):
    order = service.amend_order(g.db, g.user, public_id, data, calendar.utcnow())
    commit_and_queue(order)
    return order


def cancel_order(public_id: str):
    order = service.cancel_order(g.db, g.user, public_id, calendar.utcnow())
    commit_and_queue(order)
    return order


@bp.route("/orders")
@roles(*VIEWERS)
def orders():
    return render_template("market/orders.html", orders=service.visible_orders(g.db, g.user))


def _form_input(form: OrderForm) -> service.OrderInput | None:
    try:
        first, last = int(form.first_hour.data), int(form.last_hour.data)
    except (TypeError, ValueError):
        form.first_hour.errors.append(gettext("Give the periods as whole numbers."))
        return None
    if first > last:
        form.last_hour.errors.append(gettext("The last period comes before the first."))
        return None
    return service.OrderInput(
        side=form.side.data, delivery_day=form.delivery_day.data,
        periods={i: form.quantity_kva.data for i in range(first, last + 1)},
        price=form.price.data, all_or_none=form.all_or_none.data,
        min_fraction=form.min_fraction.data or None)


def _attach_problems(form: OrderForm, exc: ValidationFailed) -> None:
    # The page sends one quantity for a range of periods: one message per field is enough.
    fields = {"periods": form.first_hour, "side": form.quantity_kva}
    seen = set()
    for problem in exc.problems:
        if problem.field in seen:
            continue
        seen.add(problem.field)
        target = fields.get(problem.field) or getattr(form, problem.field, form.quantity_kva)
        target.errors.append(gettext(problem.message, **problem.params))


def _form_page(form: OrderForm, template_args: dict):
    enterprise = g.user.enterprise
    open_day = calendar.open_delivery_day(enterprise.park, calendar.utcnow())
    if not form.delivery_day.data:
        form.delivery_day.data = open_day.isoformat()
    return render_template(
        "market/order_form.html", form=form, enterprise=enterprise, open_day=open_day,
        periods=calendar.periods_per_day(enterprise.park),
        gate=calendar.gate_closure(enterprise.park, open_day), **template_args)


@bp.route("/orders/new", methods=["GET", "POST"])
@roles(Role.ENTERPRISE)
def new_order():
    form = OrderForm()
    if not form.side.data:
        form.side.data = request.args.get("side", OrderSide.SELL)
    if form.side.data not in OrderSide.ALL:
        form.side.data = OrderSide.SELL
    if form.validate_on_submit():
        data = _form_input(form)
        if data is not None:
            try:
                order = submit_order(data)
            except ValidationFailed as exc:
                _attach_problems(form, exc)
            else:
                flash(gettext("Order saved; it is being recorded on the chain."))
                return redirect(url_for("market.order", public_id=order.public_id))
    return _form_page(form, {"amending": None})


@bp.route("/orders/<public_id>/amend", methods=["GET", "POST"])
@roles(Role.ENTERPRISE)
def amend(public_id: str):
    order = service.get_order(g.db, g.user, public_id)
    form = OrderForm()
    if request.method == "GET":
        quantities = [p.quantity_kva for p in order.periods]
        form.side.data = order.side
        form.delivery_day.data = order.delivery_day.isoformat()
        form.first_hour.data = str(order.periods[0].period_index)
        form.last_hour.data = str(order.periods[-1].period_index)
        form.quantity_kva.data = str(max(quantities))
        form.price.data = str(order.price)
        form.all_or_none.data = order.all_or_none
        form.min_fraction.data = "" if order.min_fraction is None else str(order.min_fraction)
    elif form.validate_on_submit():
        data = _form_input(form)
        if data is not None:
            try:
                amend_order(public_id, data)
            except ValidationFailed as exc:
                _attach_problems(form, exc)
            else:
                flash(gettext("Amendment saved; it is being recorded on the chain."))
                return redirect(url_for("market.order", public_id=public_id))
    return _form_page(form, {"amending": order})


@bp.route("/orders/<public_id>/cancel", methods=["POST"])
@roles(Role.ENTERPRISE)
def cancel(public_id: str):
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            cancel_order(public_id)
        except ServiceError as exc:
            flash(gettext(exc.message, **exc.params))
        else:
            flash(gettext("Cancellation saved; it is being recorded on the chain."))
    return redirect(url_for("market.order", public_id=public_id))


@bp.route("/orders/<public_id>")
@roles(*VIEWERS)
def order(public_id: str):
    return render_template("market/order.html", order=service.get_order(g.db, g.user, public_id),
                           confirm=ConfirmForm())
