"""Staff actions from the command line go to the audit log too: the command, its arguments
(never a value whose name suggests a secret), who ran it on which host, and how it ended."""

from __future__ import annotations

import functools
import getpass
import json
import logging
import socket

import click

# Commands that change nothing, or that run a service rather than act once.
NOT_ACTIONS = {"parkgrid run", "parkgrid serve", "parkgrid worker", "parkgrid demo readings",
               "parkgrid audit day", "parkgrid audit check-signature",
               "parkgrid audit extract"}
SECRET_WORDS = ("password", "secret", "key", "token")

_log = logging.getLogger(__name__)


def audit_commands(group: click.Group) -> None:
    """Wrap every action command under `group` so that each run is written to the log."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            audit_commands(command)
        elif command.callback is not None and not getattr(command, "_audited", False):
            command.callback = _audited(command.callback)
            command._audited = True


def _audited(callback):
    @functools.wraps(callback)
    def run(*args, **kwargs):
        ctx = click.get_current_context()
        path = _path(ctx)
        if path in NOT_ACTIONS:
            return callback(*args, **kwargs)
        outcome = "ok"
        try:
            return callback(*args, **kwargs)
        except SystemExit as exc:
            outcome = "ok" if exc.code in (0, None) else f"exit {exc.code}"
            raise
        except BaseException as exc:
            outcome = f"failed: {type(exc).__name__}"
            raise
        finally:
            _write(path, {name: _shown(name, value)
                                      for name, value in ctx.params.items()}, outcome)
    return run


def _path(ctx: click.Context) -> str:
    """The command as `parkgrid group command`, whatever name the tool was started by."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["parkgrid", *reversed(names)])


def _shown(name: str, value) -> str | None:
    if any(word in name.lower() for word in SECRET_WORDS):
        return None if value is None else "(not logged)"
    return None if value is None else str(value)


def _write(command: str, params: dict, outcome: str) -> None:
    from .config import from_env
    from .models import AuditLogEntry
    from .wiring import Platform

    detail = {"outcome": outcome, "params": params, "os_user": getpass.getuser(),
              "host": socket.gethostname(), "via": "cli"}
    try:
        platform = Platform(from_env())
        try:
            with platform.unit_of_work() as session:
                session.add(AuditLogEntry(user_id=None, action=f"cli:{command}"[:64],
                                          target=command[:255],
                                          detail=json.dumps(detail, sort_keys=True)))
        finally:
            platform.engine.dispose()
    except Exception as exc:  # noqa: BLE001 - e.g. before `db upgrade` made the table
        click.echo(f"note: not written to the audit log ({type(exc).__name__})", err=True)
        _log.debug("audit log write failed", exc_info=True)
