"""The layers' direction: specs -> generated; scripts -> handlers (web) -> models (domain
and persistence). Configuration (models/config.py) is readable by every layer. A module
that imports against the direction fails here, named with its line."""
from __future__ import annotations

from pathlib import Path

import pytest

from models.config import ROOT
from tests.source_imports import imports_of

# package -> the project's packages it must never import
FORBIDDEN = {
    "models": {"handlers", "scripts", "tests"},
    "handlers": {"scripts", "tests"},
    "scripts": {"tests"},
}
PROJECT_PACKAGES = {"models", "handlers", "scripts", "tests"}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level project package) of every import in the module, however nested."""
    tops = [(line, module.split(".")[0]) for line, module, _ in imports_of(path)]
    return [(line, top) for line, top in tops if top in PROJECT_PACKAGES]


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
    found = set()
    for _, module, names in imports_of(ROOT / "models" / "ingest" / f"{name}.py"):
        if module == "models.ingest":
            found |= set(names)
        elif module.startswith("models.ingest."):
            found.add(module.split(".")[2])
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


def commits_in(root: Path) -> list[str]:
    """`.commit(` calls in the operations' handlers: the pipeline's unit of work commits."""
    found = []
    for api in ("alpinechat", "wepeople"):
        for path in sorted((root / "handlers" / api).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if ".commit(" in line:
                    found.append(f"{path.relative_to(root)}:{number}")
    return found


def test_handlers_never_commit():
    assert commits_in(ROOT) == []


def test_a_commit_in_a_handler_is_found(tmp_path):
    (tmp_path / "handlers" / "wepeople").mkdir(parents=True)
    (tmp_path / "handlers" / "wepeople" / "ingest.py").write_text("def f(ctx):\n    ctx.db.commit()\n")
    assert commits_in(tmp_path) == ["handlers/wepeople/ingest.py:2"]
