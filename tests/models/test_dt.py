"""DetectTrack (D&T): the RoI tracking head on the R-FCN, its detect_track contract (what
`python -m tfzoo.detect` consumes), the tracking loss, save/load."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfzoo.detection import decode_boxes, tracking_loss, tracking_rois, tracking_targets
from tfzoo.models.dt import DetectTrack
from tfzoo.models.rfcn import TINY
from _paths import BIKES


@pytest.fixture(scope="module")
def model():
    return DetectTrack(num_classes=2, max_displacement=2, **TINY)


def pairs(seed=0, b=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (b, 2, 64, 80, 3)).astype("uint8")


def test_detect_track_is_detect_plus_the_tracker(model):
    x = pairs()
    out = model.detect_track(x)
    # both frames' detections are the detector's with the authors' make_tubes options (NMS
    # 0.4 with box voting, 25 per class, no score floor: 2 classes x 25 boxes here)
    det = model.detect(x.reshape(2, 64, 80, 3), **model.link_detection_options())
    n = det["num_detections"].numpy()
    np.testing.assert_array_equal(out["num_detections"].numpy()[0], n)
    for f in range(2):
        np.testing.assert_allclose(out["detection_boxes"].numpy()[0, f, :n[f]],
                                   det["boxes"].numpy()[f, :n[f]], atol=1e-4, rtol=1e-6)
    # the tracks are RoITracking on the two frames' features, decoded on frame t's boxes
    feats = model.features(tf.cast(x.reshape(2, 64, 80, 3), tf.float32))
    names = ("conv3", "conv4", "conv5", "reg_maps")
    rois = np.concatenate([np.zeros((n[0], 1)), det["boxes"].numpy()[0, :n[0]]], 1)
    deltas = model.tracker([{k: feats[k][:1] for k in names}, {k: feats[k][1:] for k in names},
                            rois.astype("float32")]).numpy()
    np.testing.assert_allclose(out["track_deltas"].numpy()[0, :n[0]], deltas, atol=1e-4, rtol=1e-6)
    # eq. 8.2-8.3 as written: the deltas decode without the detector's box stds
    assert model.get_config()["tracking_stds"] == [1.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(out["track_boxes"].numpy()[0, :n[0]],
                               decode_boxes(rois[:, 1:], deltas, (1, 1, 1, 1)).numpy(), atol=1e-3)
    assert not out["track_boxes"].numpy()[0, n[0]:].any()
    # the tracklets (test_track_reg): every proposal's regressed box at t whose best class
    # probability is above 0.01, and that box tracked to t + 1
    best = det["best_scores"].numpy()[0]
    starts = det["regressed_boxes"].numpy()[0][best > 0.01]
    assert 0 < len(starts) and int(out["num_tracklets"][0]) == len(starts)
    rois = np.concatenate([np.zeros((len(starts), 1)), starts], 1).astype("float32")
    deltas = model.tracker([{k: feats[k][:1] for k in names}, {k: feats[k][1:] for k in names},
                            rois]).numpy()
    got = out["tracklets"].numpy()[0]
    np.testing.assert_allclose(got[:len(starts), :4], starts, atol=1e-4, rtol=1e-6)
    np.testing.assert_allclose(got[:len(starts), 4:],
                               decode_boxes(starts, deltas, (1, 1, 1, 1)).numpy(), atol=1e-3)
    assert not got[len(starts):].any()


def test_detector_adapter_and_save_load(model, tmp_path):
    from tfzoo.detect import Detector

    x = pairs(1)
    want = model.detect_track(x)
    model.save(tmp_path / "dt.keras")
    again = keras.saving.load_model(tmp_path / "dt.keras")
    assert isinstance(again, DetectTrack) and again.get_config() == model.get_config()
    got = again.detect_track(x)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k], float), np.asarray(want[k], float),
                                   atol=1e-5)
    d_t, d_tau, tracks = Detector(again, class_names=["a", "b"]).detect_pairs(x)
    n = int(want["num_tracklets"][0])
    np.testing.assert_allclose(tracks[0], want["tracklets"].numpy()[0, :n], atol=1e-4,
                               rtol=1e-6)
    np.testing.assert_allclose(d_tau[0]["scores"],
                               want["detection_scores"].numpy()[0, 1][:len(d_tau[0]["scores"])])


def _count_frames(model, monkeypatch):
    """The frames that go through the backbone's first conv, run by run (eager or in a
    tf.function: the count is an op of the graph)."""
    layer = model.get_layer("conv1_conv")
    seen, call = [], layer.call

    def counted(x, *args, **kwargs):
        tf.py_function(lambda n: seen.append(int(n)) or n, [tf.shape(x)[0]], tf.int32)
        return call(x, *args, **kwargs)

    monkeypatch.setattr(layer, "call", counted)
    return seen


def test_clip_runs_each_frame_once_and_equals_the_four_pass_pairs(model, monkeypatch):
    """detect_track_clip on T frames: one network pass a frame, and the numbers of the
    previous path (detect + features again on each pair (t, t+1): 4 passes a pair); carrying
    the last frame's state into the next call gives the same tracks without recomputing it."""
    from tfzoo.detection.dt_blocks_bench import four_pass_detect_track

    x = np.concatenate([pairs(7), pairs(8)[:, :1]], 1)  # (1, 3, 64, 80, 3)
    seen = _count_frames(model, monkeypatch)
    out = {k: v.numpy() for k, v in model.detect_track_clip(x).items()}
    assert seen == [3]
    ref = {k: v.numpy() for k, v in four_pass_detect_track(
        model, np.stack([x[0, :-1], x[0, 1:]], 1)).items()}
    assert sum(seen[1:]) == 2 * 2 * 2  # detect on 4 frames, features on 4 frames
    n = out["num_detections"][0]
    np.testing.assert_array_equal(n, [*ref["num_detections"][:, 0], ref["num_detections"][1, 1]])
    assert n.min() > 0
    for t in range(3):
        p, f = (t, 0) if t < 2 else (1, 1)
        for k in ("detection_boxes", "detection_scores", "detection_classes"):
            np.testing.assert_allclose(out[k][0, t, :n[t]], ref[k][p, f, :n[t]], atol=1e-5)
    # the tracker runs the detections together with the tracklet starts (more RoIs than the
    # reference): float32 sums in another order, ~1e-4 apart; the unnormalised deltas of the
    # untrained tracker decode to boxes of hundreds of pixels
    for t in range(2):
        for k in ("track_boxes", "track_deltas"):
            np.testing.assert_allclose(out[k][0, t], ref[k][t], atol=1e-3, rtol=1e-5)
    assert out["track_boxes"].shape == (1, 2) + ref["track_boxes"].shape[1:]
    del seen[:]
    first, state = model.detect_track_clip(x[:, :2], return_state=True)
    rest = model.detect_track_clip(x[:, 2:], previous=state)
    assert seen == [2, 1]
    # random-weight boxes reach hundreds of pixels: float32 rounding at that size
    np.testing.assert_allclose(rest["track_boxes"].numpy()[:, 0], out["track_boxes"][:, 1],
                               atol=1e-3, rtol=1e-5)  # other RoI batches: float32 order
    np.testing.assert_allclose(rest["tracklets"].numpy()[:, 0], out["tracklets"][:, 1],
                               atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(first["track_deltas"].numpy(), out["track_deltas"][:, :1],
                               atol=1e-3, rtol=1e-5)
    lone = model.detect_track_clip(x[:, :1])
    assert lone["track_boxes"].shape[1] == 0
    np.testing.assert_allclose(lone["detection_scores"].numpy()[0, 0],
                               out["detection_scores"][0, 0], atol=1e-5)


def test_detector_clips_carry_the_maps_and_equal_the_pair_path(model, monkeypatch):
    """The Detector's Keras-model route: runs of frames with the last frame's maps carried
    (4 frames, 4 passes) give the detections and tracklets of the pair path."""
    from tfzoo.detect import Detector, detect_clip_in_pairs

    video = np.concatenate([pairs(9)[0], pairs(10)[0]])  # 4 frames
    detector = Detector(model, class_names=["a", "b"])
    assert detector.route == "model"
    seen = _count_frames(model, monkeypatch)
    dets, tracks, state = [], [], None
    for start in (0, 2):
        d, t, state = detector.detect_clip(video[start:start + 2], None, state)
        dets += d
        tracks += t
    assert sum(seen) == 4 and len(dets) == 4 and len(tracks) == 3
    want_dets, want_tracks, _ = detect_clip_in_pairs(detector, video, range(4))
    for got, want in zip(dets, want_dets):
        assert len(got["scores"]) == len(want["scores"]) > 0
        np.testing.assert_array_equal(got["classes"], want["classes"])
        np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-4, rtol=1e-6)
        np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-6)
    for got, want in zip(tracks, want_tracks):  # other RoI batches: float32 order (5e-4 seen)
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-5)


