"""Every error tfzoo raises for a user's bad input is a TfzooError (issue 23 §5).

A caller catches them all with `except tfzoo.TfzooError` (and, as TfzooError is a ValueError,
`except ValueError` keeps working); the programs turn one into a single line on stderr. A bare
built-in exception is left only where it is not about the user's input, and says so in a
`# internal:` comment on its line or the line above.
"""

from __future__ import annotations

import ast

import keras
import pytest

import tfzoo
from _paths import BIKES
from _source import unmarked
from tfzoo.errors import DataError, InputSpecError, TfzooError

BUILTIN = {"ValueError", "TypeError", "KeyError", "RuntimeError", "IndexError", "Exception"}


def _builtin_raises(tree):
    for node in ast.walk(tree):
        exc = node.exc if isinstance(node, ast.Raise) else None
        name = exc.func if isinstance(exc, ast.Call) else exc
        if isinstance(name, ast.Name) and name.id in BUILTIN:
            yield node


def test_no_bare_builtin_raise_for_user_input():
    bare = unmarked(_builtin_raises, "internal:")
    assert not bare, ("raise a TfzooError subclass (or mark a non-user error `# internal: why`):\n"
                      + "\n".join(bare))


def test_layer_arguments_and_inputs():
    from tfzoo.layers.fusion import SpatialFusion
    from tfzoo.layers.temporal import TemporalConv

    with pytest.raises(TfzooError, match=r"kernel_size must be a positive odd integer, got 2"):
        TemporalConv(kernel_size=2)
    a, b = keras.Input((2, 4, 4, 3)), keras.Input((2, 4, 4, 5))
    with pytest.raises(InputSpecError, match=r"needs equal channel counts, got 3 \(x_a\) and 5"):
        SpatialFusion("sum")([a, b])
    with pytest.raises(InputSpecError, match=r"expects \(B, T, H, W, C\)"):
        TemporalConv()(keras.Input((4, 3)))


def test_video_reader_arguments():
    from tfzoo.video import read_video

    with pytest.raises(TfzooError, match=r"start must be >= 0, got -1"):
        read_video(BIKES, start=-1)
    with pytest.raises(TfzooError, match=r"num_frames must be >= 1 or None, got 0"):
        read_video(BIKES, num_frames=0)


def test_detection_arguments():
    from tfzoo.detect import detect_video
    from tfzoo.detection.detector import DetectError
    from tfzoo.detection.evaluation import evaluate_vid
    from tfzoo.detection.inference import link_video

    with pytest.raises(DetectError, match=r"stride must be a positive integer, got 0"):
        detect_video(None, BIKES, stride=0)
    with pytest.raises(TfzooError, match=r"annotations must be a dict frame_id"):
        evaluate_vid([], [(0, 1, 2, 3, 4)])
    with pytest.raises(TfzooError, match=r"detection \(0, 1\): expected \(frame_id"):
        evaluate_vid([(0, 1)], {})
    with pytest.raises(TfzooError, match=r"stride must be a positive integer, got 0"):
        link_video([], [], stride=0)


def test_task_refuses_a_model_it_cannot_score():
    from tfzoo.tasks import get_task

    x = keras.Input((2, 8, 8, 3))
    flat = keras.layers.Flatten()(x)
    model = keras.Model(x, [keras.layers.Dense(2)(flat), keras.layers.Dense(2)(flat)], name="two")
    with pytest.raises(TfzooError, match=r"two returns a list of 2 outputs; expected logits"):
        get_task(model).check_outputs(model)
    with pytest.raises(TfzooError, match=r"top_k=0; expected a positive integer"):
        get_task(model).check_export(keras.Model(x, keras.layers.Dense(2)(flat)), ["a", "b"], 0)


def test_corrupt_warmup_record_is_a_data_error():
    from tfzoo.export.warmup import decode_warmup_request

    with pytest.raises(DataError, match=r"warmup record: truncated"):
        decode_warmup_request(b"\x0a\x05ab")
    with pytest.raises(DataError, match=r"PredictionLog.predict_log \(field \d+\) is missing"):
        decode_warmup_request(b"")


def test_registering_a_taken_name():
    from tfzoo.registry import register_model

    name = tfzoo.list_models()[0]
    with pytest.raises(TfzooError, match=rf"model {name!r} is already registered"):
        register_model(name, lambda: None, task="classification")
