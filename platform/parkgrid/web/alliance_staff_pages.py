"""Staff pages of the two alliances (members, expiries, the on-site SLA, escalations, a map
and the dispatch desk's escalate / no-show / offer actions) and the energy-cloud-butler
provider's cockpit. The figures come from `services.alliance_views`, the actions from
`services.jobs`; this module parses input, draws the map and translates."""

from __future__ import annotations

import math

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext
from markupsafe import Markup, escape
from sqlalchemy import select

from ..models import Alliance, Electrician, Job, Role
from ..services import alliance as membership
from ..services import alliance_views as views
from ..services import calendar, jobs
from ..services.errors import N_, ServiceError, ValidationFailed
from .alliance_api import dispatch_soon
from .labels import JOB_STATUS_LABELS, SKILL_LABELS
from .security import roles

bp = Blueprint("alliance_staff", __name__, url_prefix="/alliance")
VIEWERS = (Role.ADMIN, Role.SETTLEMENT, Role.AUDITOR)
DESK = jobs.JOB_STAFF  # auditors only read

# Stored codes the pages show, as words marked for the catalogue (job statuses and skills
# as every alliance page names them).
CODE_LABELS: dict[str, str] = {
    **JOB_STATUS_LABELS, **SKILL_LABELS,
    Alliance.SHARED_ELECTRICIANS: N_("Shared electricians"),
    Alliance.ENERGY_CLOUD_BUTLER: N_("Energy-cloud butler"),
    "applied": N_("Applied"), "approved": N_("Approved"), "rejected": N_("Application rejected"),
    "suspended": N_("Suspended"),
    "repair": N_("Repair"), "alarm": N_("Alarm"), "patrol": N_("Patrol"),
    "inspection": N_("Inspection"),
    views.FREE: N_("Free"), views.ON_JOB: N_("On a job"), views.OFF_SHIFT: N_("Off shift"),
    "last": N_("last reported position"), "home": N_("home base"),
    "licence": N_("Licence"), "certificate": N_("Certificate"),
    "daily": N_("Daily"), "weekly": N_("Weekly"), "monthly": N_("Monthly"),
    "load_rate": N_("Load rate over limit"), "metering_gap": N_("Metering data gap"),
    "abnormal_reading": N_("Abnormal reading"),
}


def label(code: str | None) -> str:
    """A stored code in the page's language (an unknown code is shown as it is)."""
    if code is None:
        return "—"
    return gettext(CODE_LABELS[code]) if code in CODE_LABELS else code


def job_url(code: str) -> str:
    """The job's own page (served by the alliance pages)."""
    return f"{request.script_root}/alliance/jobs/{code}"


def _platform():
    return current_app.extensions["parkgrid"]


def _zone() -> str:
    return _platform().settings.park_timezone


def _flash_error(exc: ServiceError) -> None:
    """A service error in the page's language; plain input problems one by one."""
    if isinstance(exc, ValidationFailed):
        details = [gettext(p.message, **p.params) for p in exc.problems]
        if type(exc) is ValidationFailed:
            for message in details:
                flash(message)
            return
        flash(gettext(exc.message, **{**exc.params, "details": "; ".join(details)}))
        return
    flash(gettext(exc.message, **exc.params))


# --------------------------------------------------------------------------- the map

MAP_W, MAP_H, MAP_PAD, LEGEND_H = 640, 400, 28, 30
STATE_COLOURS = {views.FREE: "#18794e", views.ON_JOB: "#0b6bcb", views.OFF_SHIFT: "#8a99a8"}
URGENT_COLOUR, ROUTINE_COLOUR = "#c0392b", "#d9822b"
SCALE_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 240)


def _fit(points: list[views.MapPoint]):
    """Pixel position of each point: scaled to fit the frame, north up, aspect kept."""
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    mid_x, mid_y = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    spans = [(MAP_W - 2 * MAP_PAD) / (max(xs) - min(xs)) if max(xs) > min(xs) else math.inf,
             (MAP_H - 2 * MAP_PAD) / (max(ys) - min(ys)) if max(ys) > min(ys) else math.inf]
    scale = min(spans)
    if math.isinf(scale):
        scale = 20.0  # one spot: any scale centres it; 20 px per travel minute reads well

    def at(p: views.MapPoint) -> tuple[float, float]:
        return MAP_W / 2 + (p.x - mid_x) * scale, MAP_H / 2 - (p.y - mid_y) * scale

    return at, scale


