"""Errors the service layer raises; the web layer turns each into a status and a translated text."""

from __future__ import annotations

from dataclasses import dataclass, field


def N_(message: str) -> str:
    """Marks a message for the translation catalogue; the web layer translates it later."""
    return message


class ServiceError(Exception):
    """Root of the use-case errors. ``message`` is an English msgid with %(name)s params."""

    status = 400

    def __init__(self, message: str, **params):
        self.message = message
        self.params = params
        super().__init__(message % params if params else message)


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


@dataclass
class FieldProblem:
    field: str
    message: str
    params: dict = field(default_factory=dict)

    def text(self) -> str:
        return self.message % self.params if self.params else self.message


class ValidationFailed(ServiceError):
    """Input broke one or more rules; nothing was written."""

    status = 422

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        super().__init__(N_("The input was refused: %(details)s"),
                         details="; ".join(f"{p.field}: {p.text()}" for p in problems))
