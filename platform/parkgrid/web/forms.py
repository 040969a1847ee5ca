"""Page forms (Flask-WTF, with CSRF); the business rules live in the services, not here."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(_l("Enter your username."))])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Enter your password."))])


class OrderForm(FlaskForm):
    side = HiddenField()
    delivery_day = StringField(_l("Delivery day"))
    first_hour = StringField(_l("From period"), default="8")
    last_hour = StringField(_l("To period (inclusive)"), default="17")
    quantity_kva = StringField(_l("Quantity per period (kVA)"))
    price = StringField(_l("Price (yuan per kVA per hour)"))
    all_or_none = BooleanField(_l("All or none"))
    min_fraction = StringField(_l("Minimum accepted fraction (optional, e.g. 0.5)"))


class ConfirmForm(FlaskForm):
    """A bare form for buttons that change state (cancel, publish): it carries the CSRF token."""


class ReasonForm(FlaskForm):
    reason = TextAreaField(_l("Reason"), validators=[DataRequired(_l("Give a reason."))])
