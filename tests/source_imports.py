"""What a module imports, read from its source (imports inside functions included):
for the tests of the layers' direction and of the declared dependencies."""
from __future__ import annotations

import ast
from pathlib import Path


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, names imported from it; [] for `import module`) of every
    absolute import of the module at `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found
