"""`python -m tfzoo.bench`: argument parsing, dispatch to the flow and data benchmarks, tables."""

from __future__ import annotations

import importlib
import json
import sys
import types
from typing import Any, Sequence

from absl import app, flags

import tfzoo
from tfzoo.bench.models import KERAS_APPLICATIONS, KERAS_TOLERANCE, _num, bench_model, compare_keras
from tfzoo.bench.timing import _load_average, format_machine, machine_info
from tfzoo.errors import TfzooError, report
from tfzoo.utils import check_arguments, markdown_table, parse_flags, underscore_flags

PRECISIONS = ("float32", "mixed_bfloat16")
DISPATCH = {"--flow": "tfzoo.flow.tvl1_bench", "--data": "tfzoo.data.throughput_bench",
            "--input": "tfzoo.data.input_bench", "--predict": "tfzoo.bench.prediction"}

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
    return markdown_table(lines)


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
    return markdown_table(lines)


_markdown = markdown_table  # the name input_bench imports


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
            raise TfzooError(f"--jit={value!r}: expected on, off or on,off")
    return modes


FLAGS = flags.FLAGS
PROG = "python -m tfzoo.bench"


def define_flags():
    """The program's flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_multi_string("model", [], "Registered model name (repeat or comma-separate); "
                              "see --list.")
    flags.DEFINE_bool("list", False, "List registered models and exit.")
    flags.DEFINE_integer("frames", 16, "T, frames per clip.")
    flags.DEFINE_string("size", "224", "Frame size: S (H = W) or HxW, e.g. 600x1000.")
    flags.DEFINE_integer("batch", 1, "Clips per batch.")
    flags.DEFINE_string("precision", "float32", "float32, mixed_bfloat16, or both "
                        "comma-separated.")
    flags.DEFINE_integer("runs", 5, "Timed calls per measurement.")
    flags.DEFINE_integer("warmup", 2, "Untimed calls first.")
    flags.DEFINE_string("jit", "off", "XLA (tf.function jit_compile): on, off or on,off.")
    flags.DEFINE_bool("no_train", False, "Skip the training-step timing.")
    flags.DEFINE_bool("compare_keras", False, "Time keras.applications.ResNet on the B*T frames "
                      "against our VideoResNet body, same precision (issue #3).")
    flags.DEFINE_integer("compare_depth", 50, "ResNet depth for --compare_keras: "
                         f"{', '.join(map(str, sorted(KERAS_APPLICATIONS)))}.")
    flags.DEFINE_multi_string("override", [], "Constructor override KEY=JSON for every "
                              "--model, e.g. --override=width=8 --override='blocks=[1,1,1,1]'.")
    flags.DEFINE_bool("json", False, "Print one JSON document {machine, rows, compare_keras} "
                      "on stdout.")


def _size(value: str) -> tuple[int, int]:
    parts = value.lower().split("x")
    if len(parts) in (1, 2) and all(p.strip().isdigit() for p in parts):
        h, w = (int(parts[0]), int(parts[-1]))
        return h, w
    raise TfzooError(f"--size={value!r}: expected S or HxW, e.g. 224 or 600x1000")


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TfzooError(f"--override takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def dispatch(flag: str, rest: list[str]) -> int:
    """`python -m tfzoo.bench --flow ...`: the benchmark `DISPATCH[flag]` on the remaining
    arguments, as if run on its own."""
    module_name = DISPATCH[flag]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            return report(TfzooError(f"{flag} needs {module_name}, which is not in this "
                                     f"checkout of tfzoo ({e})"), PROG)
        raise
    if not hasattr(module, "define_flags"):  # a program with its own parser: main(argv)
        result = module.main(rest)
        return result if isinstance(result, int) else 0
    module.define_flags()
    app.define_help_flags()
    try:
        argv = FLAGS(underscore_flags([f"{PROG} {flag}", *rest]))
    except flags.Error as e:
        return report(TfzooError(f"{flag}: {e}"), PROG)
    return module.main(argv) or 0


def run(argv: list[str]) -> None:
    """The program: a benchmark of DISPATCH, or the model benchmark (`main`)."""
    chosen = [f for f in DISPATCH if f in argv[1:]]
    if len(chosen) > 1:
        sys.exit(report(TfzooError(f"{chosen[0]} and {chosen[1]} cannot be combined"), PROG))
    if chosen:
        rest = list(argv[1:])
        rest.remove(chosen[0])
        sys.exit(dispatch(chosen[0], rest))
    # `--jit` alone means on (the flag's spelling before absl, whose string flags need a value)
    argv = ["--jit=on" if a == "--jit" else a for a in argv]
    define_flags()
    app.run(main, argv=argv, flags_parser=parse_flags)


def _options():
    """The flags as checked values; a TfzooError names the first bad one."""
    models = _split_list(FLAGS.model)
    if not models and not FLAGS.compare_keras and not FLAGS.list:
        raise TfzooError("give --model=NAME (see --list) and/or --compare_keras")
    precisions = _split_list([FLAGS.precision])
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise TfzooError(f"--precision={FLAGS.precision!r}: expected {', '.join(PRECISIONS)} "
                         "(comma-separated)")
    if FLAGS.compare_depth not in KERAS_APPLICATIONS:
        raise TfzooError(f"--compare_depth={FLAGS.compare_depth}: expected one of "
                         f"{sorted(KERAS_APPLICATIONS)}")
    size = _size(FLAGS.size)
    for name, value in (("--frames", FLAGS.frames), ("--size", min(size)),
                        ("--batch", FLAGS.batch), ("--runs", FLAGS.runs)):
        if value < 1:
            raise TfzooError(f"{name} must be >= 1, got {value}")
    if FLAGS.warmup < 0:
        raise TfzooError(f"--warmup must be >= 0, got {FLAGS.warmup}")
    try:
        overrides = _parse_overrides(FLAGS.override)
    except ValueError as e:
        raise TfzooError(str(e)) from None
    return types.SimpleNamespace(
        models=models, precisions=precisions, jits=_jit_modes(FLAGS.jit), size=size,
        overrides=overrides, list=FLAGS.list, frames=FLAGS.frames, batch=FLAGS.batch,
        runs=FLAGS.runs, warmup=FLAGS.warmup, no_train=FLAGS.no_train,
        compare_keras=FLAGS.compare_keras, compare_depth=FLAGS.compare_depth, json=FLAGS.json)


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    try:
        args = _options()
    except TfzooError as e:
        return report(e, PROG)
    models, precisions, jits, overrides = args.models, args.precisions, args.jits, args.overrides

    if args.list:
        for name in tfzoo.list_models():
            print(name)
        return 0
    from tfzoo.registry import get_entry  # deferred: loads TensorFlow

    for name in models:  # unknown names and misspelt overrides fail before any model is built
        try:
            check_arguments(f"--override for {name!r}", get_entry(name).builder, overrides)
        except TfzooError as e:
            return report(e, PROG)

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

