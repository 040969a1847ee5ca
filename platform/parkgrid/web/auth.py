"""Login, logout, language choice and the home page of each role."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_login import login_user, logout_user
from sqlalchemy import select

from ..models import Role, User
from .forms import LoginForm
from .security import public, roles, throttled_login

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
@public
@throttled_login
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = g.db.scalar(select(User).where(User.username == form.username.data.strip()))
        if user is None or not user.active or not user.check_password(form.password.data):
            form.password.errors.append(gettext("Wrong username or password."))
        else:
            from . import SessionUser

            session.clear()
            login_user(SessionUser(user))
            target = request.args.get("next", "")
            # Only follow a local path, never another site.
            if not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
                target = url_for("auth.home")
            return redirect(target)
    return render_template("login.html", form=form)


@bp.route("/logout", methods=["POST"])
@roles(*Role.ALL)
def logout():
    lang = session.get("lang")
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang
    flash(gettext("You are logged out."))
    return redirect(url_for("auth.login"))


@bp.route("/lang/<code>")
@public
def set_language(code: str):
    if code in ("zh", "en"):
        session["lang"] = code
    target = request.referrer or url_for("auth.home")
    if urlsplit(target).netloc not in ("", request.host):
        target = url_for("auth.home")
    return redirect(target)


@bp.route("/")
@roles(*Role.ALL)
def home():
    return render_template("home.html")
