"""Settlement staff's clearing pages, and each enterprise's published results."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext
from sqlalchemy import select

from ..models import ClearingRun, Park, Role
from ..services import calendar, clearing, clearing_view
from ..services.errors import N_, ServiceError
from . import charts
from .forms import ConfirmForm, ReasonForm
from .security import MAX_ROW_ID, roles

bp = Blueprint("clearing", __name__, url_prefix="/clearing")
STAFF = (Role.SETTLEMENT, Role.ADMIN, Role.AUDITOR)


@bp.route("/")
@roles(*STAFF)
def index():
    park = g.db.scalar(select(Park).order_by(Park.id))
    now = calendar.utcnow()
    today = calendar.park_today(park, now)
    runs = g.db.scalars(select(ClearingRun).order_by(ClearingRun.delivery_day.desc(),
                                                     ClearingRun.run_number.desc())).all()
    return render_template("clearing/index.html", runs=runs, park=park, today=today,
                           due=clearing.days_to_clear(g.db, now), confirm=ConfirmForm(),
                           open_day=calendar.open_delivery_day(park, now))


@bp.route("/clear", methods=["POST"])
@roles(Role.SETTLEMENT)
def clear():
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            park_id = int(request.form.get("park_id", "0"))
            day = date.fromisoformat(request.form.get("day", ""))
            if not 1 <= park_id <= MAX_ROW_ID:
                raise ValueError(park_id)
        except ValueError:
            flash(gettext("Give a day such as 2026-11-24."))
            return redirect(url_for("clearing.index"))
        platform = current_app.extensions["parkgrid"]
        try:
            run_id = clearing.run_clearing(platform, park_id, day, user_id=g.user.id)
        except ServiceError as exc:
            flash(gettext(exc.message, **exc.params))
            return redirect(url_for("clearing.index"))
        return redirect(url_for("clearing.run", run_id=run_id))
    return redirect(url_for("clearing.index"))


@bp.route("/runs/<int:run_id>")
@roles(*STAFF)
def run(run_id: int):
    item = clearing_view.get_run(g.db, run_id)
    curves = clearing_view.curves(g.db, item)
    loads = clearing_view.transformer_loads(g.db, item)
    return render_template(
        "clearing/run.html", run=item, summary=clearing_view.run_summary(item),
        curves=[(c, charts.curve_svg(c, gettext("supply"), gettext("demand"))) for c in curves],
        loads=[(row, charts.load_svg(row)) for row in loads], confirm=ConfirmForm(),
        reason_form=ReasonForm())


@bp.route("/runs/<int:run_id>/publish", methods=["POST"])
@roles(Role.SETTLEMENT)
def publish(run_id: int):
    if ConfirmForm().validate_on_submit():
        platform = current_app.extensions["parkgrid"]
        try:
            clearing.publish(platform, run_id, g.user.id)
        except ServiceError as exc:
            flash(gettext(exc.message, **exc.params))
        else:
            flash(gettext("Published: the trades and the result root are on the chain."))
    return redirect(url_for("clearing.run", run_id=run_id))


@bp.route("/runs/<int:run_id>/void", methods=["POST"])
@roles(Role.SETTLEMENT)
def void(run_id: int):
    form = ReasonForm()
    if not form.validate_on_submit():
        flash(gettext("Give a reason."))
        return redirect(url_for("clearing.run", run_id=run_id))
    platform = current_app.extensions["parkgrid"]
    try:
        clearing.void(platform, run_id, g.user.id, form.reason.data)
    except ServiceError as exc:
        flash(gettext(exc.message, **exc.params))
    else:
        flash(gettext("Voided; the day can be cleared again."))
    return redirect(url_for("clearing.run", run_id=run_id))


results = Blueprint("results", __name__, url_prefix="/market")


@results.route("/results")
@roles(Role.ENTERPRISE)
def mine():
    return render_template("market/results.html",
                           results=clearing_view.enterprise_results(g.db, g.user),
                           days=clearing_view.published_days(g.db, g.user))


LABELS = [N_("supply"), N_("demand")]
