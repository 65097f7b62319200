"""Timing: median latency of repeated calls, the dense-matmul reference, the machine's description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable

MATMUL_N = 2048

def _sync(value) -> None:
    import tensorflow as tf  # deferred: loads TensorFlow

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
    import tensorflow as tf  # deferred: loads TensorFlow

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    mm = tf.function(lambda: tf.linalg.matmul(a, b))
    return time_calls(mm, runs, warmup)


def matmul_gflops(dtype: str, runs: int = 5, warmup: int = 2, n: int = MATMUL_N) -> float:
    """Achieved GFLOP/s of an n x n x n matmul in `dtype` (median of `runs`)."""
    return 2 * n**3 / statistics.median(matmul_times(dtype, runs, warmup, n)) / 1e9


def compute_dtype(precision: str) -> str:
    return "bfloat16" if precision == "mixed_bfloat16" else "float32"


def _load_average() -> float | None:
    """1-minute load average (other processes competing for the cores), None if unknown."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    import keras  # deferred: loads Keras (TensorFlow)
    import tensorflow as tf  # deferred: loads TensorFlow

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


# Model benchmark
