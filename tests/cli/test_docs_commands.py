"""The commands in README.md and docs/*.md cannot drift from the programs (issue 24 item 11).

Every `python -m MODULE ...` line of a shell block is extracted (continuation lines joined).
Each module must exist and accept every flag the docs pass it, as its own `--helpfull` /
`--help` lists them (the real parser, not a copy of its flags); and each module must be run by
a named test file, so a newly documented program without one fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
from _paths import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Where each documented program runs in the suite (by its CLI, the same flags).
RUN_BY = {
    "tfzoo.train": "train/test_train.py",
    "tfzoo.evaluate": "train/test_evaluate_splits.py",
    "tfzoo.predict": "predict/test_predict.py",
    "tfzoo.visualize": "visualize/test_visualize.py",
    "tfzoo.visualize.bench": "visualize/test_visualize_regularizers.py",
    "tfzoo.data.prepare": "data/test_data_prepare.py",
    "tfzoo.detect": "detection/test_detection_video.py",
    "tfzoo.detection.synthetic": "detection/test_detection_synthetic.py",
    "tfzoo.flow": "flow/test_flow.py",
    "tfzoo.flow.train": "flow/test_flow.py",
    "tfzoo.bench": "cli/test_bench.py",
    "export": "export/test_export.py",
    "serving.dev_server": "serving/test_serving.py",
    "serving.client": "serving/test_serving.py",
    "serving.loadtest": "serving/test_serving.py",
    "tfzoo.experiments.conjunction": "data/test_conjunction.py",
    "tfzoo.demo": "train/test_demo.py",
    "tfzoo.data.service": "data/test_data_service.py",
    "tfzoo.visualize.maximize_bench": "visualize/test_visualize_regularizers.py",
}


def documented_commands(path: Path) -> list[str]:
    """`python -m ...` commands of the shell (or untagged) fenced blocks of a Markdown file."""
    out, lang, block = [], None, []
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, block = line[3:].strip() or "text", []
                continue
            if lang in ("sh", "bash", "shell", "text"):
                for cmd in re.sub(r"\\\n\s*", " ", "\n".join(block)).splitlines():
                    m = re.search(r"(?:^|\s)(python -m \S+.*)$", cmd.strip())
                    if m and not cmd.strip().startswith("#"):
                        out.append(re.split(r"\s+#", m.group(1))[0].strip())
            lang = None
        elif lang is not None:
            block.append(line)
    return out


COMMANDS = [(p.relative_to(REPO).as_posix(), c) for p in DOCS for c in documented_commands(p)]


@lru_cache(maxsize=None)
def accepted_flags(module: str) -> frozenset:
    """The flags `python -m module` accepts, from its own help text (a module that
    `python -m tfzoo.bench --X` dispatches to: that command's help)."""
    from tfzoo.bench.cli import DISPATCH

    routed = [flag for flag, m in DISPATCH.items() if m == module]
    prog = ["tfzoo.bench", routed[0]] if routed else [module]
    proc = subprocess.run([sys.executable, "-m", *prog, "--helpfull"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    if "unrecognized arguments: --helpfull" in text or proc.returncode not in (0, 1, 2):
        proc = subprocess.run([sys.executable, "-m", *prog, "--help"], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        text = proc.stdout + proc.stderr
    assert "No module named" not in text, f"python -m {module}: {text[-500:]}"
    names = set()
    for no, name in re.findall(r"--(\[no\])?([A-Za-z][\w-]*)", text):
        names.add(name)
        if no:
            names.add("no" + name)
    return frozenset(names)


def test_docs_have_commands():
    assert len(COMMANDS) > 50
    assert {c.split()[2] for _, c in COMMANDS} <= set(RUN_BY), (
        "documented programs without a test file: "
        f"{sorted({c.split()[2] for _, c in COMMANDS} - set(RUN_BY))}")
    for test_file in set(RUN_BY.values()):
        assert (REPO / "tests" / test_file).exists(), test_file


def _program(cmd: str) -> tuple[str, list[str]]:
    """(module whose parser reads the flags, the flag tokens): `python -m tfzoo.bench --flow`
    hands its arguments to tfzoo.flow.bench's parser (tfzoo.bench.cli.DISPATCH)."""
    from tfzoo.bench.cli import DISPATCH

    module = cmd.split()[2]
    tokens = [t for t in shlex.split(cmd.replace("[", " ").replace("]", " "))[3:]
              if t.startswith("--") and t != "--"]
    if module == "tfzoo.bench":
        routed = [t for t in tokens if t in DISPATCH]
        if routed:
            return DISPATCH[routed[0]], [t for t in tokens if t != routed[0]]
    return module, tokens


@pytest.mark.parametrize("module", sorted({_program(c)[0] for _, c in COMMANDS}))
def test_documented_flags_exist(module):
    flags = accepted_flags(module)
    assert flags, f"python -m {module} printed no flags"
    bad = []
    for doc, cmd in COMMANDS:
        parser, tokens = _program(cmd)
        if parser != module:
            continue
        for token in tokens:
            name = token[2:].split("=", 1)[0]
            if name not in flags:
                bad.append(f"{doc}: {cmd!r}: --{name}")
    assert not bad, "documented flags the program does not accept:\n" + "\n".join(bad)
