"""tfzoo.predict: streamed window scores against the model on frames sampled by hand."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfzoo
from tfzoo.errors import DataError
from tfzoo.video import VideoWriter, read_video
from tfzoo.rundir import RunInfo, save_model, write_run_info
from tfzoo.tasks import CLASSIFICATION
from _paths import BIKES, REPO

CLASSES = ["walk", "ride", "jump"]
SIDE = 32
STRIDE_RANGE = (2, 3)  # tau = 2.5 frames at 25 fps


def synthetic_frame(i: int, fps: float, h: int = 48, w: int = 64) -> np.ndarray:
    """Bars moving at a speed that changes every 2 s, on a background that drifts in colour, so
    that windows differ from one another."""
    t = i / fps
    speed = 1 + 4 * (int(t // 2) % 3)
    x = np.arange(w)[None, :] + speed * i
    y = np.arange(h)[:, None]
    bars = ((x // 6) % 2).astype(np.float32) * np.ones((h, 1), np.float32)
    img = np.stack([150 * bars + 50 * np.sin(t) + 60, 120 * bars[::-1] + y, 80 + 40 * np.cos(t / 3)
                    + 0 * bars], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic(path: Path, seconds: float, fps: int = 25, h: int = 48, w: int = 64) -> Path:
    """Encodes the synthetic video frame by frame (never all of it in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=fps) as writer:
        for i in range(int(round(seconds * fps))):
            writer.write(synthetic_frame(i, fps, h, w))
    return path


def make_model_dir(path: Path, *, flip=True, num_frames=8):
    model = tfzoo.create_model("tresnet_small", num_classes=3, blocks=(1, 1, 1, 1), width=8)
    path.mkdir(parents=True, exist_ok=True)
    save_model(model, path)
    info = RunInfo(model="tresnet_small", model_config=model.get_config(), class_names=CLASSES,
                   num_frames=num_frames, image_size=(SIDE, SIDE),
                   config={"stride_range": list(STRIDE_RANGE), "test_flip": flip,
                           "test_short_side": SIDE})
    write_run_info(path, info)
    return model, info


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    model, info = make_model_dir(d)
    return d, model, info


@pytest.fixture(scope="module")
def bikes_result(run):
    # `tfzoo.predict` is callable although `python -m tfzoo.predict` is a module.
    return tfzoo.predict(str(run[0]), BIKES, batch_size=3)


@pytest.fixture(scope="module")
def saved_path(run, tmp_path_factory):
    from export.saved_model import export_saved_model

    _, model, info = run
    return export_saved_model(model, info, tmp_path_factory.mktemp("export"), warmup=False)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("video") / "long.mp4", seconds=40)


def hand_windows(frames: np.ndarray, step: float, window: int, stride: int):
    """Indices of the windows the module docstring describes, computed independently."""
    idx = [int(math.floor(k * step + 0.5)) for k in range(len(frames) + 1)]
    idx = [i for i in idx if i < len(frames)]
    n = len(idx)
    starts = list(range(0, n - window + 1, stride))
    wins = [idx[s:s + window] for s in starts]
    if n < window:
        wins = [idx + [idx[-1]] * (window - n)]
    elif starts[-1] + window < n:
        wins.append(idx[n - window:])
    return wins


