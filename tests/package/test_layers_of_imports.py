"""The package is layered: no module imports, directly or through others, a module that imports
it back, counting imports inside functions too; the model layer loads no task, program or
evaluation code.

    python -m pytest -q tests/package/test_layers_of_imports.py   # prints a cycle's path when one exists
"""

from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from _paths import REPO

# The repository folders installed as tfzoo.export, tfzoo.serving, tfzoo.configs
# (tfzoo/_checkout.py): `import export.x` there is the same module as `tfzoo.export.x`.
MAPPED = {"export": "tfzoo.export", "serving": "tfzoo.serving", "configs": "tfzoo.configs"}


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("tfzoo", *MAPPED):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if parts[0] in MAPPED:
                parts[0] = MAPPED[parts[0]]
            out[".".join(parts)] = path
    return out


def _canonical(name: str) -> str:
    head, _, rest = name.partition(".")
    return MAPPED[head] + ("." + rest if rest else "") if head in MAPPED else name


@functools.lru_cache(maxsize=None)
def import_graph() -> dict[str, set[str]]:
    """module -> the tfzoo modules it imports anywhere in its body (`from pkg import sub`
    counts as importing the submodule `pkg.sub` when one exists, else `pkg`)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [_canonical(a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                base = _canonical(base)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:  # `import tfzoo.x.y` of a name inside a module
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# `python -m` programs: they stand above the library whatever folder they sit in.
PROGRAMS = {"tfzoo.train", "tfzoo.evaluate", "tfzoo.detect", "tfzoo.demo", "tfzoo.scripts",
            "tfzoo.data.prepare", "tfzoo.data.throughput_bench", "tfzoo.data.input_bench",
            "tfzoo.export.__main__",
            "tfzoo.predict.__main__", "tfzoo.bench.prediction", "tfzoo.visualize.__main__",
            "tfzoo.visualize.maximize_bench", "tfzoo.bench.__main__", "tfzoo.bench.cli",
            "tfzoo.flow.__main__", "tfzoo.flow.tvl1_bench", "tfzoo.flow.train",
            "tfzoo.detection.dt_blocks_bench", "tfzoo.detection.proposal_recall",
            "tfzoo.experiments.conjunction",
            "tfzoo.serving.dev_server", "tfzoo.serving.client", "tfzoo.serving.loadtest",
            # the benches' old names, aliases for one release
            "tfzoo.data.bench", "tfzoo.detection.bench", "tfzoo.flow.bench",
            "tfzoo.visualize.bench"}


def test_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_reads_imports_inside_functions(tmp_path):
    graph = import_graph()
    # registry and families: the families import the registry, never the other way
    assert "tfzoo.models._registry" in graph["tfzoo.models.resnet"]
    assert not any(m.startswith("tfzoo.models.") and m != "tfzoo.models._registry"
                   for m in graph["tfzoo.models._registry"])


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_data_never_reaches_detection():
    """Detection builds on data (its sources implement data's VideoSource); data's library
    modules reach no detection module, directly or through others (`tfzoo.sources` picks
    between them)."""
    graph = import_graph()
    for m in graph:
        if m.startswith("tfzoo.data") and m not in PROGRAMS:
            bad = sorted(x for x in reachable(graph, m) if x.startswith("tfzoo.detection"))
            assert not bad, f"{m} imports {bad}"


def test_nothing_imports_a_program():
    """Programs (`python -m` modules) import the library; the library imports no program."""
    graph = import_graph()
    assert PROGRAMS <= set(graph), PROGRAMS - set(graph)
    bad = {m: sorted(graph[m] & PROGRAMS) for m in graph
           if m not in PROGRAMS and graph[m] & PROGRAMS}
    assert not bad, bad


def test_predict_is_a_function_next_to_its_program():
    """`tfzoo.predict(...)` is a plain function (no module made callable) and `python -m
    tfzoo.predict` is a program whose folder has nothing a library would import."""
    import types

    import tfzoo

    assert isinstance(tfzoo.predict, types.FunctionType)
    assert tfzoo.predict.Predictor.__module__ == "tfzoo.prediction"  # docs/predict.md
    assert sorted(p.name for p in (REPO / "tfzoo" / "predict").glob("*.py")) == ["__main__.py"]
    assert not [m for m in import_graph() if m.startswith("tfzoo.predict.")
                and m != "tfzoo.predict.__main__"]
    assert not any("tfzoo.predict.__main__" in edges for edges in import_graph().values())


def test_models_load_no_task_program_or_evaluation():
    code = ("import json, sys, tfzoo.models; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tfzoo'))))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert "tfzoo.models.rfcn" in loaded  # the families did load
    layers_above = ("tfzoo.tasks", "tfzoo.evaluate", "tfzoo.train", "tfzoo.detect",
                    "tfzoo.predict", "tfzoo.prediction", "tfzoo.runnable", "tfzoo.export", "tfzoo.serving", "tfzoo.rundir",
                    "tfzoo.demo", "tfzoo.bench", "tfzoo.scripts")
    banned = [m for m in loaded if any(m == p or m.startswith(p + ".") for p in layers_above)]
    assert not banned, banned


def test_old_bench_names_are_aliases():
    """`<package>/bench.py` became `<package>/<what it times>_bench.py`; the old module paths
    give the new modules for one release (`python -m` too: the alias runs the new one). The
    prediction pipeline's bench is `tfzoo.bench.prediction` (`python -m tfzoo.bench
    --predict`): tfzoo/predict/ holds only the program, so that `tfzoo.predict` stays the
    function."""
    import importlib

    for old, new in (("tfzoo.data.bench", "tfzoo.data.throughput_bench"),
                     ("tfzoo.detection.bench", "tfzoo.detection.dt_blocks_bench"),
                     ("tfzoo.flow.bench", "tfzoo.flow.tvl1_bench"),
                     ("tfzoo.visualize.bench", "tfzoo.visualize.maximize_bench")):
        assert importlib.import_module(old) is importlib.import_module(new)
