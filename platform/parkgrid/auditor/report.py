"""The audit report: one JSON document, signed with the auditor's key (an Ethereum key, so
anyone can check the signature with the signer's address alone), and its PDF rendering.

The signature is EIP-191 (`personal_sign`) over the keccak digest of the report's canonical
JSON; the PDF prints that digest and signature and is itself signed the same way over its
SHA-256, so either file can be checked on its own.
"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from ..canonical import canonical_json
from ..services.statement_pdf import MONO, _font
from .extract import DayExtract
from .history import ChainDay
from .verify import Checks

REPORT_TYPE = "parkgrid-audit-report"
PDF_FINDINGS = 200  # findings printed in the PDF; the JSON holds all


def build_report(*, park: str, history: ChainDay, extract: DayExtract, extract_bytes: bytes,
                 chain_id: int, contract: str, head_block: int, checks: list[Checks],
                 scope: str, generated_at: datetime | None = None) -> dict:
    """The report document; `scope` says what was compared ("chain and extract", or also
    "database")."""
    counts: dict[str, int] = {}
    findings = []
    for part in checks:
        for key, value in part.counts.items():
            counts[key] = counts.get(key, 0) + int(value)
        findings += [f.document() for f in part.findings]
    return {
        "type": REPORT_TYPE, "version": 1, "park": park, "day": history.day.isoformat(),
        "scope": scope,
        "chain": {"chain_id": chain_id, "contract": contract, "head_block": head_block,
                  "order_window": list(history.window) if history.window else None},
        "extract_sha256": hashlib.sha256(extract_bytes).hexdigest(),
        "generated_at": (generated_at or datetime.now(UTC)).replace(microsecond=0).isoformat(),
        "clean": not findings, "counts": dict(sorted(counts.items())), "findings": findings,
        "history": history.document(),
    }


def _sign_digest(digest: bytes, key) -> dict:
    signed = Account.sign_message(encode_defunct(primitive=digest), private_key=key)
    return {"signer": Account.from_key(key).address, "digest": "0x" + digest.hex(),
            "signature": "0x" + bytes(signed.signature).hex()}


def sign_report(report: dict, key) -> dict:
    """The signed envelope: {"report": ..., "signature": {signer, digest, signature}}."""
    return {"report": report, "signature": _sign_digest(keccak(canonical_json(report)), key)}


def check_signature(envelope: dict) -> str | None:
    """The signer's address when the envelope's signature holds for its report, else None."""
    try:
        digest = keccak(canonical_json(envelope["report"]))
    except (KeyError, TypeError, ValueError):
        return None
    return _signer(digest, envelope.get("signature"))


def sign_file(data: bytes, key) -> dict:
    """A detached signature of a file (the PDF): over its SHA-256."""
    return _sign_digest(hashlib.sha256(data).digest(), key)


def check_file_signature(data: bytes, signature: dict) -> str | None:
    """The signer's address when the detached signature holds for the file, else None."""
    return _signer(hashlib.sha256(data).digest(), signature)


def _signer(digest: bytes, signature) -> str | None:
    """Who signed `digest`, when `signature` is for it and names that signer; else None."""
    try:
        if "0x" + digest.hex() != signature["digest"]:
            return None
        signer = Account.recover_message(encode_defunct(primitive=digest),
                                         signature=signature["signature"])
    except (KeyError, TypeError, ValueError):
        return None
    return signer if signer == signature.get("signer") else None


def render_pdf(envelope: dict, translate=lambda text, **kw: text % kw if kw else text) -> bytes:
    """The report as a PDF, ending with the signature of the JSON report it renders."""
    _ = translate
    report, signature = envelope["report"], envelope["signature"]
    font = _font()
    text = ParagraphStyle("text", fontName=font, fontSize=9.5, leading=14)
    title = ParagraphStyle("title", parent=text, fontSize=16, leading=22, spaceAfter=6)
    small = ParagraphStyle("small", parent=text, fontSize=8, leading=11)
    mono = ParagraphStyle("mono", parent=text, fontName=MONO, fontSize=7, leading=9)

    def p(value, style=text):
        return Paragraph(escape(str(value)), style)

    def table(rows, widths):
        t = Table(rows, colWidths=widths, repeatRows=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return t

    story = [p(_("Audit report: %(park)s, %(day)s", park=report["park"], day=report["day"]),
               title)]
    verdict = (_("Clean: every check passed.") if report["clean"] else
               _("%(count)d mismatches found.", count=len(report["findings"])))
    story.append(p(verdict))
    facts = [(_("Compared"), report["scope"]),
             (_("Chain id"), report["chain"]["chain_id"]),
             (_("Contract"), report["chain"]["contract"]),
             (_("Head block"), report["chain"]["head_block"]),
             (_("Extract SHA-256"), report["extract_sha256"]),
             (_("Generated"), report["generated_at"])]
    story += [Spacer(1, 3 * mm), table([[p(k, small), p(v, small)] for k, v in facts],
                                       [40 * mm, 130 * mm])]
    story += [Spacer(1, 4 * mm), p(_("What was checked"), text),
              table([[p(_("Check"), small), p(_("Count"), small)]]
                    + [[p(k, small), p(v, small)] for k, v in report["counts"].items()],
                    [120 * mm, 50 * mm])]
    if report["findings"]:
        rows = [[p(_("Area"), small), p(_("Subject"), small), p(_("What differs"), small)]]
        rows += [[p(f["area"], small), p(f["subject"], small), p(f["detail"], small)]
                 for f in report["findings"][:PDF_FINDINGS]]
        story += [Spacer(1, 4 * mm), p(_("Mismatches"), text),
                  table(rows, [22 * mm, 45 * mm, 103 * mm])]
        if len(report["findings"]) > PDF_FINDINGS:
            story.append(p(_("%(count)d more in the JSON report.",
                             count=len(report["findings"]) - PDF_FINDINGS), small))
    story += [Spacer(1, 6 * mm), p(_("Signature of the JSON report"), text),
              p(f"signer {signature['signer']}", mono),
              p(f"digest {signature['digest']}", mono),
              p(f"signature {signature['signature']}", mono)]
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, title=f"Audit {report['park']} {report['day']}",
                      author=signature["signer"], leftMargin=18 * mm, rightMargin=18 * mm,
                      topMargin=16 * mm, bottomMargin=16 * mm).build(story)
    return buffer.getvalue()