def hand_scores(model, frames, wins, flip):
    x = np.stack([frames[w] for w in wins]).astype("float32")
    return CLASSIFICATION.predict(model, x, flip=flip).numpy()


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def check_against_hand(result, model, frames, *, step, window, stride, flip):
    wins = hand_windows(frames, step, window, stride)
    got = [(w["start_frame"], w["end_frame"]) for w in result["windows"]]
    assert got == [(w[0], w[-1]) for w in wins]
    want = hand_scores(model, frames, wins, flip)
    scores = np.array([w["scores"] for w in result["windows"]])
    assert np.ptp(want[:, 0]) > 1e-3  # the windows differ: a misaligned window would show
    np.testing.assert_allclose(scores, want, atol=2e-4, rtol=1e-4)
    # The whole video: the papers' average of pre-softmax scores, then softmax.
    video = result["video_prediction"]
    np.testing.assert_allclose(video["scores"], want.mean(0), atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(video["probabilities"], softmax(want.mean(0)), atol=1e-5)
    order = np.argsort(-want.mean(0))
    assert [c["index"] for c in video["top_k"]] == order.tolist()
    assert [c["label"] for c in video["top_k"]] == [CLASSES[i] for i in order]
    return wins


def test_bikes_windows_equal_the_model_on_hand_sampled_frames(run, bikes_result):
    d, model, _ = run
    result = bikes_result
    frames = read_video(BIKES, short_side=SIDE)
    assert result["fps"] == 25.0 and result["num_frames"] == len(frames) == 250
    assert result["sampling"]["frame_step"] == 2.5 and result["sampling"]["flip"] is True
    wins = check_against_hand(result, model, frames, step=2.5, window=8, stride=4, flip=True)
    w = result["windows"][1]
    assert (w["start"], w["end"]) == (wins[1][0] / 25, (wins[1][-1] + 1) / 25)
    assert result["windows"][-1]["end_frame"] == wins[-1][-1] >= 245  # covers the whole video
    # Frames in memory give the same result as the file (same frames, no resize needed).
    arr = tfzoo.predict(model, frames, fps=25, run_info=run[2])
    np.testing.assert_allclose([w["scores"] for w in arr["windows"]],
                               [w["scores"] for w in result["windows"]], atol=1e-5)


def test_long_synthetic_video_and_frame_rate(run, long_video, tmp_path):
    d, model, info = run
    from tfzoo.prediction import Predictor

    predictor = Predictor(d, flip=False)
    result = tfzoo.predict(predictor, long_video, window=6, stride=5)
    frames = read_video(long_video, short_side=SIDE)
    assert len(frames) == 1000
    check_against_hand(result, model, frames, step=2.5, window=6, stride=5, flip=False)
    # 50 fps: twice as many frames per training stride (motion at its training speed).
    fast = write_synthetic(tmp_path / "fast.mp4", seconds=2, fps=50)
    r = tfzoo.predict(predictor, fast, window=4, stride=2)
    assert r["sampling"]["frame_step"] == 5.0
    assert [(w["start_frame"], w["end_frame"]) for w in r["windows"][:2]] == [(0, 15), (10, 25)]
    # A video shorter than a window: one window, its last frame repeated.
    short = tfzoo.predict(predictor, read_video(BIKES, num_frames=5, short_side=SIDE),
                          window=8, frame_step=1)
    assert [(w["start_frame"], w["end_frame"]) for w in short["windows"]] == [(0, 4)]
    x = read_video(BIKES, num_frames=5, short_side=SIDE)[[0, 1, 2, 3, 4, 4, 4, 4]][None]
    np.testing.assert_allclose(short["windows"][0]["scores"],
                               CLASSIFICATION.predict(model, x.astype("float32"))[0], atol=2e-4)


def test_saved_model_gives_the_keras_scores(run, bikes_result, saved_path):
    from tfzoo.prediction import Predictor

    d, model, info = run
    path = saved_path
    keras_result = bikes_result
    # A loaded SavedModel here; the CLI test reads one from its path.
    for source in (tf.saved_model.load(str(path)),):
        saved = tfzoo.predict(Predictor(source, run_info=info), BIKES)
        assert [w["start_frame"] for w in saved["windows"]] == [
            w["start_frame"] for w in keras_result["windows"]]
        # Log-probabilities differ from logits by a constant per window: same softmax.
        np.testing.assert_allclose(softmax(np.array([w["scores"] for w in saved["windows"]])),
                                   softmax(np.array([w["scores"] for w in keras_result["windows"]])),
                                   atol=1e-5)
        np.testing.assert_allclose(saved["video_prediction"]["probabilities"],
                                   keras_result["video_prediction"]["probabilities"], atol=1e-5)
        assert saved["classes"] == CLASSES
    # Without its run: classes from the signature's top-k labels (k >= 3 here), path given.
    assert Predictor(str(path)).class_names == CLASSES


def test_features_of_an_endpoint(run):
    from tfzoo.models import feature_extractor

    d, model, _ = run
    result = tfzoo.predict(str(d), BIKES, features="conv4", window=4, stride=4, frame_step=5)
    assert "video_prediction" not in result
    frames = read_video(BIKES, short_side=SIDE)
    wins = hand_windows(frames, 5.0, 4, 4)
    maps = feature_extractor(model, ["conv4"])(np.stack([frames[w] for w in wins]).astype("float32"))
    want = tf.reduce_mean(maps["conv4"], axis=[1, 2, 3]).numpy()
    assert result["features"].shape == (len(wins), model.endpoints["conv4"].channels)
    np.testing.assert_allclose(result["features"], want, atol=1e-4, rtol=1e-4)
    whole = tfzoo.predict(str(d), BIKES, features="conv4", window=4, stride=4, frame_step=5,
                          feature_pool="none")
    np.testing.assert_allclose(whole["features"], maps["conv4"].numpy(), atol=1e-4, rtol=1e-4)


def test_errors_name_the_bad_value(run, tmp_path):
    from tfzoo.prediction import PredictError, Predictor
    from tfzoo.tasks import ClassificationTask, register_task
    from tfzoo.tasks.base import _TASKS

    d, model, _ = run
    with pytest.raises(PredictError, match=r"window=0; expected a positive integer"):
        tfzoo.predict(str(d), BIKES, window=0)
    with pytest.raises(ValueError, match=r"unknown endpoints \['conv9'\]"):
        tfzoo.predict(str(d), BIKES, features="conv9")
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(os.urandom(5000))
    with pytest.raises(DataError, match="corrupt.mp4"):
        tfzoo.predict(str(d), bad)

    class Localization(ClassificationTask):
        name = "localization_test"

    if "localization_test" not in _TASKS:
        register_task(Localization())
    model.TASK = "localization_test"
    try:
        with pytest.raises(PredictError, match=r"'localization_test' model.*tfzoo.detect"):
            Predictor(model)
    finally:
        del model.TASK


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tfzoo.predict", "--noprogress", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_cli_one_video_json_csv_plot(run, bikes_result, saved_path, tmp_path):
    """The CLI with a SavedModel path (classes and geometry from the run's run.json)."""
    pytest.importorskip("matplotlib")
    d, _, _ = run
    p = _cli(f"--saved_model={saved_path}", f"--model_dir={d}", f"--video={BIKES}", "--top_k=2",
             f"--json={tmp_path}/o.json", f"--csv={tmp_path}/o.csv", f"--plot={tmp_path}/o.png")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    result = json.loads((tmp_path / "o.json").read_text())
    want = softmax(np.array([w["scores"] for w in bikes_result["windows"]]))
    np.testing.assert_allclose(softmax(np.array([w["scores"] for w in result["windows"]])), want,
                               atol=1e-5)
    top = result["video_prediction"]["top_k"]
    assert len(top) == 2 and top[0]["label"] == bikes_result["video_prediction"]["top_k"][0]["label"]
    assert out.splitlines()[-2].split()[0] == top[0]["label"]
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert len(rows) == len(want)
    assert [float(rows[3][c]) for c in CLASSES] == pytest.approx(want[3].tolist(), abs=1e-5)
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e
def test_folder_kill_resume_and_corrupt_file(run, tmp_path):
    d, _, _ = run
    videos = tmp_path / "videos"
    names = [f"clip{i}" for i in range(4)]
    for i, n in enumerate(names):
        write_synthetic((videos / ("sub" if i % 2 else "")) / f"{n}.mp4", seconds=2 + i)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    out = tmp_path / "out"
    p = _cli(f"--model_dir={d}", f"--videos={videos}", f"--output_dir={out}", "--batch_size=1")
    deadline = time.time() + 240
    while not list(out.glob("*.json")) and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    first = {f.name: f.stat().st_mtime_ns for f in out.glob("*.json")}
    assert first and not list(out.glob(".*.tmp"))  # atomic: no half-written result
    p = _cli(f"--model_dir={d}", f"--videos={videos}", f"--output_dir={out}")
    stdout, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    import re

    done, already, failed = map(int, re.search(r"(\d+) done, (\d+) already done, (\d+) failed",
                                               stdout).groups())
    # The kill landed mid-folder: the rerun skipped the finished videos and did the rest.
    assert (already, failed) == (len(first), 1) and done >= 1 and done + already == len(names)
    assert {f.name: f.stat().st_mtime_ns for f in out.glob("*.json") if f.name in first} == first
    summary = {Path(r["video"]).name: r for r in csv.DictReader((out / "summary.csv").open())}
    assert summary["broken.mp4"]["status"] == "failed" and summary["broken.mp4"]["error"]
    assert "broken.mp4" in (out / "failed.txt").read_text()
    for i, n in enumerate(names):
        key = f"sub__{n}" if i % 2 else n
        result = json.loads((out / f"{key}.json").read_text())
        assert summary[f"{n}.mp4"]["status"] == "ok"
        assert summary[f"{n}.mp4"]["label"] == result["video_prediction"]["top_k"][0]["label"]
        assert result["duration"] == pytest.approx(2 + i)
    # The resumed results are the ones an uninterrupted run gives.
    last = json.loads((out / f"sub__{names[-1]}.json").read_text())
    again = tfzoo.predict(str(d), videos / "sub" / f"{names[-1]}.mp4")
    np.testing.assert_allclose(last["video_prediction"]["scores"],
                               again["video_prediction"]["scores"], atol=1e-5)


_RSS_SCRIPT = """
import resource, sys, tfzoo
r = tfzoo.predict(sys.argv[1], sys.argv[2], batch_size=4)
print(len(r["windows"]), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_video_length(run, tmp_path):
    """1 min vs 10 min of synthetic video: the same peak RSS (streamed decode)."""
    d, _, _ = run
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rss = {}
    for minutes in (1, 10):
        video = write_synthetic(tmp_path / f"{minutes}.mp4", seconds=60 * minutes)
        out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(d), str(video)], env=env,
                             capture_output=True, text=True, check=True, cwd=REPO).stdout
        windows, kb = map(int, out.split())
        rss[minutes] = kb / 1024
        print(f"{minutes} min: {windows} windows, peak RSS {rss[minutes]:.0f} MB")
    assert rss[10] < rss[1] * 1.05 + 20, rss


@pytest.mark.slow  # in-graph TV-L1: ~3 min on a loaded 2-core CPU
def test_two_stream_model_gets_flow_in_the_graph(tmp_path):
    """A two-stream model sees dense windows (consecutive frames), from which TV-L1 flow is
    computed in the graph around run.num_frames chunk centres, as in the export."""
    from tfzoo.flow import TwoStreamFrames

    model = tfzoo.create_model("stresnet50", num_classes=3, blocks=(2, 2, 2, 2), width=4,
                               flow_channels=4)
    info = RunInfo(model="stresnet50", model_config={}, class_names=CLASSES, num_frames=2,
                   image_size=(SIDE, SIDE), config={"stride_range": [2, 3], "test_flip": False,
                                                    "test_short_side": SIDE})
    frames = read_video(BIKES, num_frames=14, short_side=SIDE)
    result = tfzoo.predict(model, frames, run_info=info, window=6, stride=4, fps=25)
    assert result["sampling"]["frame_step"] == 1.0 and result["sampling"]["flow"]
    wins = hand_windows(frames, 1.0, 6, 4)
    assert [(w["start_frame"], w["end_frame"]) for w in result["windows"]] == [
        (w[0], w[-1]) for w in wins]
    streams = TwoStreamFrames(num_chunks=2, flow_stack=2)(
        np.stack([frames[w] for w in wins]).astype("float32"))
    assert float(tf.reduce_max(tf.abs(streams["flow"]))) > 0.1  # real motion in the clip
    want = CLASSIFICATION.predict(model, streams).numpy()
    np.testing.assert_allclose([w["scores"] for w in result["windows"]], want, atol=2e-4,
                               rtol=1e-4)


def two_stream_setup(num_chunks=3, flip=True):
    model = tfzoo.create_model("stresnet50", num_classes=3, blocks=(2, 2, 2, 2), width=4,
                               flow_channels=4)  # L = 2 fields per chunk
    info = RunInfo(model="stresnet50", model_config={}, class_names=CLASSES,
                   num_frames=num_chunks, image_size=(SIDE, SIDE),
                   config={"stride_range": list(STRIDE_RANGE), "test_flip": flip,
                           "test_short_side": SIDE})
    return model, info


def hand_flow_inputs(frames, flow, wins, num_chunks, stack, size):
    """{rgb, flow} of each window built by hand: chunk centres equally spaced in the window,
    L consecutive fields around each centre's video frame clamped to the window's frames,
    bilinear resize, u scaled by the width ratio and v by the height ratio."""
    n, h, w = frames.shape[:3]
    rgb, fl = [], []
    for win in wins:
        centres = np.round(np.linspace(0, len(win) - 1, num_chunks)).astype(int)
        at = np.asarray(win)[centres]
        fields = at[:, None] + np.arange(stack)[None] - stack // 2
        fields = np.clip(fields, win[0], win[-1] - 1)
        stacks = []
        for row in fields:
            f = tf.image.resize(flow[row].astype("float32"), size, method="bilinear").numpy()
            f = f * np.array([size[1] / w, size[0] / h], np.float32)
            stacks.append(np.concatenate(list(f), axis=-1))  # u1, v1, u2, v2, ...
        fl.append(np.stack(stacks))
        img = tf.image.resize(frames[at], size, method="area").numpy()
        rgb.append(np.clip(np.round(img), 0, 255))
    return {"rgb": np.stack(rgb).astype("float32"), "flow": np.stack(fl)}


def test_precomputed_flow_windows_equal_the_model_on_hand_gathered_stacks(tmp_path):
    """flow=: each window's chunks get the L consecutive fields of the video centred on their
    frame (the frames are 2.5 apart), resized with the frames and scaled to pixels of the
    model's resolution."""
    model, info = two_stream_setup()
    n, h, w = 30, 40, 48
    frames = np.stack([synthetic_frame(i, 25, h, w) for i in range(n)])
    rng = np.random.default_rng(0)
    # Smooth, distinct fields: a resize or a wrong field index changes the scores.
    yy, xx = np.mgrid[0:h, 0:w] / 8.0
    flow = np.stack([np.stack([np.sin(xx + i) * (1 + i % 4), np.cos(yy - 0.3 * i)], -1)
                     for i in range(n - 1)]).astype("float32")
    flow += rng.normal(0, 0.1, flow.shape).astype("float32")
    from tfzoo.prediction import Predictor

    predictor = Predictor(model, run_info=info)  # traced once for the three calls
    result = tfzoo.predict(predictor, frames, window=4, stride=3, fps=25, flow=flow)
    s = result["sampling"]
    assert (s["flow"], s["frame_step"], s["flip"]) == ("precomputed", 2.5, True)
    wins = hand_windows(frames, 2.5, 4, 3)
    assert [(x["start_frame"], x["end_frame"]) for x in result["windows"]] == [
        (x[0], x[-1]) for x in wins]
    size = (SIDE, round(w * SIDE / h))
    want = CLASSIFICATION.predict(model, hand_flow_inputs(frames, flow, wins, 3, 2, size),
                                  flip=True).numpy()
    got = np.array([x["scores"] for x in result["windows"]])
    assert np.ptp(want[:, 0]) > 1e-4
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)

    # The same flow from the files python -m tfzoo.flow writes (npz), and as an .npy.
    np.savez(tmp_path / "f.npz", **{f"flow_{i:06d}": f for i, f in enumerate(flow)})
    np.save(tmp_path / "f.npy", np.concatenate([flow, flow[-1:]]))  # N fields: accepted
    for path in (tmp_path / "f.npz", tmp_path / "f.npy"):
        again = tfzoo.predict(predictor, frames, window=4, stride=3, fps=25, flow=str(path))
        np.testing.assert_allclose([x["scores"] for x in again["windows"]], want, atol=2e-4,
                                   rtol=1e-4)


