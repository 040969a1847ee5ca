"""`parkgrid audit`: the auditor's commands.

`audit day` is for anyone: it needs a chain URL, the contract's address and a published day
extract, never the platform's database or settings. `audit extract` (staff) writes the
extract the platform publishes; `audit check-signature` checks a signed report or PDF.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.group()
def audit() -> None:
    """Audit a market day from the chain: extracts, reports, signatures."""


@audit.command("extract")
@click.argument("day", metavar="YYYY-MM-DD")
@click.option("--park", "park_code", default=None, help="Park code (default: the only park).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), required=True,
              help="Where to write the extract (a zip).")
def audit_extract_command(day: str, park_code: str | None, out: str) -> None:
    """Write the published extract of DAY: order documents, clearing and settlement files."""
    from .auditor import build_extract
    from .cli import _day, _one_park, _settings
    from .wiring import Platform

    platform = Platform(_settings())
    with platform.unit_of_work() as session:
        data = build_extract(session, _one_park(session, park_code), _day(day))
    Path(out).write_bytes(data)
    click.echo(f"extract of {day} written to {out} ({len(data)} bytes)")


@audit.command("day")
@click.option("--chain-url", required=True, help="JSON-RPC URL of a node of the chain.")
@click.option("--contract", "address", required=True, help="The CapacityMarket's address.")
@click.option("--extract", "extract_path", type=click.Path(exists=True, dir_okay=False),
              required=True, help="The day's published extract (a zip).")
@click.option("--from-block", type=int, default=None,
              help="The contract's deployment block (default: the one the extract names).")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A file holding your private key (hex) to sign the report with.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Write the (signed) JSON report here.")
@click.option("--pdf", "pdf_out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the PDF report here (and its signature next to it as .sig.json).")
def audit_day(chain_url: str, address: str, extract_path: str, from_block: int | None,
              key_file: str | None, json_out: str | None, pdf_out: str | None) -> None:
    """Rebuild the extract's day from the chain and check every record and file against it.

    Exits with status 1 when anything differs, 0 for a clean day.
    """
    from eth_utils import is_address

    from .auditor import ExtractError, audit_extract, render_pdf, sign_report
    from .auditor.report import sign_file
    from .chain import CapacityMarket, ChainError, connect

    if not is_address(address):
        raise click.BadParameter(f"{address!r} is not an address", param_hint="--contract")
    key = Path(key_file).read_text().strip() if key_file else None
    if pdf_out and not key:
        raise click.UsageError("a PDF report is signed: give --key-file")
    try:
        connection = connect(chain_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--chain-url") from exc
    try:
        market = CapacityMarket(connection, address)
        report = audit_extract(market, Path(extract_path).read_bytes(), from_block=from_block)
    except ExtractError as exc:
        raise click.ClickException(str(exc)) from exc
    except ChainError as exc:
        raise click.ClickException(f"the chain at {chain_url}: {exc}") from exc
    document = sign_report(report, key) if key else {"report": report, "signature": None}
    if json_out:
        Path(json_out).write_text(json.dumps(document, indent=1, ensure_ascii=False))
    if pdf_out:
        pdf = render_pdf(document)
        Path(pdf_out).write_bytes(pdf)
        Path(pdf_out + ".sig.json").write_text(json.dumps(sign_file(pdf, key), indent=1))
    counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items())
    if report["clean"]:
        click.echo(f"{report['park']} {report['day']}: clean ({counts})")
        return
    click.echo(f"{report['park']} {report['day']}: {len(report['findings'])} mismatches "
               f"({counts})")
    for finding in report["findings"]:
        click.echo(f"  [{finding['area']}] {finding['subject']}: {finding['detail']}")
    sys.exit(1)


@audit.command("check-signature")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--signature", "signature_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="For a PDF: its .sig.json (default: PATH.sig.json).")
def audit_check_signature(path: str, signature_path: str | None) -> None:
    """Check the signature of a JSON report or of a PDF report; prints the signer."""
    from .auditor import check_signature
    from .auditor.report import check_file_signature

    data = Path(path).read_bytes()
    if data.startswith(b"%PDF"):
        sig = Path(signature_path or path + ".sig.json")
        if not sig.exists():
            raise click.ClickException(f"no signature file {sig}")
        signer = check_file_signature(data, json.loads(sig.read_text()))
    else:
        try:
            signer = check_signature(json.loads(data))
        except ValueError as exc:
            raise click.ClickException(f"not a JSON report: {exc}") from exc
    if signer is None:
        raise click.ClickException("the signature does not hold: the file was changed or "
                                   "signed by someone else")
    click.echo(f"signed by {signer}")