def test_tracking_loss_is_eq_8_1_on_the_model(model):
    x = pairs(2).astype("float32")
    boxes = np.array([[[[5, 5, 30, 40], [40, 10, 70, 50], [0, 0, 0, 0]],
                       [[9, 6, 34, 41], [0, 0, 0, 0], [38, 12, 69, 52]]]], "float32")
    ids = np.array([[[3, 5, -1], [3, -1, 5]]])
    with tf.GradientTape() as tape:
        loss = model.tracking_loss(x, boxes, ids)
    targets, valid = tracking_targets(boxes, ids)
    rois, idx = tracking_rois(boxes, valid)
    feats = model.features(tf.constant(x.reshape(2, 64, 80, 3)))
    names = ("conv3", "conv4", "conv5", "reg_maps")
    deltas = model.tracker([{k: feats[k][:1] for k in names}, {k: feats[k][1:] for k in names},
                            rois])
    np.testing.assert_allclose(float(loss),
                               float(tracking_loss(deltas, tf.gather_nd(targets, idx))),
                               rtol=1e-5)
    grads = tape.gradient(loss, model.trainable_weights)
    reached = {w.path.split("/")[0] for w, g in zip(model.trainable_weights, grads)
               if g is not None and float(tf.reduce_sum(tf.abs(g))) > 0}
    # the tracking term trains the tracker, the box maps and the backbone (through the
    # correlations), as the thesis notes for the D (& T loss) gain
    assert "track_maps" in reached and "rfcn_bbox" in reached
    assert "rfcn_cls" not in reached and "rpn_cls" not in reached
    assert len(reached) > 4


