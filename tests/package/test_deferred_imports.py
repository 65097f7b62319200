"""Imports inside functions are the exception (issue 23 §1): each one says why it waits.

A module imports what it needs at its top. An import inside a function stays only where
importing at the top would cost every user of the module something: it loads TensorFlow (a
command's `--help` and argument errors stay fast), it is an optional dependency (OpenCV, Apache
Beam, matplotlib, TF Serving's protos), or it would close an import circle through a package's
`__init__`. Each such import carries `# deferred: <reason>` on its line or the line above.
"""

from __future__ import annotations

import ast

from _paths import REPO


def _function_body_imports(path):
    """(line number, statement) of every import inside a function of `path`."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child, inside)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def _undeferred():
    bad = []
    for top in ("tfzoo", "export"):
        for path in sorted((REPO / top).rglob("*.py")):
            lines = path.read_text().splitlines()
            for node in _function_body_imports(path):
                here = lines[node.lineno - 1]
                above = lines[node.lineno - 2].strip()
                if "# deferred: " not in here and not above.startswith("# deferred: "):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {here.strip()}")
    return bad


def test_every_function_body_import_says_why_it_is_deferred():
    bad = _undeferred()
    assert not bad, ("move these imports to the top of their module, or say why they wait "
                     "(`# deferred: loads TensorFlow`, ...):\n" + "\n".join(bad))


def test_the_walk_sees_imports_in_nested_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\n\ndef f():\n    def g():\n        import json\n"
                    "    import sys  # deferred: a reason\n")
    assert [n.lineno for n in _function_body_imports(path)] == [6, 7]
