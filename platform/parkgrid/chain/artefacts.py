"""Loading of the committed contract build artefacts (the app never compiles at start-up)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CONTRACTS_DIR", "load_artefact"]

# platform/parkgrid/chain/artefacts.py -> the repository root is three folders up.
DEFAULT_CONTRACTS_DIR = Path(__file__).resolve().parents[3] / "contracts" / "build"

_REQUIRED_KEYS = ("abi", "bytecode", "deployedBytecode", "contractName")


def load_artefact(name: str, contracts_dir: Path | None = None) -> dict[str, Any]:
    """Return the artefact `contracts/build/<name>.json` (abi, bytecode, deployedBytecode…)."""
    path = (contracts_dir or DEFAULT_CONTRACTS_DIR) / f"{name}.json"
    try:
        artefact = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"contract artefact {path} is missing; build it with 'python contracts/compile.py'"
        ) from None
    missing = [key for key in _REQUIRED_KEYS if key not in artefact]
    if missing or artefact["contractName"] != name:
        raise ValueError(f"{path} is not a build artefact of {name} (missing {missing}); "
                         "regenerate it with 'python contracts/compile.py'")
    return artefact