def _scale_bar(scale: float) -> str:
    minutes = next((m for m in reversed(SCALE_STEPS) if m * scale <= MAP_W / 4), None)
    if minutes is None:
        return ""
    length = minutes * scale
    x0, y = MAP_W - MAP_PAD - length, MAP_H - 10
    text = escape(gettext("%(n)s min travel", n=minutes))
    return (f'<g class="scale"><line x1="{x0:.1f}" y1="{y}" x2="{MAP_W - MAP_PAD}" y2="{y}" '
            f'stroke="#5b6b7c" stroke-width="2"/><text x="{MAP_W - MAP_PAD}" y="{y - 4}" '
            f'text-anchor="end" font-size="11" fill="#5b6b7c">{text}</text></g>')


def _legend() -> str:
    y = MAP_H + LEGEND_H / 2
    items = [(label(views.FREE), "circle", STATE_COLOURS[views.FREE]),
             (label(views.ON_JOB), "circle", STATE_COLOURS[views.ON_JOB]),
             (label(views.OFF_SHIFT), "circle", STATE_COLOURS[views.OFF_SHIFT]),
             (gettext("Urgent job"), "square", URGENT_COLOUR),
             (gettext("Planned job"), "square", ROUTINE_COLOUR)]
    parts, x = ['<g class="legend">'], float(MAP_PAD)
    for text, shape, colour in items:
        if shape == "circle":
            parts.append(f'<circle cx="{x + 5:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>')
        else:
            parts.append(f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="10" height="10" '
                         f'fill="{colour}" transform="rotate(45 {x + 5:.1f} {y:.1f})"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y + 4:.1f}" font-size="12">'
                     f'{escape(text)}</text>')
        x += (MAP_W - 2 * MAP_PAD) / len(items)
    parts.append("</g>")
    return "".join(parts)


def map_svg(data: views.MapData) -> Markup:
    """Electricians (dots coloured by state) and open jobs (diamonds, urgent in red) on a
    server-side SVG: no script, no map tiles; each mark has a <title> tooltip."""
    height = MAP_H + LEGEND_H
    title = escape(gettext("Map of electricians and open jobs"))
    parts = [f'<svg viewBox="0 0 {MAP_W} {height}" class="alliance-map" role="img" '
             f'aria-label="{title}">',
             f'<rect x="0" y="0" width="{MAP_W}" height="{MAP_H}" fill="#f7f9fb" '
             'stroke="#d8dee6"/>']
    if data.points:
        at, scale = _fit(data.points)
        for p in sorted(data.jobs, key=lambda j: j.urgent):  # urgent ones on top
            x, y = at(p)
            colour = URGENT_COLOUR if p.urgent else ROUTINE_COLOUR
            tip = " · ".join([p.label, label(p.alliance), label(p.state),
                              gettext("Urgent") if p.urgent else gettext("not urgent")])
            parts.append(
                f'<rect class="job-marker{" urgent" if p.urgent else ""}" '
                f'data-job="{escape(p.ref)}" x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" '
                f'height="12" fill="{colour}" stroke="#fff" '
                f'transform="rotate(45 {x:.1f} {y:.1f})"><title>{escape(tip)}</title></rect>')
        for p in data.electricians:
            x, y = at(p)
            tip = " · ".join([p.label, p.provider_code or "", label(p.alliance),
                              label(p.state), label(p.source)])
            parts.append(
                f'<circle class="electrician-dot state-{p.state}" '
                f'data-electrician="{escape(p.ref)}" cx="{x:.1f}" cy="{y:.1f}" r="5" '
                f'fill="{STATE_COLOURS[p.state]}" stroke="#fff">'
                f'<title>{escape(tip)}</title></circle>')
        parts.append(_scale_bar(scale))
    else:
        empty = escape(gettext("Nothing to show on the map."))
        parts.append(f'<text x="{MAP_W / 2}" y="{MAP_H / 2}" text-anchor="middle" '
                     f'font-size="13" fill="#5b6b7c">{empty}</text>')
    parts.append(_legend())
    parts.append("</svg>")
    return Markup("".join(parts))


