"""Model benchmark: parameters, graph-counted GFLOPs, forward / training-step time, GFLOP/s.

    python -m tfzoo.bench --model=resnet50 --model=tresnet50 \\
        --frames=16 --size=224 --batch=1 --precision=float32,mixed_bfloat16 [--json]
    python -m tfzoo.bench --compare_keras --precision=float32,mixed_bfloat16
    python -m tfzoo.bench --flow ...   # -> tfzoo.flow.bench.main(rest)
    python -m tfzoo.bench --data ...   # -> tfzoo.data.bench.main(rest)

What is measured (DESIGN.md, "Measuring"):
- GFLOPs are counted from the traced graph of the concrete function, not by hand:
  2 x multiply-adds of every Conv2D/Conv3D/depthwise conv, their backprop ops, MatMul,
  BatchMatMul and Einsum (`count_graph_flops`). Element-wise ops (BN, ReLU, adds, pooling) are
  not counted, the usual convention (ResNet-50: ~4.1 G multiply-adds = ~8.2 GFLOPs per
  224x224 frame). The training step's FLOPs come from its own graph (forward + backward).
- Forward latency: `model(x, training=False)` in a `tf.function` (XLA with --jit), median of
  --runs calls after --warmup calls. Training step: one SGD (momentum 0.9) step on sparse
  cross-entropy, batch as given, same statistics.
- Achieved GFLOP/s and its ratio to a dense 2048^3 matmul of the same dtype (float32, or
  bfloat16 for mixed_bfloat16) timed in the same process right before each row, so the ratio
  holds under the machine's load at that moment.
- --compare_keras: keras.applications.ResNet50(weights=None, include_top=False) on the B*T
  frames (NHWC) against our VideoResNet-50 body on (B, T, H, W, 3), same precision, timed in
  alternating rounds; reports ms/frame and the ratio ours / keras (issue #3: must be <= 1.10).

Benchmarks are programs: nothing here is asserted by the tests except behaviour.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

PRECISIONS = ("float32", "mixed_bfloat16")
MATMUL_N = 2048
KERAS_TOLERANCE = 1.10  # issue #3: ours may be at most 10% slower per frame than keras.applications
DISPATCH = {"--flow": "tfzoo.flow.bench", "--data": "tfzoo.data.bench"}


# --------------------------------------------------------------------------------------------
# FLOP counting from the graph
# --------------------------------------------------------------------------------------------

_CONV_FORWARD = {"Conv2D", "Conv3D", "Conv", "_FusedConv2D", "_FusedConv3D"}
_CONV_BACKPROP_INPUT = {"Conv2DBackpropInput", "Conv2DBackpropInputV2", "Conv3DBackpropInput",
                        "Conv3DBackpropInputV2"}
_CONV_BACKPROP_FILTER = {"Conv2DBackpropFilter", "Conv2DBackpropFilterV2", "Conv3DBackpropFilter",
                         "Conv3DBackpropFilterV2"}
_DEPTHWISE = {"DepthwiseConv2dNative", "DepthwiseConv2dNativeBackpropInput",
              "DepthwiseConv2dNativeBackpropFilter"}
_MATMUL = {"MatMul", "_FusedMatMul"}
_BATCH_MATMUL = {"BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}
_FUNCTION_CALLS = {"PartitionedCall", "StatefulPartitionedCall"}


class FlopCountError(ValueError):
    """A counted op has a dimension unknown at trace time (FLOPs need static shapes)."""


def _dims(shape, op) -> list[int]:
    dims = shape.as_list() if shape.rank is not None else None
    if dims is None or any(d is None for d in dims):
        raise FlopCountError(
            f"op {op.name} ({op.type}) has a dynamic shape {shape}; trace with fully defined "
            "input shapes to count FLOPs"
        )
    return dims


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def op_multiply_adds(op) -> int:
    """Multiply-adds of one graph op (0 for ops that are not convolutions or matmuls)."""
    t = op.type
    if t in _CONV_FORWARD:
        # Each output element is a dot product over the kernel window and input channels.
        return _prod(_dims(op.outputs[0].shape, op)) * _prod(_dims(op.inputs[1].shape, op)[:-1])
    if t in _CONV_BACKPROP_INPUT:  # (input_sizes, filter, out_backprop) -> d input
        return _prod(_dims(op.inputs[2].shape, op)) * _prod(_dims(op.inputs[1].shape, op)[:-1])
    if t in _CONV_BACKPROP_FILTER:  # (input, filter_sizes, out_backprop) -> d filter
        return _prod(_dims(op.inputs[2].shape, op)) * _prod(_dims(op.outputs[0].shape, op)[:-1])
    if t in _DEPTHWISE:
        # Filter (kh, kw, C, multiplier): every element of the full-size output / out_backprop
        # costs kh * kw multiply-adds.
        filt = op.outputs[0] if t.endswith("Filter") else op.inputs[1]
        big = op.outputs[0] if t == "DepthwiseConv2dNative" else op.inputs[2]
        return _prod(_dims(big.shape, op)) * _prod(_dims(filt.shape, op)[:2])
    if t in _MATMUL:
        a = _dims(op.inputs[0].shape, op)
        k = a[0] if op.get_attr("transpose_a") else a[1]
        return _prod(_dims(op.outputs[0].shape, op)) * k
    if t in _BATCH_MATMUL:
        a = _dims(op.inputs[0].shape, op)
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return _prod(_dims(op.outputs[0].shape, op)) * k
    if t == "Einsum":
        # Multiply-adds of a (two-operand) contraction: the product of every index's size.
        lhs = op.get_attr("equation").decode().replace(" ", "").split("->")[0].split(",")
        if len(lhs) < 2 or any("." in term for term in lhs):
            return 0
        sizes: dict[str, int] = {}
        for term, tensor in zip(lhs, op.inputs):
            sizes.update(zip(term, _dims(tensor.shape, op)))
        return _prod(sizes.values())
    return 0


def count_graph_flops(graph_or_fn) -> int:
    """FLOPs (2 x multiply-adds) of a `tf.Graph`, a `ConcreteFunction` or a traced `tf.function`.

    Function-call ops (`PartitionedCall`) are followed into their function graphs when the graph
    carries them (ConcreteFunction graphs do).
    """
    graph = getattr(graph_or_fn, "graph", graph_or_fn)
    return 2 * _graph_multiply_adds(graph, set())


def _graph_multiply_adds(graph, seen: set) -> int:
    total = 0
    for op in graph.get_operations():
        if op.type in _FUNCTION_CALLS:
            name = op.get_attr("f").name
            fn = _find_function(graph, name)
            if fn is None:
                raise FlopCountError(f"cannot follow function call {op.name} -> {name}")
            total += _graph_multiply_adds(fn.graph, seen)
            continue
        total += op_multiply_adds(op)
    return total


def _find_function(graph, name):
    g = graph
    while g is not None:
        fns = getattr(g, "_functions", {})
        if name in fns and hasattr(fns[name], "graph"):
            return fns[name]
        g = getattr(g, "outer_graph", None)
    return None


# --------------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------------


def _sync(value) -> None:
    import tensorflow as tf

    for t in tf.nest.flatten(value):
        if hasattr(t, "numpy"):
            t.numpy()


def time_calls(fn: Callable[[], Any], runs: int, warmup: int) -> list[float]:
    """Seconds per call of `fn()` (its outputs fetched to host), after `warmup` calls."""
    for _ in range(warmup):
        _sync(fn())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        _sync(fn())
        times.append(time.perf_counter() - start)
    return times


def matmul_times(dtype: str, runs: int = 5, warmup: int = 2, n: int = MATMUL_N) -> list[float]:
    """Seconds per n x n x n matmul in `dtype`, `runs` samples."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    mm = tf.function(lambda: tf.linalg.matmul(a, b))
    return time_calls(mm, runs, warmup)


