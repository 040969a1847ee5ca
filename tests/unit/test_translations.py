"""Every user-facing string is in the Chinese catalogue, and the compiled catalogues are current."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOGUES = ROOT / "platform" / "parkgrid" / "translations"


def extracted_ids(tmp_path: Path) -> set[str]:
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg",
                    "-k", "N_", "-k", "_l", "-o", str(pot), "--no-location", "."],
                   cwd=ROOT, check=True, capture_output=True)
    with pot.open("rb") as handle:
        return {m.id for m in read_po(handle) if m.id}


def test_every_message_has_a_chinese_translation(tmp_path):
    with (CATALOGUES / "zh" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalogue = read_po(handle)
    translated = {m.id for m in catalogue if m.id and m.string}
    missing = extracted_ids(tmp_path) - translated
    assert not missing, f"add these to the zh catalogue (pybabel update): {sorted(missing)}"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_compiled_catalogue_matches_its_source(lang):
    folder = CATALOGUES / lang / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as handle:
        source = read_po(handle)
    with (folder / "messages.mo").open("rb") as handle:
        compiled = read_mo(handle)
    expected = {m.id: m.string for m in source if m.id and m.string}
    assert {m.id: m.string for m in compiled if m.id} == expected
    buffer = io.BytesIO()
    write_mo(buffer, source)
    assert buffer.getvalue() == (folder / "messages.mo").read_bytes(), \
        "recompile: pybabel compile -d platform/parkgrid/translations"
