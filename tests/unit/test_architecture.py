"""The shape rules: platform/ never shadows the standard library, and the cores stay pure."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORES = ("matching", "settlement", "alliance")
FORBIDDEN = ("flask", "flask_babel", "flask_login", "flask_wtf", "flask_smorest", "sqlalchemy",
             "alembic", "web3", "eth_tester", "celery", "kombu", "parkgrid")


def test_import_platform_from_repo_root_is_the_standard_library():
    out = subprocess.run(
        [sys.executable, "-c",
         "import platform; platform.system(); print(platform.__file__); "
         "print(platform.python_version())"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert not out[0].startswith(str(ROOT)), f"platform resolved to {out[0]}"
    assert out[1] == ".".join(map(str, sys.version_info[:3]))


def test_platform_folder_is_not_a_package():
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert (ROOT / "platform" / "parkgrid" / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("core", CORES)
def test_core_source_imports_no_framework(core):
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & set(FORBIDDEN))
        for path in (ROOT / core).rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"core {core} imports frameworks: {offenders}"


@pytest.mark.parametrize("core", CORES)
def test_importing_a_core_loads_no_framework(core):
    code = (f"import sys, pkgutil, importlib, {core}\n"
            f"for m in pkgutil.walk_packages({core}.__path__, '{core}.'):\n"
            "    importlib.import_module(m.name)\n"
            f"print(sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]", f"importing {core} loaded {out}"


def test_the_check_itself_catches_a_framework_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from sqlalchemy import select\nimport flask.json\n")
    assert _imports(bad) & set(FORBIDDEN) == {"sqlalchemy", "flask"}
