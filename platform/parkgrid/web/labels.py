"""Words the pages show for stored codes (roles, statuses), marked for the translation catalogue."""

from ..services.errors import N_

LABELS = [
    N_("enterprise"), N_("provider"), N_("settlement"), N_("auditor"), N_("admin"),
    N_("pending"), N_("recorded"), N_("failed"), N_("cancelled"), N_("active"),
    N_("sell"), N_("buy"), N_("new"), N_("amend"), N_("cancel"),
    N_("cleared"), N_("published"), N_("voided"),
]
