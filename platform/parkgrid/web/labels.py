"""Words the pages show for stored codes (roles, statuses), marked for the translation catalogue."""

from ..services.errors import N_

LABELS = [
    N_("enterprise"), N_("provider"), N_("settlement"), N_("auditor"), N_("admin"),
    N_("pending"), N_("recorded"), N_("failed"), N_("cancelled"), N_("active"),
    N_("sell"), N_("buy"), N_("new"), N_("amend"), N_("cancel"),
    N_("cleared"), N_("published"), N_("voided"),
]

# Alliance jobs: a readable name for each stored status, event kind and skill code (the codes
# themselves read badly in English), for every page that shows a job.
JOB_STATUS_LABELS = {
    "new": N_("New"), "awaiting_dispatch": N_("Awaiting dispatch"), "offered": N_("Offered"),
    "accepted": N_("Accepted"), "en_route": N_("On the way"), "on_site": N_("On site"),
    "in_progress": N_("In progress"), "awaiting_sign_off": N_("Awaiting sign-off"),
    "closed": N_("Closed"), "cancelled": N_("Cancelled"), "escalated": N_("Escalated"),
}
JOB_EVENT_LABELS = {
    "created": N_("Request raised"), "offer": N_("Offered to an electrician"),
    "accept": N_("Offer accepted"), "decline": N_("Offer declined"),
    "offer_expired": N_("Offer expired"), "start_travel": N_("Set off for the site"),
    "check_in": N_("Checked in on site"), "no_show": N_("Did not turn up"),
    "start_work": N_("Work started"), "attach_photo": N_("Photo added"),
    "request_sign_off": N_("Sign-off requested"), "sign_off": N_("Signed off"),
    "cancel": N_("Job cancelled"), "cannot_complete": N_("Could not complete"),
    "escalate": N_("Escalated to staff"),
}
SKILL_LABELS = {
    "low_voltage": N_("Low-voltage work"), "high_voltage": N_("High-voltage work"),
    "explosion_proof": N_("Explosion-proof electrical work"),
    "electrical_testing": N_("Electrical testing"),
}
