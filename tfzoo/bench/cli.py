"""`python -m tfzoo.bench`: argument parsing, dispatch to the flow and data benchmarks, tables."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any, Sequence

from tfzoo.bench.models import KERAS_APPLICATIONS, KERAS_TOLERANCE, _num, bench_model, compare_keras
from tfzoo.bench.timing import _load_average, format_machine, machine_info
from tfzoo.errors import TfzooError, report
from tfzoo.utils import check_arguments

PRECISIONS = ("float32", "mixed_bfloat16")
DISPATCH = {"--flow": "tfzoo.flow.bench", "--data": "tfzoo.data.bench",
            "--input": "tfzoo.data.input_bench", "--predict": "tfzoo.predict.bench"}

def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)




def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("model", "precision", "XLA", "params", "GFLOPs/clip", "fwd ms", "fwd ms/frame",
              "fwd GFLOP/s",
              "fwd/matmul", "train ms", "train GFLOP/s", "train/matmul", "matmul GFLOP/s", "load")
    lines = [header]
    for r in rows:
        lines.append((
            r["model"], r["precision"], "on" if r["jit"] else "off",
            f"{r['params'] / 1e6:.2f}M", _num(r["gflops_per_clip"]),
            _num(r["forward_ms"]), _num(r["forward_ms_per_frame"]), _num(r["forward_gflops_per_s"]),
            _num(r["forward_ratio_to_matmul"]),
            _num(r.get("train_step_ms")), _num(r.get("train_gflops_per_s")),
            _num(r.get("train_ratio_to_matmul")), f"{r['matmul_gflops_per_s']:.0f}",
            _fmt(r.get("load_avg_1min"), ".1f"),
        ))
    return _markdown(lines)


def format_compare(rows: Sequence[dict[str, Any]]) -> str:
    header = ("comparison", "precision", "XLA", "frames", "ours ms/frame", "keras ms/frame",
              "ratio ours/keras", f"<= {KERAS_TOLERANCE:.2f}")
    lines = [header]
    for r in rows:
        lines.append((
            r["compare"], r["precision"], "on" if r["jit"] else "off", str(r["frames_total"]),
            f"{r['ours_ms_per_frame']:.1f}", f"{r['keras_ms_per_frame']:.1f}",
            f"{r['ratio']:.3f}", "yes" if r["within_tolerance"] else "NO",
        ))
    return _markdown(lines)


def _markdown(lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    def row(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([row(lines[0]), sep] + [row(line) for line in lines[1:]])


def _split_list(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def _jit_modes(value: str) -> list[bool]:
    modes = []
    for v in _split_list([value]):
        v = v.lower()
        if v in ("on", "true", "1", "yes", "xla"):
            modes.append(True)
        elif v in ("off", "false", "0", "no"):
            modes.append(False)
        else:
            raise argparse.ArgumentTypeError(f"--jit takes on, off or on,off; got {value!r}")
    return modes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tfzoo.bench",
        description="Benchmark tfzoo models: parameters, graph-counted GFLOPs, forward and "
        "training-step time, achieved GFLOP/s against a dense matmul measured in the same run. "
        "`--flow ...` and `--data ...` hand the remaining arguments to tfzoo.flow.bench / "
        "tfzoo.data.bench.",
    )
    p.add_argument("--model", action="append", metavar="NAME",
                   help="registered model name (repeat or comma-separate); see --list")
    p.add_argument("--list", action="store_true", help="list registered models and exit")
    p.add_argument("--frames", type=int, default=16, help="T (default 16)")
    p.add_argument("--size", type=_size, default=(224, 224),
                   help="frame size: S (H = W) or HxW, e.g. 600x1000 (default 224)")
    p.add_argument("--batch", type=int, default=1, help="clips per batch (default 1)")
    p.add_argument("--precision", default="float32",
                   help="float32, mixed_bfloat16, or both comma-separated (default float32)")
    p.add_argument("--runs", type=int, default=5, help="timed calls per measurement (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    p.add_argument("--jit", nargs="?", const="on", default="off", metavar="on|off|on,off",
                   help="XLA (tf.function jit_compile): --jit alone means on (default off)")
    p.add_argument("--no_train", action="store_true", help="skip the training-step timing")
    p.add_argument("--compare_keras", action="store_true",
                   help="time keras.applications.ResNet on the B*T frames against our "
                   "VideoResNet body, same precision (issue #3)")
    p.add_argument("--compare_depth", type=int, default=50, choices=sorted(KERAS_APPLICATIONS),
                   help="ResNet depth for --compare_keras (default 50)")
    p.add_argument("--override", action="append", metavar="KEY=JSON", default=[],
                   help="constructor override for every --model, e.g. --override width=8 "
                   "--override 'blocks=[1,1,1,1]'")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document {machine, rows, compare_keras} on stdout")
    return p


def _size(value: str) -> tuple[int, int]:
    parts = value.lower().split("x")
    if len(parts) in (1, 2) and all(p.strip().isdigit() for p in parts):
        h, w = (int(parts[0]), int(parts[-1]))
        return h, w
    raise argparse.ArgumentTypeError(f"expected S or HxW (e.g. 224 or 600x1000), got {value!r}")


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--override takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _dispatch(flag: str, rest: list[str]) -> int:
    module_name = DISPATCH[flag]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            print(f"error: {flag} needs {module_name}, which is not in this checkout of tfzoo "
                  f"({e}).", file=sys.stderr)
            return 2
        raise
    entry = getattr(module, "main", None)
    if not callable(entry):
        print(f"error: {module_name} has no main(argv) function.", file=sys.stderr)
        return 2
    result = entry(rest)
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for flag in DISPATCH:
        if flag in argv:
            other = [f for f in DISPATCH if f != flag and f in argv]
            if other:
                print(f"error: {flag} and {other[0]} cannot be combined", file=sys.stderr)
                return 2
            rest = list(argv)
            rest.remove(flag)
            return _dispatch(flag, rest)

    parser = build_parser()
    args = parser.parse_args(argv)

    import tfzoo

    if args.list:
        for name in tfzoo.list_models():
            print(name)
        return 0
    models = _split_list(args.model)
    if not models and not args.compare_keras:
        parser.error("give --model=NAME (see --list) and/or --compare_keras")
    precisions = _split_list([args.precision])
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        parser.error(f"--precision takes {', '.join(PRECISIONS)} (comma-separated); got {args.precision!r}")
    try:
        jits = _jit_modes(args.jit)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    for name, value in (("--frames", args.frames), ("--size", min(args.size)), ("--batch", args.batch),
                        ("--runs", args.runs)):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    try:
        overrides = _parse_overrides(args.override)
    except ValueError as e:
        parser.error(str(e))
    for name in models:  # unknown names and misspelt overrides fail before any model is built
        try:
            check_arguments(f"--override for {name!r}", tfzoo.registry.get_entry(name).builder,
                            overrides)
        except TfzooError as e:
            return report(e, "python -m tfzoo.bench")

    def log(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    info = machine_info()
    if not args.json:
        print(format_machine(info), flush=True)
    load = info["load_avg_1min"]
    if load is not None and load > 0.5 * (info["usable_cores"] or 1):
        log(f"warning: load average {load:.1f} on {info['usable_cores']} cores: other processes "
            "compete for the CPU; absolute times are inflated, prefer the same-run ratios")
    common = dict(frames=args.frames, size=args.size, batch=args.batch, runs=args.runs,
                  warmup=args.warmup, log=log)
    rows, comparisons = [], []
    for name in models:
        for precision in precisions:
            for jit in jits:
                rows.append(bench_model(name, precision=precision, jit=jit,
                                        train=not args.no_train, overrides=overrides, **common))
    if args.compare_keras:
        for precision in precisions:
            for jit in jits:
                comparisons.append(compare_keras(depth=args.compare_depth, precision=precision,
                                                 jit=jit, **common))
    if args.json:
        info["load_avg_1min_end"] = _load_average()
        print(json.dumps({"machine": info, "rows": rows, "compare_keras": comparisons}, indent=1))
    else:
        settings = (f"batch {args.batch}, {args.frames} frames per clip (1 for frame models), "
                    f"{args.size[0]}x{args.size[1]}, "
                    f"median of {args.runs} runs after {args.warmup} warm-up")
        if rows:
            print(f"\nModels ({settings}):\n" + format_table(rows))
        if comparisons:
            print(f"\nPer-frame forward vs keras.applications ({settings}):\n"
                  + format_compare(comparisons))
    return 0

