"""setup.cfg and the code agree: every third-party import is declared by its own distribution,
and every declared distribution is imported (or, for the few used another way, that use is
still in the named file)."""
from __future__ import annotations

import importlib.metadata
import re
import sys

from models.config import ROOT
from scripts.requirements import requirements
from tests.source_imports import imports_of

# Declared distributions the code uses without importing them, with the file and text that
# show the use (the test fails when the text is gone, so an unused one cannot linger here).
USED_WITHOUT_IMPORT = {
    "gunicorn": ("scripts/serve.py", '"-m", "gunicorn"'),  # the production server, run as a module
    "pytest-xdist": ("tox.ini", "-n auto"),  # a pytest plugin, driven by its option
    "ruff": ("scripts/lint.py", '"-m", "ruff"'),  # the linter, run as a module by scripts/lint
}
SOURCE_DIRS = ("handlers", "models", "scripts", "tests")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    return {_normalize(re.match(r"[A-Za-z0-9._-]+", line).group(0)) for line in requirements()}


def _local_names() -> set[str]:
    """Top-level names the repository itself provides (packages, and test helper modules)."""
    names = set(SOURCE_DIRS) | {"generated"}
    for directory in SOURCE_DIRS:
        names |= {path.stem for path in (ROOT / directory).rglob("*.py")}
    return names


def imports() -> dict[str, set[str]]:
    """Top-level third-party module name -> files importing it (also inside functions)."""
    found: dict[str, set[str]] = {}
    local = _local_names()
    for directory in SOURCE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            for _, module, _ in imports_of(path):
                top = module.split(".", 1)[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def distributions_of(module: str) -> set[str]:
    return {_normalize(d) for d in importlib.metadata.packages_distributions().get(module, [])}


def test_every_import_is_declared():
    names = declared()
    undeclared = {module: sorted(files) for module, files in imports().items()
                  if not distributions_of(module) & names}
    assert not undeclared, f"imported but not declared in setup.cfg (module: files): {undeclared}"


def test_every_declared_distribution_is_used():
    imported = {d for module in imports() for d in distributions_of(module)}
    unused = declared() - imported - set(USED_WITHOUT_IMPORT)
    assert not unused, f"declared in setup.cfg but never imported: {sorted(unused)}"


def test_uses_without_import_are_still_there():
    names = declared()
    for distribution, (path, text) in USED_WITHOUT_IMPORT.items():
        assert distribution in names, f"{distribution} is listed as used but not declared"
        assert text in (ROOT / path).read_text(encoding="utf-8"), f"{distribution}: {text!r} gone from {path}"


def test_the_scan_sees_imports_inside_functions():
    # providers.py imports the SDK lazily; the scan must still see it.
    assert "models/chat/providers.py" in imports()["httpx2"]