def matmul_gflops(dtype: str, runs: int = 5, warmup: int = 2, n: int = MATMUL_N) -> float:
    """Achieved GFLOP/s of an n x n x n matmul in `dtype` (median of `runs`)."""
    return 2 * n**3 / statistics.median(matmul_times(dtype, runs, warmup, n)) / 1e9


def compute_dtype(precision: str) -> str:
    return "bfloat16" if precision == "mixed_bfloat16" else "float32"


# --------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------


def _load_average() -> float | None:
    """1-minute load average (other processes competing for the cores), None if unknown."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and cpu in ("", platform.machine()):
                    cpu = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = _load_average()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "isa": isa,
        "load_avg_1min": load,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def format_machine(info: dict[str, Any]) -> str:
    load = info["load_avg_1min"]
    text = (
        f"CPU: {info['cpu']} ({info['cores']} cores, {info['usable_cores']} usable; "
        f"{' '.join(info['isa']) or 'no AVX2'}), GPUs: {info['gpus']}; "
        f"TensorFlow {info['tensorflow']}, Keras {info['keras']}, Python {info['python']}"
    )
    return text + (f"; 1-min load average at start {load:.2f}" if load is not None else "")


# --------------------------------------------------------------------------------------------
# Model benchmark
# --------------------------------------------------------------------------------------------


def synthetic_inputs(model, batch: int, frames: int, size: int):
    """Random inputs for every model input: (B, T, H, W, C) video, RGB-like values in [0, 255]."""
    import tensorflow as tf

    values = {}
    for spec in model.inputs:
        shape = list(spec.shape)
        if len(shape) != 5:
            raise ValueError(
                f"bench synthesizes (B, T, H, W, C) inputs; input {spec.name!r} has shape {shape}"
            )
        shape = [batch, frames, size, size, shape[-1] or 3]
        dtype = tf.as_dtype(spec.dtype or "float32")
        if dtype.is_integer:
            x = tf.random.uniform(shape, 0, 256, dtype=tf.int32)
        else:
            x = tf.random.uniform(shape, 0.0, 255.0)
        values[spec.name] = tf.cast(x, dtype)
    if len(values) == 1:
        return next(iter(values.values()))
    return values


def bench_model(
    name: str,
    *,
    precision: str = "float32",
    frames: int = 16,
    size: int = 224,
    batch: int = 1,
    runs: int = 5,
    warmup: int = 2,
    jit: bool = False,
    train: bool = True,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """One row: params, GFLOPs, forward / train-step latency, GFLOP/s, ratio to the matmul."""
    import keras
    import tensorflow as tf

    import tfzoo

    tfzoo.registry.get_entry(name)  # a clear error before any work
    keras.backend.clear_session()
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = tfzoo.create_model(name, **(overrides or {}))
        x = synthetic_inputs(model, batch, frames, size)
        row: dict[str, Any] = {
            "model": name,
            "precision": precision,
            "jit": jit,
            "batch": batch,
            "frames": frames,
            "size": size,
            "params": int(model.count_params()),
            "load_avg_1min": _load_average(),
        }

        # The matmul reference is sampled before and after the model's timings (the machine's
        # load may change in between); the row uses the median of all samples.
        log(f"{name} [{precision}{', XLA' if jit else ''}]: matmul reference")
        mm_dtype = compute_dtype(precision)
        mm_samples = matmul_times(mm_dtype, runs=max(runs, 3), warmup=2)

        forward = tf.function(lambda v: model(v, training=False), jit_compile=jit)
        flops = count_graph_flops(forward.get_concrete_function(x))
        log(f"{name}: forward ({_num(flops / batch / 1e9)} GFLOPs/clip)")
        times = time_calls(lambda: forward(x), runs, warmup)
        fwd = statistics.median(times)
        row.update(
            gflops_per_clip=flops / batch / 1e9,
            forward_ms=fwd * 1e3,
            forward_ms_min=min(times) * 1e3,
            forward_ms_per_frame=fwd * 1e3 / (batch * frames),
            forward_gflops_per_s=flops / fwd / 1e9,
        )

        if train:
            from tfzoo.tasks import get_task

            task = get_task(model)
            y = tf.zeros((batch,), tf.int32)  # class 0: valid for any class count
            optimizer = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
            optimizer.build(model.trainable_variables)

            @tf.function(jit_compile=jit)
            def train_step(v, labels):
                with tf.GradientTape() as tape:
                    loss = task.loss(model, model(v, training=True), labels)
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                return loss

            train_flops = count_graph_flops(train_step.get_concrete_function(x, y))
            log(f"{name}: training step ({_num(train_flops / 1e9)} GFLOPs)")
            times = time_calls(lambda: train_step(x, y), runs, warmup)
            step = statistics.median(times)
            row.update(
                train_gflops_per_step=train_flops / 1e9,
                train_step_ms=step * 1e3,
                train_step_ms_min=min(times) * 1e3,
                train_gflops_per_s=train_flops / step / 1e9,
            )

        mm_samples += matmul_times(mm_dtype, runs=max(runs, 3), warmup=1)
        mm = 2 * MATMUL_N**3 / statistics.median(mm_samples) / 1e9
        row["matmul_dtype"] = mm_dtype
        row["matmul_gflops_per_s"] = mm
        row["forward_ratio_to_matmul"] = row["forward_gflops_per_s"] / mm
        if train:
            row["train_ratio_to_matmul"] = row["train_gflops_per_s"] / mm
        return row
    finally:
        keras.mixed_precision.set_global_policy(previous)
        keras.backend.clear_session()


# --------------------------------------------------------------------------------------------
# keras.applications comparison (issue #3)
# --------------------------------------------------------------------------------------------

KERAS_APPLICATIONS = {50: "ResNet50", 101: "ResNet101", 152: "ResNet152"}


def compare_keras(
    *,
    depth: int = 50,
    precision: str = "float32",
    frames: int = 16,
    size: int = 224,
    batch: int = 1,
    runs: int = 5,
    warmup: int = 2,
    jit: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Our VideoResNet body on (B, T, H, W, 3) vs keras.applications on the B*T frames.

    Both run the same precision and the same number of frames; the two are timed in
    alternating rounds, so load from other processes hits both alike. `ratio` is the median
    over rounds of ours / keras (per frame; > 1 means ours is slower).
    """
    import keras
    import tensorflow as tf

    from tfzoo.backbones import STAGE_BLOCKS, VideoResNet

    if depth not in KERAS_APPLICATIONS:
        raise ValueError(f"--compare_depth must be one of {sorted(KERAS_APPLICATIONS)}, got {depth}")
    keras.backend.clear_session()
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        ours = VideoResNet(blocks=STAGE_BLOCKS[depth])
        reference = getattr(keras.applications, KERAS_APPLICATIONS[depth])(
            weights=None, include_top=False, input_shape=(size, size, 3)
        )
        video = tf.random.uniform((batch, frames, size, size, 3), 0.0, 255.0)
        images = tf.reshape(video, (batch * frames, size, size, 3))
        f_ours = tf.function(lambda v: ours(v, training=False)["conv5"], jit_compile=jit)
        f_ref = tf.function(lambda v: reference(v, training=False), jit_compile=jit)
        log(f"compare_keras ResNet-{depth} [{precision}{', XLA' if jit else ''}]")
        for _ in range(max(warmup, 1)):
            _sync(f_ours(video))
            _sync(f_ref(images))
        t_ours, t_ref = [], []
        for _ in range(runs):
            t_ours += time_calls(lambda: f_ours(video), 1, 0)
            t_ref += time_calls(lambda: f_ref(images), 1, 0)
        n = batch * frames
        ratio = statistics.median(a / b for a, b in zip(t_ours, t_ref))
        return {
            "compare": f"resnet{depth} vs keras.applications.{KERAS_APPLICATIONS[depth]}",
            "load_avg_1min": _load_average(),
            "precision": precision,
            "jit": jit,
            "frames_total": n,
            "size": size,
            "ours_ms_per_frame": statistics.median(t_ours) * 1e3 / n,
            "keras_ms_per_frame": statistics.median(t_ref) * 1e3 / n,
            "ours_ms_per_frame_min": min(t_ours) * 1e3 / n,
            "keras_ms_per_frame_min": min(t_ref) * 1e3 / n,
            "ratio": ratio,
            "ratio_of_min": min(t_ours) / min(t_ref),
            "within_tolerance": ratio <= KERAS_TOLERANCE,
        }
    finally:
        keras.mixed_precision.set_global_policy(previous)
        keras.backend.clear_session()


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _num(value) -> str:
    """One decimal for values >= 10, three significant digits below (tiny test models)."""
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("model", "precision", "XLA", "params", "GFLOPs/clip", "fwd ms", "fwd GFLOP/s",
              "fwd/matmul", "train ms", "train GFLOP/s", "train/matmul", "matmul GFLOP/s", "load")
    lines = [header]
    for r in rows:
        lines.append((
            r["model"], r["precision"], "on" if r["jit"] else "off",
            f"{r['params'] / 1e6:.2f}M", _num(r["gflops_per_clip"]),
            _num(r["forward_ms"]), _num(r["forward_gflops_per_s"]),
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


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


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
    p.add_argument("--size", type=int, default=224, help="H = W (default 224)")
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
    for name, value in (("--frames", args.frames), ("--size", args.size), ("--batch", args.batch),
                        ("--runs", args.runs)):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    try:
        overrides = _parse_overrides(args.override)
    except ValueError as e:
        parser.error(str(e))
    for name in models:
        try:
            tfzoo.registry.get_entry(name)
        except tfzoo.UnknownModelError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

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
        settings = (f"batch {args.batch}, {args.frames} frames, {args.size}x{args.size}, "
                    f"median of {args.runs} runs after {args.warmup} warm-up")
        if rows:
            print(f"\nModels ({settings}):\n" + format_table(rows))
        if comparisons:
            print(f"\nPer-frame forward vs keras.applications ({settings}):\n"
                  + format_compare(comparisons))
    return 0


if __name__ == "__main__":
    sys.exit(main())
