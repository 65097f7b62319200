"""The package's own source, for tests that hold every module to a convention."""

from __future__ import annotations

import ast

from _paths import REPO


def unmarked(select, mark: str) -> list[str]:
    """`file:line: source` of each node that `select(tree)` yields in tfzoo/ and export/ and
    that carries no `# <mark>` comment on its line or on the line above."""
    found = []
    for top in ("tfzoo", "export"):
        for path in sorted((REPO / top).rglob("*.py")):
            lines = path.read_text().splitlines()
            for node in select(ast.parse("\n".join(lines), str(path))):
                here = lines[node.lineno - 1]
                above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                if f"# {mark}" not in here and not above.startswith(f"# {mark}"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {here.strip()}")
    return found