# --------------------------------------------------------------------------- staff


def _render(template: str, **values):
    return render_template(template, label=label, job_url=job_url, **values)


@bp.route("/staff")
@roles(*VIEWERS)
def staff():
    now = calendar.utcnow()
    view = views.staff_view(g.db, now, _zone())
    return _render("alliance/staff.html", view=view, svg=map_svg(view.map),
                   may_act=g.user.role in DESK, alliances=Alliance.ALL,
                   windows=views.SLA_WINDOWS_DAYS, warn_days=views.EXPIRY_WARN_DAYS)


def _back_to_desk():
    return redirect(url_for("alliance_staff.staff") + "#desk")


@bp.route("/staff/jobs/<code>/escalate", methods=["POST"])
@roles(*DESK)
def escalate(code: str):
    try:
        jobs.escalate(_platform(), code, request.form.get("reason", ""), actor_id=g.user.id,
                      at=calendar.utcnow())
    except ServiceError as exc:
        _flash_error(exc)
    else:
        flash(gettext("Job %(code)s is escalated to the dispatch desk.", code=code))
    return _back_to_desk()


@bp.route("/staff/jobs/<code>/no-show", methods=["POST"])
@roles(*DESK)
def no_show(code: str):
    try:
        jobs.no_show(_platform(), code, actor_id=g.user.id, at=calendar.utcnow())
    except ServiceError as exc:
        _flash_error(exc)
    else:
        dispatch_soon()
        flash(gettext("No-show recorded: job %(code)s is back in dispatch and that "
                      "electrician is excluded from it.", code=code))
    return _back_to_desk()


@bp.route("/staff/jobs/<code>/offer")
@roles(*DESK)
def offer_form(code: str):
    job = jobs.get_job(g.db, g.user, code)
    now = calendar.utcnow()
    return _render("alliance/staff_offer.html", job=views.job_row(job, now),
                   candidates=membership.offerable_electricians(g.db, job, now))


@bp.route("/staff/jobs/<code>/offer", methods=["POST"])
@roles(*DESK)
def offer(code: str):
    exists = g.db.scalar(select(Job.id).where(Job.code == code)) is not None
    back = url_for("alliance_staff.offer_form", code=code) if exists else None
    raw = (request.form.get("electrician_id") or "").strip()
    if not raw.isdigit():
        flash(gettext("Choose an electrician from the list."))
        return redirect(back) if back else _back_to_desk()
    electrician_id = int(raw)
    try:
        jobs.offer(_platform(), code, electrician_id, actor_id=g.user.id, at=calendar.utcnow())
    except ServiceError as exc:
        _flash_error(exc)
        return redirect(back) if back else _back_to_desk()
    person = g.db.get(Electrician, electrician_id)
    flash(gettext("Job %(code)s is offered to %(name)s.", code=code,
                  name=f"{person.code} {person.name}" if person is not None else raw))
    return _back_to_desk()


# --------------------------------------------------------------------------- cockpit


@bp.route("/cockpit")
@roles(Role.PROVIDER)
def cockpit():
    provider = g.user.provider
    if provider.alliance != Alliance.ENERGY_CLOUD_BUTLER:
        return _render("alliance/cockpit.html", data=None, provider=provider, svg=None)
    now = calendar.utcnow()
    data = views.cockpit(g.db, g.user, now, _zone())
    svg = map_svg(views.map_data(g.db, now, _zone(), provider_id=provider.id))
    return _render("alliance/cockpit.html", data=data, provider=provider, svg=svg,
                   sla_days=views.COCKPIT_SLA_DAYS, upcoming_days=views.UPCOMING_DAYS,
                   warn_days=views.EXPIRY_WARN_DAYS)
