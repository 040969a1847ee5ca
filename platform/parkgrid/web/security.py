"""Who may call which route: every route declares its roles or is public; the rest is refused."""

from __future__ import annotations

import json
import logging

from flask import abort, current_app, g, jsonify, redirect, request, url_for
from flask_babel import gettext
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..models import ApiToken, AuditLogEntry, Enterprise, Feeder, Role, User
from ..services.calendar import utcnow

# The largest row id (an INTEGER column; PostgreSQL's is 32-bit): ids in URLs and bodies
# beyond it are refused before they reach the database.
MAX_ROW_ID = 2**31 - 1

# Endpoints of libraries we mount, which carry no role declaration of ours.
LIBRARY_PUBLIC = {"static", "api-docs.openapi_json", "api-docs.openapi_swagger_ui"}


# Login throttling: failed logins (a refused page login re-renders the form with 200, a
# refused token request answers 401) count per client address and username, and per address
# alone; past either limit the address gets 429 until the window has passed. Successful
# logins cost nothing. Storage: `Settings.rate_limit_storage` (shared, e.g. Redis, when
# several web processes serve one park).
limiter = Limiter(key_func=get_remote_address)
FAILED_LOGINS_PER_USER = "5 per 15 minutes"
FAILED_LOGINS_PER_ADDRESS = "30 per 15 minutes"


def _login_name() -> str:
    body = request.get_json(silent=True) if request.is_json else None
    name = request.form.get("username") or (body or {}).get("username") or ""
    return str(name).strip().lower()[:64]


def _a_failed_login(response) -> bool:
    return response.status_code in (200, 401)


def throttled_login(view):
    """Limit failed logins on a login view (see the limits above)."""
    per_user = limiter.limit(FAILED_LOGINS_PER_USER, methods=["POST"],
                             key_func=lambda: f"{get_remote_address()}|{_login_name()}",
                             deduct_when=_a_failed_login, scope="login-user")
    per_address = limiter.limit(FAILED_LOGINS_PER_ADDRESS, methods=["POST"],
                                deduct_when=_a_failed_login, scope="login-address")
    return per_address(per_user(view))


def roles(*names: str):
    """Declare which roles may call a view (checked before the view runs)."""

    def mark(view):
        view._roles = frozenset(names)
        return view

    return mark


def public(view):
    view._public = True
    return view


def _declaration(view):
    target = getattr(view, "view_class", None)
    if target is not None:
        target = getattr(target, request.method.lower(), None)
    target = target or view
    return getattr(target, "_public", False), getattr(target, "_roles", None)


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def user_from_token(session) -> User | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # The token and its user in one query; an enterprise user's enterprise, park and supply
    # path come along (the API's enterprise calls, placing orders first, all read them).
    enterprise = joinedload(User.enterprise)
    found = session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id)
        .options(enterprise.joinedload(Enterprise.park),
                 enterprise.joinedload(Enterprise.feeder).joinedload(Feeder.transformer))
        .where(ApiToken.token_hash == ApiToken.hash_token(token.strip()))).first()
    if found is None:
        return None
    record, user = found
    if record.revoked:
        return None
    if record.expires_at is not None and record.expires_at <= utcnow():
        return None
    return user if user.active else None


def api_error(status: int, message: str, errors: dict | None = None):
    body = {"code": status, "message": message}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    return response


def authorise():
    """Runs before every request: find the user, then check the route's declared roles."""
    if request.endpoint is None:
        return None
    view = current_app.view_functions[request.endpoint]
    is_public, allowed = _declaration(view)
    if is_public or request.endpoint in LIBRARY_PUBLIC:
        return None
    if allowed is None:  # a route that forgot to declare its roles is closed, not open
        abort(403)
    if is_api_request():
        user = user_from_token(g.db)
        if user is None:
            return api_error(401, gettext("Log in first: send a valid bearer token."))
    else:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        user = current_user.user
    g.user = user
    if user.role not in allowed:
        if is_api_request():
            return api_error(403, gettext("Your role may not do this."))
        abort(403)
    return None


def current_actor() -> User:
    return g.user



# Staff whose every change is written to the audit log (auditors only read).
AUDITED_ROLES = (Role.ADMIN, Role.SETTLEMENT)
CHANGING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_log = logging.getLogger(__name__)


def audit_staff_action(response):
    """After every changing request of a staff member, accepted or refused, write who, what,
    on which path and the outcome to the audit log, in a transaction of its own. Request
    bodies are never logged: they may hold passwords or keys."""
    user = g.get("user")
    if (user is None or user.role not in AUDITED_ROLES
            or request.method not in CHANGING_METHODS or request.endpoint is None):
        return response
    if response.status_code >= 400 and "db" in g:
        g.db.rollback()  # a refused request keeps nothing, and holds no lock while we log
    detail = {"status": response.status_code, "method": request.method,
              "args": {k: str(v) for k, v in (request.view_args or {}).items()},
              "address": request.remote_addr}
    try:
        with current_app.extensions["parkgrid"].unit_of_work() as session:
            session.add(AuditLogEntry(user_id=user.id, action=request.endpoint[:64],
                                      target=request.path[:255],
                                      detail=json.dumps(detail, sort_keys=True)))
    except Exception:  # the action itself is done; losing its log line must be visible
        _log.exception("could not write the audit log for %s %s by %s", request.method,
                       request.path, user.username)
    return response
