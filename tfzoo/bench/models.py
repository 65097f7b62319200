"""Model benchmarks: one row per model and precision (params, GFLOPs, forward / training-step
latency, GFLOP/s and its ratio to the matmul reference), and the keras.applications comparison."""

from __future__ import annotations

import statistics
from typing import Any, Callable

import tfzoo
from tfzoo.bench.flops import count_graph_flops
from tfzoo.bench.timing import (
    MATMUL_N, _load_average, _sync, compute_dtype, matmul_times, time_calls,
)
from tfzoo.errors import TfzooError
from tfzoo.utils import check_choice

KERAS_TOLERANCE = 1.10  # issue #3: ours may be at most 10% slower per frame than keras.applications
def _num(value) -> str:
    """One decimal for values >= 10, three significant digits below (tiny test models)."""
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def frame_size(size) -> tuple[int, int]:
    """(H, W) from an int (square) or a pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def frames_per_input(model, frames: int) -> int:
    """Frames in one input: `frames` for a video model, 1 for a model of single frames."""
    return frames if all(len(s.shape) == 5 for s in model.inputs) else 1


def synthetic_inputs(model, batch: int, frames: int, size):
    """Random inputs for every model input, RGB-like values in [0, 255]: (B, T, H, W, C)
    video, or (B, H, W, C) frames for a detector; `size` is H = W or (H, W)."""
    import tensorflow as tf  # deferred: loads TensorFlow

    h, w = frame_size(size)
    values = {}
    for spec in model.inputs:
        shape = list(spec.shape)
        if len(shape) == 4:
            shape = [batch, h, w, shape[-1] or 3]
        elif len(shape) == 5:
            shape = [batch, frames, h, w, shape[-1] or 3]
        else:
            raise TfzooError(f"bench synthesizes (B, T, H, W, C) or (B, H, W, C) inputs; input "
                             f"{spec.name!r} has shape {shape}")
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
    matmul_n: int = MATMUL_N,
) -> dict[str, Any]:
    """One row: params, GFLOPs, forward / train-step latency, GFLOP/s, ratio to the matmul.

    `matmul_n`: size of the reference matmul (n x n by n x n); smaller references are less
    efficient, so compare ratios only between rows of the same `matmul_n`."""
    import keras  # deferred: loads Keras (TensorFlow)
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.registry import get_entry  # deferred: loads TensorFlow

    get_entry(name)  # a clear error before any work
    keras.backend.clear_session()
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        from tfzoo.tasks import get_task  # deferred: loads TensorFlow

        model = tfzoo.create_model(name, **(overrides or {}))
        task = get_task(model)
        x = synthetic_inputs(model, batch, frames, size)
        frames = frames_per_input(model, frames)
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
        mm_samples = matmul_times(mm_dtype, runs=max(runs, 3), warmup=2, n=matmul_n)

        # What serving computes: a classifier's forward pass, a detector's detect() (proposals,
        # PS-RoI pooling, NMS included).
        forward = tf.function(lambda v: task.serve(model, v), jit_compile=jit)
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
            y = task.synthetic_targets(model, x)
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

        mm_samples += matmul_times(mm_dtype, runs=max(runs, 3), warmup=1, n=matmul_n)
        mm = 2 * matmul_n**3 / statistics.median(mm_samples) / 1e9
        row["matmul_dtype"] = mm_dtype
        row["matmul_n"] = matmul_n
        row["matmul_gflops_per_s"] = mm
        row["forward_ratio_to_matmul"] = row["forward_gflops_per_s"] / mm
        if train:
            row["train_ratio_to_matmul"] = row["train_gflops_per_s"] / mm
        return row
    finally:
        keras.mixed_precision.set_global_policy(previous)
        keras.backend.clear_session()


# keras.applications comparison (issue #3)

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
    import keras  # deferred: loads Keras (TensorFlow)
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.backbones import STAGE_BLOCKS, VideoResNet  # deferred: loads TensorFlow

    check_choice("--compare_depth", depth, sorted(KERAS_APPLICATIONS))
    keras.backend.clear_session()
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        h, w = frame_size(size)
        ours = VideoResNet(blocks=STAGE_BLOCKS[depth])
        reference = getattr(keras.applications, KERAS_APPLICATIONS[depth])(
            weights=None, include_top=False, input_shape=(h, w, 3)
        )
        video = tf.random.uniform((batch, frames, h, w, 3), 0.0, 255.0)
        images = tf.reshape(video, (batch * frames, h, w, 3))
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


# Output
