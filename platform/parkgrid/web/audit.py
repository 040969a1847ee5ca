"""The auditor's pages: each order's database record beside its on-chain record, a market
day's audit (history from the chain, every check, signed downloads), the staff audit log."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, render_template, request
from sqlalchemy import select

from ..auditor import build_extract
from ..models import Park, Role
from ..services import audit as audit_service
from ..services import calendar
from ..services import orders as order_service
from ..services.errors import ValidationFailed
from .security import roles

bp = Blueprint("audit", __name__, url_prefix="/audit")
AUDITORS = (Role.AUDITOR, Role.ADMIN)


@bp.route("/orders")
@roles(*AUDITORS)
def orders():
    platform = current_app.extensions["parkgrid"]
    market = platform.market(g.db)
    rows = [audit_service.compare_order(market, order)
            for order in order_service.visible_orders(g.db, g.user, limit=50)]
    return render_template("audit/orders.html", rows=rows)


@bp.route("/orders/<public_id>")
@roles(*AUDITORS)
def order(public_id: str):
    platform = current_app.extensions["parkgrid"]
    item = order_service.get_order(g.db, g.user, public_id)
    row = audit_service.compare_order(platform.market(g.db), item)
    return render_template("audit/order.html", row=row, order=item)


@bp.route("/days")
@roles(*AUDITORS)
def days():
    """Pick a park and a day; with both given, the day's audit."""
    parks = g.db.scalars(select(Park).order_by(Park.code)).all()
    park_code = request.args.get("park") or (parks[0].code if parks else None)
    day_text = request.args.get("day")
    envelope, problems = None, []
    if day_text is not None:
        try:
            park, day = audit_service.parse_audit_day(g.db, park_code, day_text)
        except ValidationFailed as exc:
            problems = exc.problems
        else:
            envelope = audit_service.signed_day_report(current_app.extensions["parkgrid"],
                                                       g.db, g.user, park, day)
    default_day = calendar.utcnow().date().isoformat()
    return render_template("audit/day.html", parks=parks, park_code=park_code,
                           day_text=day_text or default_day, envelope=envelope,
                           problems=problems), 400 if problems else 200


def _day_files(park_code: str, day_text: str):
    platform = current_app.extensions["parkgrid"]
    park, day = audit_service.parse_audit_day(g.db, park_code, day_text)
    return platform, park, day


@bp.route("/days/<park_code>/<day_text>/report.json")
@roles(*AUDITORS)
def report_json(park_code: str, day_text: str):
    platform, park, day = _day_files(park_code, day_text)
    envelope = audit_service.signed_day_report(platform, g.db, g.user, park, day)
    return _download(json.dumps(envelope, indent=1, ensure_ascii=False).encode(),
                     "application/json", f"audit-{park.code}-{day}.json")


@bp.route("/days/<park_code>/<day_text>/report.pdf")
@roles(*AUDITORS)
def report_pdf(park_code: str, day_text: str):
    platform, park, day = _day_files(park_code, day_text)
    return pdf_download(platform, park, day)


@bp.route("/days/<park_code>/<day_text>/extract.zip")
@roles(*AUDITORS)
def extract(park_code: str, day_text: str):
    _platform, park, day = _day_files(park_code, day_text)
    return extract_download(park, day)


@bp.route("/log")
@roles(*AUDITORS)
def log():
    return render_template("audit/log.html", entries=audit_service.recent_audit_log(g.db))


def pdf_download(platform, park, day) -> Response:
    """The day's signed report as a PDF download (page and API alike), its detached
    signature in the X-Report-Signature header."""
    pdf, signature = audit_service.signed_day_pdf(platform, g.db, g.user, park, day)
    response = _download(pdf, "application/pdf", f"audit-{park.code}-{day}.pdf")
    response.headers["X-Report-Signature"] = signature
    return response


def extract_download(park, day) -> Response:
    """The day's published extract as a zip download (page and API alike)."""
    return _download(build_extract(g.db, park, day), "application/zip",
                     f"extract-{park.code}-{day}.zip")


def _download(data: bytes, mimetype: str, name: str) -> Response:
    return Response(data, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
