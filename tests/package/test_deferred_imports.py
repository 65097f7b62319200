"""Imports inside functions are the exception (issue 23 §1): each one says why it waits.

A module imports what it needs at its top. An import inside a function stays only where
importing at the top would cost every user of the module something: it loads TensorFlow (a
command's `--help` and argument errors stay fast), it is an optional dependency (OpenCV, Apache
Beam, matplotlib, TF Serving's protos), or it would close an import circle through a package's
`__init__`. Each such import carries `# deferred: <reason>` on its line or the line above.
"""

from __future__ import annotations

import ast

from _source import unmarked


def _function_body_imports(tree):
    """Every import inside a function of the module `tree`."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child, inside)

    visit(tree, False)
    return found


def test_every_function_body_import_says_why_it_is_deferred():
    bad = unmarked(_function_body_imports, "deferred: ")
    assert not bad, ("move these imports to the top of their module, or say why they wait "
                     "(`# deferred: loads TensorFlow`, ...):\n" + "\n".join(bad))


def test_the_walk_sees_imports_in_nested_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\n\ndef f():\n    def g():\n        import json\n"
                    "    import sys  # deferred: a reason\n")
    tree = ast.parse(path.read_text())
    assert [n.lineno for n in _function_body_imports(tree)] == [6, 7]