def test_registered_presets():
    from tfzoo.registry import create_model

    m = create_model("dt", num_classes=3, short_side=None, max_side=None)
    assert isinstance(m, DetectTrack) and m.get_config()["max_displacement"] == 4
    with pytest.raises(ValueError, match="unknown argument 'max_displacment'"):
        DetectTrack.from_config({**m.get_config(), "max_displacment": 3})


@pytest.mark.slow
def test_detect_cli_on_a_model_dir(model, tmp_path, capsys):
    # ~20 s (loading the model, tracing detect on the video's size): slow
    import json

    from tfzoo.detect import main
    from tfzoo.rundir import RunInfo, save_model, write_run_info
    from tfzoo.video import VideoWriter

    run = tmp_path / "run"
    run.mkdir()
    save_model(model, run)
    write_run_info(run, RunInfo(model="dt", model_config=model.get_config(),
                                class_names=["a", "b"], num_frames=1, image_size=(64, 80)))
    with VideoWriter(tmp_path / "in.mp4", fps=5) as w:
        for f in pairs(3)[0]:
            w.write(f)
    code = main(["--model_dir", str(run), "--video", str(tmp_path / "in.mp4"), "--out",
                 str(tmp_path / "out.mp4"), "--json", str(tmp_path / "out.json"),
                 "--min_score", "0", "--no_progress"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["class_names"] == ["a", "b"] and len(doc["frames"]) == 2
    assert all(set(c) <= {"a", "b"} for c in (f["class_names"] for f in doc["frames"]))


@pytest.mark.e2e
def test_export_detect_track_in_the_tf1_session_loader_and_the_cli(model, tmp_path, capsys):
    """The D&T SavedModel as TF Serving loads it (fresh graph, signatures by tensor names):
    `detect_track` and `detect_track_clip` equal the Keras methods, `serving_default` is the
    per-frame detector, and `class_names` is the run's; then `tfzoo.detect --saved_model` on
    frames of bikes.mp4 takes the clip signature, and its JSON is the pair path's (the same
    export seen with `detect_track` only, as an export from before the clip signature). The
    warmup requests replay."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    import cv2

    from export.saved_model import export_saved_model
    from _saved_model import SessionLoaded, warmup_requests
    from tfzoo.detect import Detector, detect_video, main, result_json
    from tfzoo.rundir import RunInfo
    from tfzoo.video import VideoWriter

    info = RunInfo(model="dt", model_config=model.get_config(), class_names=["a", "b"],
                   num_frames=1, image_size=(64, 80))
    path = export_saved_model(model, info, tmp_path / "export")
    loaded = SessionLoaded(path)
    try:
        assert not len(loaded.uninitialized)
        assert sorted(loaded.signatures) == ["class_names", "detect_track", "detect_track_clip",
                                             "serving_default", "tracking_stds"]
        assert [c.decode() for c in loaded.run("class_names")["class_names"]] == ["a", "b"]
        # what track_deltas are encoded with (tfzoo.detect decodes a delta-only export by it)
        np.testing.assert_array_equal(loaded.run("tracking_stds")["tracking_stds"],
                                      np.float32(model.get_config()["tracking_stds"]))
        x = pairs(5, b=2)
        clips = np.concatenate([x, pairs(6, b=2)], 1)  # (2, 4, H, W, 3)
        for name, images, method in (("detect_track", x, model.detect_track),
                                     ("detect_track_clip", clips, model.detect_track_clip)):
            got = loaded.run(name, images=images)
            want = {k: v.numpy() for k, v in method(images).items()}
            assert sorted(got) == sorted(want)
            np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
            assert want["num_detections"].min() > 0
            for b in range(2):
                for f in range(images.shape[1]):
                    n = want["num_detections"][b, f]
                    for k in ("detection_boxes", "detection_scores", "detection_classes"):
                        np.testing.assert_allclose(got[k][b, f, :n], want[k][b, f, :n],
                                                   atol=1e-4, rtol=1e-6)
                    if name == "detect_track":
                        continue
                    if f < images.shape[1] - 1:
                        for k in ("track_boxes", "track_deltas"):
                            np.testing.assert_allclose(got[k][b, f, :n], want[k][b, f, :n],
                                                       atol=1e-3, rtol=1e-5)
                n = want["num_detections"][b, 0]
                if name == "detect_track":
                    for k in ("track_boxes", "track_deltas"):
                        np.testing.assert_allclose(got[k][b, :n], want[k][b, :n],
                                                   atol=1e-3, rtol=1e-5)
        # T = 2 of the clip signature is the pair signature
        pair, clip = loaded.run("detect_track", images=x), loaded.run("detect_track_clip", images=x)
        for k in pair:
            np.testing.assert_allclose(clip[k][:, 0] if "track" in k else clip[k],
                                       pair[k], atol=1e-4, rtol=1e-6)
        single = loaded.run("serving_default", images=x[:, 0])
        det = model.detect(x[:, 0])
        np.testing.assert_array_equal(single["num_detections"], det["num_detections"].numpy())
        # the warmup requests replay as TF Serving does at load (a one-frame clip: no track)
        requests = warmup_requests(Path(path))
        assert sorted(r.model_spec.signature_name for r in requests) == [
            "detect_track", "detect_track_clip", "serving_default"]
        for r in requests:
            inputs = {k: tf.make_ndarray(v) for k, v in r.inputs.items()}
            out = loaded.run(r.model_spec.signature_name, **inputs)
            if r.model_spec.signature_name == "detect_track_clip":
                want = model.detect_track_clip(inputs["images"])
                assert out["track_boxes"].shape[1] == inputs["images"].shape[1] - 1
                np.testing.assert_array_equal(out["num_detections"],
                                              want["num_detections"].numpy())
    finally:
        loaded.close()

    video = BIKES
    cap = cv2.VideoCapture(str(video))
    with VideoWriter(tmp_path / "in.mp4", fps=5) as w:
        for _ in range(5):
            ok, frame = cap.read()
            assert ok
            w.write(cv2.resize(frame, (80, 64))[..., ::-1])
    cap.release()
    # runs of 2 frames: the tracks join the runs through the carried frame
    code = main(["--saved_model", str(path), "--video", str(tmp_path / "in.mp4"), "--out",
                 str(tmp_path / "out.mp4"), "--json", str(tmp_path / "out.json"),
                 "--min_score", "0", "--batch_size", "2", "--no_progress"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["class_names"] == ["a", "b"] and len(doc["frames"]) == 5
    assert sum(len(f["class_names"]) for f in doc["frames"]) > 0
    assert all(set(f["class_names"]) <= {"a", "b"} for f in doc["frames"])
    sm = tf.saved_model.load(str(path))
    assert Detector(sm).route == "clip"
    old = Detector(SimpleNamespace(signatures={k: sm.signatures[k] for k in
                                               ("detect_track", "class_names")}))
    assert old.route == "pairs"
    want = json.loads(result_json(detect_video(old, tmp_path / "in.mp4", batch_size=3,
                                               progress=False), 0.0))
    assert want["frames"][1]["track_ids"] and max(
        max(f["track_ids"]) for f in want["frames"]) >= 0
    for got, ref in zip(doc["frames"], want["frames"]):
        assert got["classes"] == ref["classes"] and got["track_ids"] == ref["track_ids"]
        np.testing.assert_allclose(got["boxes"], ref["boxes"], atol=0.02)
        np.testing.assert_allclose(got["scores"], ref["scores"], atol=2e-5)


def _pair_batch(batch=2, seed=0):
    """One padded batch of frame pairs from the embedded synthetic set (the training source)."""
    from types import SimpleNamespace

    from tfzoo.detection.source import DetectionSource
    from tfzoo.tasks import get_task

    source = DetectionSource(None, pairs=True, synthetic={
        "videos": (2, 1), "frames": 4, "height": 64, "width": 96, "size": (16, 28)})
    spec = SimpleNamespace(image_size=(64, 96), flip=True)
    ds = source.dataset("train", training=True, spec=spec, seed=seed)
    return source, next(iter(get_task("detection").batch(ds, batch, drop_remainder=True)))


def test_pair_source_gives_adjacent_frames_of_one_video():
    source, (x, y) = _pair_batch()
    assert x.shape[:2] == (2, 2) and y["gt_boxes"].shape[:2] == (2, 2)
    frames = {v.video_id: v for v in source.videos("train")}
    for b in range(2):
        # the pair is frames (t, t+1) of one video, possibly flipped together
        found = False
        for video in frames.values():
            for t in range(len(video.frames) - 1):
                pair = np.stack([video.frames[t], video.frames[t + 1]]).astype("float32")
                for img in (pair, pair[:, :, ::-1]):
                    if np.array_equal(img, x[b].numpy()):
                        flipped = img is not pair
                        want = video.boxes[t + 1].reshape(-1, 4)
                        if flipped:
                            want = np.stack([95 - want[:, 2], want[:, 1], 95 - want[:, 0],
                                             want[:, 3]], 1)
                        got = y["gt_boxes"][b, 1].numpy()[y["gt_classes"][b, 1].numpy() >= 0]
                        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-6)
                        np.testing.assert_array_equal(
                            np.sort(y["gt_track_ids"][b, 1].numpy()[y["gt_classes"][b, 1].numpy() >= 0]),
                            np.sort(video.track_ids[t + 1]))
                        found = True
        assert found, b
    np.testing.assert_array_equal(y["image_size"].numpy(), [[[64, 96]] * 2] * 2)


@pytest.mark.e2e
def test_pair_training_trains_detection_and_tracking():
    """fit on frame pairs (DetectTrack.train_step): eq. 8.1's total falls and so does its
    tracking term, i.e. the tracking gradient reaches the tracker through fit."""
    from tfzoo.tasks import get_task

    keras.utils.set_random_seed(2)
    m = DetectTrack(num_classes=4, max_displacement=2, **{**TINY, "freeze_bn": False})
    get_task(m).compile(m, optimizer=keras.optimizers.Adam(3e-3))
    _, (x, y) = _pair_batch()
    track = lambda: float(m.tracking_loss(x, y["gt_boxes"], y["gt_track_ids"]))
    before = track()
    tracker = [w.numpy().copy() for w in m.tracker.trainable_weights]
    assert before > 0
    history = m.fit(tf.data.Dataset.from_tensors((x, y)).repeat(), epochs=6, verbose=0,
                    steps_per_epoch=2, shuffle=False).history["loss"]
    after = track()
    assert history[-1] < history[0], history
    assert after < before, (before, after)
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(tracker, m.tracker.trainable_weights))


def test_pair_training_step_runs_the_backbone_once(monkeypatch):
    """A pair train step runs the 2B frames through the network once (training mode) and its
    loss is the detection terms plus the tracking term on those same maps."""
    from tfzoo.tasks import get_task

    keras.utils.set_random_seed(3)
    m = DetectTrack(num_classes=4, max_displacement=2, **{**TINY, "freeze_bn": False})
    get_task(m).compile(m, optimizer=keras.optimizers.SGD(0.0))
    _, (x, y) = _pair_batch()
    flat = lambda v: tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0))
    maps = m.features(flat(x), training=True)
    want = float(m.compute_loss(flat(x), {k: flat(v) for k, v in y.items()},
                                {n: maps[n] for n in m.output})
                 + m.tracking_loss(x, y["gt_boxes"], y["gt_track_ids"], training=True))
    seen = _count_frames(m, monkeypatch)
    logs = m.train_step((x, y))
    assert seen == [4]
    assert float(logs["loss"]) == pytest.approx(want, rel=1e-5)


def test_pair_train_step_tracking_term_reaches_the_backbone(monkeypatch):
    """With the detection terms switched off, one SGD step of the pair train step (eq. 8.1's
    tracking term alone, on the maps of the step's own training pass) moves the tracker, the
    box maps and the backbone from conv3 on, and not the class maps or the RPN, which the
    tracking term does not read, nor conv1 (frozen, as the authors' prototxt)."""
    from tfzoo.tasks import get_task

    keras.utils.set_random_seed(4)
    m = DetectTrack(num_classes=4, max_displacement=2, **{**TINY, "freeze_bn": False})
    get_task(m).compile(m, optimizer=keras.optimizers.SGD(1.0))
    _, (x, y) = _pair_batch()
    monkeypatch.setattr(m, "compute_loss", lambda *args, **kwargs: tf.constant(0.0))
    names = ("conv1_conv", "conv3_block1_1_conv", "rfcn_bbox", "rfcn_cls", "rpn_cls")
    before = {n: m.get_layer(n).get_weights()[0] for n in names}
    tracker = m.tracker.conv.get_weights()[0]
    logs = m.train_step((x, y))
    assert float(logs["loss"]) > 0  # the tracking term alone, also logged on its own
    assert float(logs["tracking_loss"]) == pytest.approx(float(logs["loss"]), rel=1e-6)
    moved = {n: float(np.abs(m.get_layer(n).get_weights()[0] - before[n]).max()) for n in names}
    assert np.abs(m.tracker.conv.get_weights()[0] - tracker).max() > 0
    assert moved["conv3_block1_1_conv"] > 0 and moved["rfcn_bbox"] > 0, moved
    assert moved["rfcn_cls"] == 0 and moved["rpn_cls"] == 0 and moved["conv1_conv"] == 0, moved


def test_pair_train_step_leaves_conv1_res2_and_batchnorm_unchanged():
    """D&T fine-tuning as the authors' prototxt (conv1, res2 lr_mult 0; BN frozen): one SGD step
    (lr 1) of eq. 8.1 on pairs changes conv3..conv5, the heads and the tracker, and no weight
    of conv1, res2 or any BN layer (moving statistics included)."""
    from _detection_runs import frozen_state
    from tfzoo.tasks import get_task

    keras.utils.set_random_seed(6)
    m = DetectTrack(num_classes=4, max_displacement=2, **TINY)
    get_task(m).compile(m, optimizer=keras.optimizers.SGD(1.0))
    _, (x, y) = _pair_batch()
    frozen = frozen_state(m)
    assert any("conv2_block1" in p for p in frozen) and any("moving_var" in p for p in frozen)
    names = ("conv3_block1_1_conv", "conv4_block1_2_conv", "rfcn_cls", "rfcn_bbox")
    before = {n: m.get_layer(n).get_weights()[0] for n in names}
    tracker = m.tracker.conv.get_weights()[0]
    m.train_step((x, y))
    after = frozen_state(m)
    for path, value in frozen.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    for n in names:
        assert np.abs(m.get_layer(n).get_weights()[0] - before[n]).max() > 0, n
    assert np.abs(m.tracker.conv.get_weights()[0] - tracker).max() > 0


def test_runs_saved_before_keep_their_tracking_normalisation(model):
    """A D&T config written before `tracking_stds` existed (its tracker trained on targets
    divided by the detector's stds) loads with those stds, and its tracks decode with them;
    `tracking_weight` (lambda) scales the term and 0 turns it off."""
    from tfzoo.detection import BOX_STDS

    old = {k: v for k, v in model.get_config().items()
           if k not in ("tracking_stds", "tracking_weight", "box_means", "box_stds",
                        "frozen_stages")}
    legacy = DetectTrack.from_config(old)
    assert legacy.get_config()["tracking_stds"] == list(BOX_STDS)
    legacy.set_weights(model.get_weights())
    x = pairs(2)
    got, want = legacy.detect_track(x), model.detect_track(x)
    np.testing.assert_allclose(got["track_deltas"].numpy(), want["track_deltas"].numpy(),
                               atol=1e-5)
    n = int(want["num_detections"][0, 0])
    rois = want["detection_boxes"].numpy()[0, 0, :n]
    np.testing.assert_allclose(got["track_boxes"].numpy()[0, :n],
                               decode_boxes(rois, want["track_deltas"].numpy()[0, :n],
                                            BOX_STDS).numpy(), atol=1e-3)
    boxes = np.array([[[[5, 5, 30, 40]], [[9, 6, 34, 41]]]], "float32")
    ids = np.array([[[3], [3]]])
    xs = pairs(3).astype("float32")
    full = float(model.tracking_loss(xs, boxes, ids))
    half = DetectTrack.from_config({**model.get_config(), "tracking_weight": 0.5})
    half.set_weights(model.get_weights())
    assert float(half.tracking_loss(xs, boxes, ids)) == pytest.approx(0.5 * full, rel=1e-5)
    with pytest.raises(ValueError, match="tracking_weight=-1"):
        DetectTrack.from_config({**model.get_config(), "tracking_weight": -1})


def test_link_options_reach_the_pre_linking_detections_and_tracklets(model):
    """The pre-linking options are the model's arguments (issue 20: before/after on one trained
    model): NMS IoU, vote weights score + offset, a score floor and a cap across classes give
    exactly `detect`'s voted detections with those options (against the per-class loop in
    test_rfcn.py); `link_tracklets="detections"` returns the detections' own tracks as the
    tracklets, as tfzoo linked before issue 20."""
    before = {"link_nms": 0.3, "link_vote_offset": 1.5, "link_score_threshold": 0.3,
              "link_max_detections": 7, "link_tracklets": "detections"}
    old = DetectTrack.from_config({**model.get_config(), **before})
    old.set_weights(model.get_weights())
    x = pairs(4)
    out = old.detect_track(x)
    opts = old.link_detection_options()
    assert opts == {"box_voting": True, "nms_threshold": 0.3, "max_per_class": 25,
                    "max_detections": 7, "score_threshold": 0.3, "vote_offset": 1.5}
    det = old.detect(x.reshape(2, 64, 80, 3), **opts)
    n = det["num_detections"].numpy()
    assert (n == 7).all()  # the cap applies (random weights: many boxes above 0.3)
    np.testing.assert_array_equal(out["num_detections"].numpy()[0], n)
    assert det["scores"].numpy()[:, :7].min() > 0.3
    # the votes weighted by score + 1.5 differ from make_tubes' (score alone) on these frames
    plain = old.detect(x.reshape(2, 64, 80, 3), **{**opts, "vote_offset": 0.0})
    assert np.abs(plain["boxes"].numpy() - det["boxes"].numpy()).max() > 1e-3
    for f in range(2):
        np.testing.assert_allclose(out["detection_boxes"].numpy()[0, f, :n[f]],
                                   det["boxes"].numpy()[f, :n[f]], atol=1e-4, rtol=1e-6)
    assert int(out["num_tracklets"][0]) == n[0]
    np.testing.assert_allclose(out["tracklets"].numpy()[0, :n[0], :4],
                               det["boxes"].numpy()[0, :n[0]], atol=1e-4)
    np.testing.assert_allclose(out["tracklets"].numpy()[0, :n[0], 4:],
                               out["track_boxes"].numpy()[0, :n[0]], atol=1e-4)
    assert not out["tracklets"].numpy()[0, n[0]:].any()
    # the default model's tracklets are the confident proposals' (more than its detections)
    assert int(model.detect_track(x)["num_tracklets"][0]) != n[0]
    with pytest.raises(ValueError, match="link_tracklets='all'"):
        DetectTrack.from_config({**model.get_config(), "link_tracklets": "all"})
    with pytest.raises(ValueError, match="link_max_detections=0"):
        DetectTrack.from_config({**model.get_config(), "link_max_detections": 0})


@pytest.mark.slow  # ~30 s: four tf.functions traced on a tiny model
def test_pipeline_bench_runs_on_a_tiny_model():
    """`python -m tfzoo.detection.dt_blocks_bench --what pipeline` at test size: it times the three
    paths and reports finite per-frame times and ratios."""
    import re

    from tfzoo.detection.dt_blocks_bench import bench_pipeline

    lines = bench_pipeline(1, frames=3, batch_size=2, size=(64, 80),
                           overrides={**TINY, "max_displacement": 2})
    assert len(lines) == 2 and "64x80, 3 frames, runs of 2" in lines[0]
    numbers = [float(v) for v in re.findall(r"-?\d+\.\d+", " ".join(lines))]
    assert len(numbers) >= 14 and all(np.isfinite(numbers))
    assert float(re.search(r"per frame: (\d+\.\d+) s wall", lines[0]).group(1)) > 0


@pytest.mark.slow  # two training CLIs and evaluate, ~80 s
def test_train_cli_fine_tunes_dt_on_pairs_from_an_rfcn_run(tmp_path):
    """`python -m tfzoo.train --config=dt_synthetic --set init_from=RFCN_RUN` (shrunk): the
    R-FCN's layers start the D&T, which trains on frame pairs and writes a model directory
    whose DetectTrack loads and tracks."""
    import csv
    import json

    from _detection_runs import run_cli
    from tfzoo.rundir import load_model

    synthetic = {"videos": (2, 1), "frames": 3, "height": 64, "width": 96, "size": (16, 28)}
    common = ["--epochs=1", "--steps=2", "--batch_size=2", "--verbose=0",
              "--set", "image_size=(64,96)"]
    code, _, err = run_cli("tfzoo.train", [
        "--config=rfcn_synthetic", f"--model_dir={tmp_path / 'rfcn'}", *common,
        "--set", f"dataset_options={{'synthetic': {synthetic!r}}}",
        "--set", f"model_overrides={TINY!r}"])
    assert code == 0, err[-3000:]
    code, out, err = run_cli("tfzoo.train", [
        "--config=dt_synthetic", f"--model_dir={tmp_path / 'dt'}", *common,
        "--set", f"dataset_options={{'pairs': True, 'synthetic': {synthetic!r}}}",
        "--set", f"model_overrides={ {**TINY, 'max_displacement': 2}!r}",
        "--set", f"init_from={tmp_path / 'rfcn'}"])
    assert code == 0, err[-3000:]
    assert "initialised" in out
    # the run's evaluation (DetectionTask.evaluate) reports D and the linked D&T mAP
    metrics = json.loads((tmp_path / "dt" / "metrics.json").read_text())["val"]
    assert set(metrics["linked"]) == {"tau=1 offline", "tau=1 online", "tau=4 offline",
                                      "tau=4 online"}  # dt_synthetic's link_strides
    assert all(0.0 <= v["mAP"] <= 1.0 for v in metrics["linked"].values())
    code, out, err = run_cli("tfzoo.evaluate", [f"--model_dir={tmp_path / 'dt'}"])
    assert code == 0, err[-3000:]
    assert out.startswith("VID mAP") and "D&T tau=1 offline: VID mAP" in out
    assert "D&T tau=1 online: VID mAP" in out
    rows = list(csv.DictReader(open(tmp_path / "dt" / "history.csv")))
    assert np.isfinite(float(rows[-1]["loss"]))
    dt, _ = load_model(tmp_path / "dt")
    rfcn, _ = load_model(tmp_path / "rfcn")
    assert isinstance(dt, DetectTrack)
    # the detector's class maps started from the R-FCN run (same shape, moved by 2 steps)
    w_dt = dt.get_layer("rfcn_cls").get_weights()[0]
    w_rf = rfcn.get_layer("rfcn_cls").get_weights()[0]
    assert np.abs(w_dt - w_rf).max() < 0.01 < np.abs(w_rf).max()


def test_evaluate_linked_scores_the_linked_tubes():
    """`evaluate_linked` (what DetectionTask.evaluate adds for D&T) on noisy per-frame
    detections: its offline/online mAP is `evaluate_vid` of `link_video`'s rescored boxes,
    linking beats the unlinked detections, and tau = 2 scores the processed frames only."""
    from _detection_oracle import NoisyOracleDetector
    from tfzoo.detection import evaluate_vid, link_video
    from tfzoo.detection.inference import evaluation_rows
    from tfzoo.detection.synthetic import SyntheticDetectionConfig, render_video
    from tfzoo.detection.dataset import DetectionVideo
    from tfzoo.tasks.detection import evaluate_linked

    cfg = SyntheticDetectionConfig(height=96, width=128, frames=12, size=(16, 28))
    frames, ann = render_video(np.random.default_rng(3), cfg)
    classes = ["disc", "square", "triangle", "cross"]
    video = DetectionVideo(
        video_id="v", frames=np.asarray(frames), frame_names=[str(f) for f in range(12)],
        boxes=[np.array([b for _, _, b, *_ in a], "float32").reshape(-1, 4) for a in ann],
        classes=[np.array([c for c, *_ in a], "int64") for a in ann],
        track_ids=[np.array([k for _, k, *_ in a], "int64") for a in ann])
    oracle = NoisyOracleDetector(ann, classes, seed=1)
    got = evaluate_linked(oracle, [video], classes, strides=(1, 2), batch_size=3)
    dets = [oracle.detections(f)[0] for f in range(12)]
    tracks = [oracle.tracks(f, f + 1) for f in range(11)]
    gt = video.annotations()
    for mode in ("offline", "online"):
        want = evaluate_vid(evaluation_rows(link_video(dets, tracks, online=mode == "online"),
                                            [("v", f) for f in range(12)]), gt)["mAP"]
        assert got[f"tau=1 {mode}"]["mAP"] == pytest.approx(want)
    assert got["tau=1 offline"]["mAP"] > got["tau=1 offline"]["mAP_unlinked"] + 0.05, got
    assert got["tau=2 offline"]["num_frames"] == 6 and got["tau=1 offline"]["num_frames"] == 12
