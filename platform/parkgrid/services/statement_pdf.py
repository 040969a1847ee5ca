"""A settlement statement as a PDF (reportlab); Chinese text uses the CID font STSong-Light,
which PDF readers carry, so no font file is shipped."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from .errors import N_

FONT = "STSong-Light"
MONO = "Courier"
Translate = Callable[..., str]


def _plain(message: str, **params) -> str:
    return message % params if params else message


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def render_statement(found: dict, *, park: str, account_name: str, generated_at: datetime,
                     translate: Translate = _plain) -> bytes:
    """The PDF of `found` (a statement from `settlement.statement`, with its "label")."""
    _ = translate
    font = _font()
    run = found["run"]
    text = ParagraphStyle("text", fontName=font, fontSize=9.5, leading=14)
    title = ParagraphStyle("title", parent=text, fontSize=16, leading=22, spaceAfter=6)
    small = ParagraphStyle("small", parent=text, fontSize=8, leading=11)
    mono = ParagraphStyle("mono", parent=text, fontName=MONO, fontSize=7.5, leading=10)
    money = ParagraphStyle("money", parent=small, alignment=TA_RIGHT)

    def p(value: str, style: ParagraphStyle = text) -> Paragraph:
        return Paragraph(escape(str(value)), style)

    period_kind = N_("Day") if run.day is not None else N_("Month")
    facts = [
        (_("Park"), park),
        (_("Enterprise"), f"{found['account']}  {account_name}".strip()),
        (_(period_kind), found["label"]),
        (_("Run"), f"{run.run_number} · {_(run.kind)}"),
    ]
    story = [p(_("Settlement statement"), title),
             Table([[p(k), p(v)] for k, v in facts], colWidths=[32 * mm, 140 * mm],
                   style=TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                     ("LEFTPADDING", (0, 0), (-1, -1), 0)])),
             Spacer(1, 5 * mm)]

    rows = [[p(_("Position"), small), p(_("Section"), small), p(_("Item"), small),
             p(_("Period"), small), p(_("Reference"), small), p(_("Amount (yuan)"), money)]]
    for item in found["lines"]:
        line, section = item["line"], item["section"]
        rows.append([p(item["position"], small), p(_(section), small),
                     p(_(line.kind), small), p("—" if line.period is None else line.period, small),
                     p(line.reference or "", mono), p(_yuan(line.fen), money)])
    if len(rows) == 1:
        rows.append([p(_("No lines: nothing to pay or receive."), small), "", "", "", "", ""])
    table = Table(rows, colWidths=[14 * mm, 24 * mm, 30 * mm, 14 * mm, 64 * mm, 26 * mm],
                  repeatRows=1)
    table.setStyle(TableStyle([
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))
    story += [table, Spacer(1, 5 * mm)]

    total = found["total_fen"]
    if total >= 0:
        story.append(p(_("Total to pay: %(amount)s yuan", amount=_yuan(total))))
    else:
        story.append(p(_("Total to receive: %(amount)s yuan", amount=_yuan(-total))))
    if any(item["section"] == "difference" for item in found["lines"]):
        story.append(p(_("Difference against the previous run: %(amount)s yuan",
                         amount=_yuan(found["difference_fen"]))))
    story.append(p(_("Positive amounts are paid by the account, negative ones are received."),
                   small))
    story.append(Spacer(1, 5 * mm))
    story += [p(_("Statements root"), small), p(run.statements_root or "", mono),
              p(_("Published in transaction"), small), p(run.publish_tx_hash or "—", mono),
              Spacer(1, 3 * mm),
              p(_("Generated at %(time)s", time=generated_at.strftime("%Y-%m-%d %H:%M:%S %Z")),
                small)]

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=16 * mm, rightMargin=16 * mm, topMargin=16 * mm,
        bottomMargin=16 * mm, title=f"{_('Settlement statement')} {found['account']} "
                                    f"{found['label']} #{run.run_number}",
        author="ParkGrid", subject=f"{found['account']} {run.period_id} {run.run_number}",
        creator="ParkGrid")
    document.build(story)
    return buffer.getvalue()
