"""Behaviour of `python -m tfzoo.bench` (no timing assertions: benchmarks are programs)."""

import json
import sys
import types

import keras
import pytest
import tensorflow as tf

from tfzoo import bench
from tfzoo.bench import cli


def _graph(fn, *specs):
    return tf.function(fn).get_concrete_function(*specs)


def test_conv3d_flops_equal_two_multiply_adds():
    layer = keras.layers.Conv3D(8, (1, 3, 3), strides=(1, 2, 2), padding="same", use_bias=False)
    cf = _graph(lambda x: layer(x), tf.TensorSpec((2, 4, 10, 10, 5)))
    # output (2, 4, 5, 5, 8), each element a 1*3*3*5 dot product
    assert bench.count_graph_flops(cf) == 2 * (2 * 4 * 5 * 5 * 8) * (1 * 3 * 3 * 5)


def test_temporal_conv3d_and_dense_flops():
    conv = keras.layers.Conv3D(6, (3, 1, 1), padding="same")
    dense = keras.layers.Dense(7)
    cf = _graph(lambda x: dense(conv(x)), tf.TensorSpec((1, 5, 4, 4, 6)))
    conv_macs = (5 * 4 * 4 * 6) * (3 * 6)
    dense_macs = (5 * 4 * 4) * 6 * 7  # Dense on a 5-D tensor: a (80, 6) x (6, 7) matmul
    assert bench.count_graph_flops(cf) == 2 * (conv_macs + dense_macs)


def test_flops_agree_with_tf_profiler():
    from tensorflow.python.profiler import model_analyzer, option_builder

    w = tf.random.normal((3, 3, 4, 8))
    cf = _graph(lambda x: tf.nn.conv2d(x, w, 2, "SAME"), tf.TensorSpec((2, 10, 10, 4)))
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profiled = model_analyzer.profile(cf.graph, options=options).total_float_ops
    assert bench.count_graph_flops(cf) == profiled == 2 * (2 * 5 * 5 * 8) * (3 * 3 * 4)


def test_backward_conv_flops_counted():
    w = tf.Variable(tf.random.normal((1, 3, 3, 4, 8)))

    def loss_and_grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.conv3d(x, w, [1] * 5, "SAME"))
        return tape.gradient(loss, [x, w])

    cf = _graph(loss_and_grads, tf.TensorSpec((1, 2, 6, 6, 4)))
    forward = 2 * (2 * 6 * 6 * 8) * (3 * 3 * 4)
    assert bench.count_graph_flops(cf) == 3 * forward  # forward, d input, d filter


def test_dynamic_shape_is_a_clear_error():
    w = tf.random.normal((3, 3, 4, 8))
    cf = _graph(lambda x: tf.nn.conv2d(x, w, 1, "SAME"), tf.TensorSpec((None, 8, 8, 4)))
    with pytest.raises(bench.FlopCountError, match="dynamic shape"):
        bench.count_graph_flops(cf)


def test_json_output_of_a_tiny_model(capsys, absl_main):
    code = absl_main(cli, [
        "--model=resnet_small", "--override=blocks=[1,1,1,1]", "--override=width=8",
        "--frames=2", "--size=32", "--runs=1", "--warmup=1", "--json",
    ])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["machine"]["tensorflow"] == tf.__version__ and doc["machine"]["cores"] >= 1
    (row,) = doc["rows"]
    assert row["model"] == "resnet_small" and row["precision"] == "float32"
    for key in ("params", "gflops_per_clip", "forward_ms", "forward_gflops_per_s",
                "forward_ratio_to_matmul", "train_step_ms", "train_gflops_per_step",
                "train_gflops_per_s", "matmul_gflops_per_s"):
        assert row[key] > 0, key
    # A training step does forward + backward: about 2-3x the forward's FLOPs.
    assert 1.5 * row["gflops_per_clip"] < row["train_gflops_per_step"] < 3.5 * row["gflops_per_clip"]
    assert keras.mixed_precision.global_policy().name == "float32"


def test_compare_keras_row():
    row = bench.compare_keras(frames=2, size=32, runs=1, warmup=1)
    assert row["frames_total"] == 2
    assert row["ours_ms_per_frame"] > 0 and row["keras_ms_per_frame"] > 0 and row["ratio"] > 0


def test_unknown_model_is_a_clear_error(capsys, absl_main):
    assert absl_main(cli, ["--model=resnet5O"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet5O'" in err and "resnet50" in err


def test_bad_precision_is_rejected(capsys, absl_main):
    assert absl_main(cli, ["--model=resnet50", "--precision=float16"]) == 2
    assert "float16" in capsys.readouterr().err


def test_flow_and_data_dispatch(monkeypatch, capsys):
    from absl import flags

    seen = {}
    fake = types.ModuleType("tfzoo.flow.tvl1_bench")

    def define_flags():  # once per process in a real run; dispatched twice here
        if "fake_size" not in flags.FLAGS:
            flags.DEFINE_string("fake_size", None, "")

    def fake_main(argv):
        seen["argv"], seen["size"] = argv, flags.FLAGS.fake_size
        return 0

    fake.main, fake.define_flags = fake_main, define_flags
    plain = types.ModuleType("tfzoo.data.throughput_bench")  # a program with its own parser
    plain.main = lambda argv: seen.setdefault("plain", argv) and 0
    monkeypatch.setitem(sys.modules, "tfzoo.flow.tvl1_bench", fake)
    monkeypatch.setitem(sys.modules, "tfzoo.data.throughput_bench", plain)
    try:
        # the old dashed spelling still reaches the flag
        assert cli.dispatch("--flow", ["--fake-size=64"]) == 0
        assert seen["size"] == "64" and seen["argv"] == ["python -m tfzoo.bench --flow"]
        assert cli.dispatch("--flow", ["--model=resnet50"]) == 2
        assert "--flow" in capsys.readouterr().err
    finally:
        flags.FLAGS.unparse_flags()
        delattr(flags.FLAGS, "fake_size")
    assert cli.dispatch("--data", ["--runs=1"]) == 0 and seen["plain"] == ["--runs=1"]


def test_missing_dispatch_target_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tfzoo.data.throughput_bench", None)  # import raises ModuleNotFoundError
    assert cli.dispatch("--data", ["--runs=1"]) == 2
    assert "tfzoo.data.throughput_bench" in capsys.readouterr().err


@pytest.mark.slow  # ~20 s: FLOP counting of the detect and training-step graphs
def test_detector_bench_times_detect_on_hxw_frames(capsys, absl_main):
    """--size=HxW frames (B, H, W, 3) through the served computation (detect: proposals, PS-RoI
    pooling, NMS) and a training step on synthetic ground truth."""
    from tfzoo.models.rfcn import TINY

    overrides = [f"--override={k}={json.dumps(v)}" for k, v in TINY.items()]
    code = absl_main(cli, ["--model=rfcn", *overrides, "--size=48x80", "--frames=3",
                           "--runs=1", "--warmup=1", "--json"])
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["frames"] == 1 and row["forward_ms_per_frame"] == row["forward_ms"]
    assert row["train_step_ms"] > 0
    assert 1.5 * row["gflops_per_clip"] < row["train_gflops_per_step"]