def test_precomputed_flow_errors_name_the_bad_value(run):
    from tfzoo.prediction import PredictError

    model, info = two_stream_setup(flip=False)
    frames = np.stack([synthetic_frame(i, 25, 40, 48) for i in range(10)])
    flow = np.zeros((9, 40, 48, 2), np.float32)
    kw = dict(run_info=info, window=4, fps=25)
    with pytest.raises(PredictError, match=r"flow has 7 fields .* 10 frames; expected 9 \(or 10\)"):
        tfzoo.predict(model, frames, flow=flow[:7], **kw)
    with pytest.raises(PredictError, match=r"size \(40, 40\) .* frames of \(40, 48\)"):
        tfzoo.predict(model, frames, flow=flow[:, :, :40], **kw)
    with pytest.raises(PredictError,
                       match=r"shape \(9, 40, 48, 3\); expected \(N-1 or N, H, W, 2\)"):
        tfzoo.predict(model, frames, flow=np.zeros((9, 40, 48, 3), np.float32), **kw)
    with pytest.raises(PredictError, match=r"flow='nope.txt': no such file"):
        tfzoo.predict(model, frames, flow="nope.txt", **kw)
    with pytest.raises(PredictError, match=r"takes RGB only"):
        tfzoo.predict(run[1], frames, flow=flow, window=4)


