"""The layers' direction: specs -> generated; scripts -> handlers (web) -> models (domain
and persistence). Configuration (models/config.py) is readable by every layer. A module
that imports against the direction fails here, named with its line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from models.config import ROOT

# package -> the project's packages it must never import
FORBIDDEN = {
    "models": {"handlers", "scripts", "tests"},
    "handlers": {"scripts", "tests"},
    "scripts": {"tests"},
}
PROJECT_PACKAGES = {"models", "handlers", "scripts", "tests"}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level project package) of every import in the module, however nested."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in PROJECT_PACKAGES]
    return found


def violations(root: Path) -> list[str]:
    wrong = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, imported in imported_packages(path):
                if imported in forbidden:
                    wrong.append(f"{path.relative_to(root)}:{line} imports {imported} ({package} must not)")
    return wrong


def test_no_module_imports_against_the_layers_direction():
    assert violations(ROOT) == []


@pytest.mark.parametrize("package, statement", [
    ("models", "from handlers.runtime import app\n"),
    ("models", "def late():\n    import scripts.admin\n"),
    ("handlers", "from tests.conftest import x\n"),
])
def test_an_import_against_the_direction_is_found(tmp_path, package, statement):
    (tmp_path / package).mkdir()
    (tmp_path / package / "module.py").write_text(statement, encoding="utf-8")
    (found,) = violations(tmp_path)
    assert found.startswith(f"{package}/module.py:") and f"({package} must not)" in found


# Within the ingest package, the modules below import none above them: the tables, rules
# and encoding are the floor every other ingest module stands on, the service the top.
INGEST_ORDER = ["tables", "rules", "encoding", "quota", "actors", "writer", "reading", "service"]


def _ingest_imports(name: str) -> set[str]:
    tree = ast.parse((ROOT / "models" / "ingest" / f"{name}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "models.ingest":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("models.ingest."):
            found.add(node.module.split(".")[2])
    return found


def test_ingest_modules_import_only_below_themselves():
    assert sorted(p.stem for p in (ROOT / "models" / "ingest").glob("*.py") if p.stem != "__init__") == \
        sorted(INGEST_ORDER)
    for level, name in enumerate(INGEST_ORDER):
        above = set(INGEST_ORDER[level:])
        assert not _ingest_imports(name) & above, f"models/ingest/{name}.py imports {_ingest_imports(name) & above}"
    assert _ingest_imports("tables") == set()


def test_configuration_lives_below_both_layers():
    assert (ROOT / "models" / "config.py").is_file()
    assert not (ROOT / "handlers" / "runtime" / "config.py").exists()
