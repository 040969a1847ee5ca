"""The Flask application factory: one blueprint per area, pages and the OpenAPI-documented API."""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import timedelta
from pathlib import Path

from flask import Flask, g, jsonify, render_template, request, send_from_directory, session
from flask_babel import Babel, gettext
from flask_login import LoginManager, UserMixin
from flask_smorest import Api
from flask_smorest.spec.plugins import integerconverter2paramschema
from flask_wtf.csrf import CSRFError, CSRFProtect
from marshmallow import fields as ma_fields
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from .. import tasks
from ..config import REPO_ROOT, Settings, from_env
from ..models import User
from ..services.errors import ServiceError
from ..wiring import Platform
from . import security

LANGUAGES = ("zh", "en")
log = logging.getLogger(__name__)


class RowIdConverter(IntegerConverter):
    """`<int:…>` in our URLs is a row id: 1 to MAX_ROW_ID; anything else matches no route
    (404) instead of reaching the database as a number it cannot hold."""

    def __init__(self, map, fixed_digits=0, min=1, max=security.MAX_ROW_ID, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class SessionUser(UserMixin):
    """Flask-Login's view of a user: only the id is kept in the session cookie."""

    def __init__(self, user: User):
        self.user = user
        self.id = str(user.id)


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> Flask:
    settings = settings or from_env()
    platform = platform or Platform(settings)
    tasks.configure(settings, platform)

    app = Flask(__name__)
    app.url_map.converters["int"] = RowIdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        BABEL_DEFAULT_LOCALE="zh",
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).resolve().parents[1] / "translations"),
        BABEL_DEFAULT_TIMEZONE=settings.park_timezone,
        WTF_CSRF_TIME_LIMIT=None,
        API_TITLE="ParkGrid API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/vendor/swagger-ui/",
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "info": {"description": "Day-ahead capacity-right trading and alliance dispatch. "
                                    "Get a token with POST /api/v1/tokens, then send "
                                    "'Authorization: Bearer <token>'."},
        },
    )
    app.extensions["parkgrid"] = platform

    app.config["RATELIMIT_STORAGE_URI"] = settings.rate_limit_storage
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    security.limiter.init_app(app)
    Babel(app, locale_selector=_select_locale, timezone_selector=lambda: settings.park_timezone)
    csrf = CSRFProtect(app)
    login = LoginManager(app)
    login.login_view = "auth.login"
    login.login_message = None

    @login.user_loader
    def _load_user(user_id: str):
        if "db" not in g:  # a CSRF refusal's error page is drawn before the session opens
            g.db = platform.sessions()
        user = g.db.get(User, int(user_id)) if user_id.isdigit() else None
        return SessionUser(user) if user is not None and user.active else None

    @app.before_request
    def _open_session():
        g.db = platform.sessions()

    app.before_request(security.authorise)
    app.before_request(_refuse_unstorable_text)
    app.after_request(security.audit_staff_action)

    @app.teardown_request
    def _close_session(_exc):
        db = g.pop("db", None)
        if db is not None:
            db.close()  # anything not committed by the view is rolled back

    # Stored codes (statuses, audit findings) are msgids; this shows them in the page's language.
    app.add_template_filter(lambda text: gettext(text), "translate")

    @app.context_processor
    def _template_globals():
        return {"languages": LANGUAGES, "current_locale": _select_locale(),
                "actor": g.get("user")}

    from . import api, audit, auth, clearing, market, settlement

    app.register_blueprint(auth.bp)
    app.register_blueprint(market.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(clearing.bp)
    app.register_blueprint(clearing.results)
    app.register_blueprint(settlement.bp)
    from . import alliance_pages

    app.register_blueprint(alliance_pages.bp)
    from . import alliance_staff_pages

    app.register_blueprint(alliance_staff_pages.bp)
    rest = Api(app)
    rest.register_converter(RowIdConverter, integerconverter2paramschema)
    rest.ma_plugin.converter.add_attribute_function(_decimal_as_string)
    from . import alarms_api, om_api

    for blueprint in (*api.blueprints(), *om_api.blueprints(), *alarms_api.blueprints()):
        rest.register_blueprint(blueprint)
        csrf.exempt(blueprint)  # the API authenticates with bearer tokens, never cookies

    swagger_dir = REPO_ROOT / "node_modules" / "swagger-ui-dist"

    @app.route("/vendor/swagger-ui/<path:filename>")
    @security.public
    def swagger_assets(filename):
        return send_from_directory(swagger_dir, filename)

    _register_error_handlers(app)
    return app


# Text no database column can hold: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates
# (from a JSON escape such as \ud800; not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(value) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_unstorable(v) for v in value)
    return False


def _refuse_unstorable_text():
    """Refuse, before any view runs, text input that no column could store: a query, a URL
    part, a form field or a JSON string holding NUL or a lone surrogate. (Uploaded files
    are bytes, checked by their own readers.)"""
    values = [list(request.args.lists()), request.view_args or {}]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values.append(list(request.form.lists()))
    if request.is_json:
        values.append(request.get_json(silent=True))
    if not _unstorable(values):
        return None
    message = gettext("The input was refused.")
    if security.is_api_request():
        return security.api_error(422, message)
    return render_template("error.html", status=400, message=message), 400


def _decimal_as_string(_converter, field, **_kwargs) -> dict:
    """A Decimal sent as a string ("273.1") is documented as one, not as a number."""
    if isinstance(field, ma_fields.Decimal) and field.as_string:
        return {"type": "string", "format": "decimal"}
    return {}


def _select_locale() -> str:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    user = g.get("user")
    if user is not None and user.locale in LANGUAGES:
        return user.locale
    return "zh"


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        message = gettext(exc.message, **exc.params)
        if security.is_api_request():
            errors = None
            if hasattr(exc, "problems"):
                errors = {}
                for p in exc.problems:
                    errors.setdefault(p.field, []).append(gettext(p.message, **p.params))
            return security.api_error(exc.status, message, errors)
        return render_template("error.html", status=exc.status, message=message), exc.status

    @app.errorhandler(CSRFError)
    def _csrf_error(exc):
        message = gettext("The form expired or did not come from this site. Please try again.")
        return render_template("error.html", status=400, message=message), 400

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {
            403: gettext("You are not allowed to open this page."),
            404: gettext("There is nothing here."),
            413: gettext("The upload is too large."),
            429: gettext("Too many failed logins from here: wait a few minutes and try "
                         "again."),
        }
        message = messages.get(exc.code, exc.description)
        if security.is_api_request():
            data = getattr(exc, "data", None) or {}
            if exc.code == 422 and "messages" in data:  # marshmallow/webargs input errors
                return security.api_error(422, gettext("The input was refused."),
                                          _flatten(data["messages"]))
            return security.api_error(exc.code or 500, message)
        return render_template("error.html", status=exc.code, message=message), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s", request.path)
        # A failed statement (e.g. the database connection ended mid-request) leaves the
        # request's session unusable until it is rolled back; the answer below may need it
        # (the user's language), and must not fail in turn with an HTML error page.
        db = g.get("db")
        if db is not None:
            with contextlib.suppress(Exception):
                db.rollback()
        try:
            message = gettext("Something went wrong on our side; nothing was saved.")
        except Exception:  # noqa: BLE001 - the database is still away: answer in English
            message = "Something went wrong on our side; nothing was saved."
        if security.is_api_request():
            return jsonify({"code": 500, "message": message}), 500
        try:
            return render_template("error.html", status=500, message=message), 500
        except Exception:  # noqa: BLE001 - the page needs the database too
            return message, 500, {"Content-Type": "text/plain; charset=utf-8"}


def _flatten(messages: dict) -> dict:
    """webargs nests errors by location (json, query); the API reports them by field."""
    flat: dict = {}
    for location in messages.values():
        if isinstance(location, dict):
            flat.update(location)
    return _text_keys(flat or messages)


def _text_keys(messages):
    """Error keys as JSON object keys: list positions (0) and a multipart part sent without
    a name (None) become text, so the sorted JSON body can always be written."""
    if not isinstance(messages, dict):
        return messages
    return {("" if key is None else str(key)): _text_keys(value)
            for key, value in messages.items()}