@pytest.mark.e2e
def test_precomputed_flow_through_a_saved_model_and_the_cli(tmp_path):
    """A SavedModel whose serving_default takes `rgb` and `flow` gets the same stacks as the
    Keras model (same probabilities); the CLI's --flow reads the npz of python -m tfzoo.flow."""
    from export.saved_model import export_saved_model

    model, info = two_stream_setup(num_chunks=2, flip=False)
    video = write_synthetic(tmp_path / "v.mp4", seconds=0.8, h=40, w=48)  # 20 frames
    flow = np.random.default_rng(1).normal(0, 2, (19, 40, 48, 2)).astype("float32")
    np.savez(tmp_path / "v.npz", **{f"flow_{i:06d}": f for i, f in enumerate(flow)})
    path = export_saved_model(model, info, tmp_path / "export", warmup=False)
    loaded = tf.saved_model.load(str(path))
    assert sorted(loaded.signatures["serving_default"].structured_input_signature[1]) == [
        "flow", "rgb"]
    with pytest.raises(ValueError, match=r"takes a 'flow' input; pass precomputed flow"):
        tfzoo.predict(loaded, video, run_info=info)
    kw = dict(run_info=info, window=4, stride=2)
    keras_result = tfzoo.predict(model, video, flow=flow, **kw)
    saved_result = tfzoo.predict(loaded, video, flow=flow, **kw)
    assert len(keras_result["windows"]) >= 3

    def probs(r):
        return np.array([[c["probability"] for c in sorted(x["top_k"], key=lambda c: c["index"])]
                         for x in r["windows"]])

    np.testing.assert_allclose(probs(saved_result), probs(keras_result), atol=1e-5)

    model_dir = tmp_path / "run"  # the run's classes and geometry for the SavedModel
    model_dir.mkdir()
    write_run_info(model_dir, info)
    out = tmp_path / "out.json"
    proc = _cli(f"--saved_model={path}", f"--model_dir={model_dir}", f"--video={video}",
                f"--flow={tmp_path / 'v.npz'}", "--window=4", "--stride=2", f"--json={out}")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    cli = json.loads(out.read_text())
    assert cli["sampling"]["flow"] == "precomputed"
    np.testing.assert_allclose([x["scores"] for x in cli["windows"]],
                               [x["scores"] for x in saved_result["windows"]], atol=1e-5)


