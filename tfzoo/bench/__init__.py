"""Model benchmark: parameters, graph-counted GFLOPs, forward / training-step time, GFLOP/s.

    python -m tfzoo.bench --model=resnet50 --model=tresnet50 \\
        --frames=16 --size=224 --batch=1 --precision=float32,mixed_bfloat16 [--json]
    python -m tfzoo.bench --compare_keras --precision=float32,mixed_bfloat16
    python -m tfzoo.bench --flow ...   # -> tfzoo.flow.tvl1_bench.main(rest)
    python -m tfzoo.bench --data ...   # -> tfzoo.data.throughput_bench.main(rest)
    python -m tfzoo.bench --predict ...  # -> tfzoo.bench.prediction.main(rest)

What is measured (docs/design.md, "Measuring"):
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

The package: `flops` (counting from the graph), `timing` (latency, matmul reference, machine),
`models` (`bench_model`, `compare_keras`); the program is `cli` (`python -m tfzoo.bench`).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfzoo.bench.flops import FlopCountError, count_graph_flops, op_multiply_adds  # noqa: E402
from tfzoo.bench.models import bench_model, compare_keras, synthetic_inputs  # noqa: E402
from tfzoo.bench.timing import machine_info, matmul_gflops, time_calls  # noqa: E402

__all__ = ["FlopCountError", "bench_model", "compare_keras", "count_graph_flops", "machine_info",
           "matmul_gflops", "op_multiply_adds", "synthetic_inputs", "time_calls"]