@pytest.mark.slow  # in-graph TV-L1
def test_precomputed_tvl1_flow_gives_the_in_graph_scores():
    """The flow tvl1_video computes, passed as flow=, gives the in-graph TV-L1 path's scores
    (consecutive frames: the same stacks, clamped to the window in both)."""
    from tfzoo.flow import tvl1_video

    model, info = two_stream_setup(num_chunks=2, flip=False)
    frames = read_video(BIKES, num_frames=14, short_side=SIDE)
    kw = dict(run_info=info, window=6, stride=4, fps=25, frame_step=1)
    in_graph = tfzoo.predict(model, frames, **kw)
    pre = tfzoo.predict(model, frames, flow=tvl1_video(frames), **kw)
    assert [x["start_frame"] for x in pre["windows"]] == [x["start_frame"] for x in
                                                          in_graph["windows"]]
    want = np.array([x["scores"] for x in in_graph["windows"]])
    assert np.ptp(want[:, 0]) > 1e-2
    # Measured: 1.1e-6 apart (tvl1_video is XLA-compiled, the in-graph layer is not).
    np.testing.assert_allclose([x["scores"] for x in pre["windows"]], want, atol=2e-5,
                               rtol=1e-5)


@pytest.mark.slow  # exporting the in-graph TV-L1 takes ~30 s
def test_precomputed_flow_through_serving_rgb_flow(tmp_path):
    """A SavedModel exported with in-graph flow takes precomputed flow through its
    serving_rgb_flow signature: the Keras model's probabilities, flipped view included."""
    from export.saved_model import export_saved_model

    model, info = two_stream_setup(num_chunks=2, flip=True)
    path = export_saved_model(model, info, tmp_path, warmup=False, flow_fn="tvl1")
    loaded = tf.saved_model.load(str(path))
    assert "flow" not in loaded.signatures["serving_default"].structured_input_signature[1]
    frames = np.stack([synthetic_frame(i, 25, 40, 48) for i in range(20)])
    flow = np.random.default_rng(1).normal(0, 2, (19, 40, 48, 2)).astype("float32")
    kw = dict(run_info=info, window=4, stride=2, fps=25)
    want = tfzoo.predict(model, frames, flow=flow, **kw)
    got = tfzoo.predict(loaded, frames, flow=flow, **kw)
    assert got["sampling"]["flow"] == "precomputed"
    np.testing.assert_allclose(softmax(np.array([x["scores"] for x in got["windows"]])),
                               softmax(np.array([x["scores"] for x in want["windows"]])),
                               atol=1e-5)


def test_bench_predict_runs_through_tfzoo_bench(capsys, absl_main):
    """`python -m tfzoo.bench --predict ...` hands its flags to tfzoo.bench.prediction."""
    from tfzoo.bench import prediction
    from tfzoo.bench.cli import DISPATCH

    assert DISPATCH["--predict"] == prediction.__name__
    assert absl_main(prediction, ["--size=32", "--seconds=2", "--rounds=1", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["predict"]
    # 50 frames, every 2.5th -> 20 sampled, windows of 8 every 4 -> 4 windows.
    assert (row["video_frames"], row["windows"], row["size"]) == (50, 4, "32x42")
    assert row["ratio_pipeline_to_model"] == pytest.approx(
        row["pipeline_windows_per_s"] / row["model_windows_per_s"])
