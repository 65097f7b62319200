"""The R-FCN detector (issue 13): proposal layer against numpy, the model, its task, training,
evaluation and export through the TF1 session loader."""

import numpy as np
import pytest
import tensorflow as tf

from _references import iou_loop, nms_loop
from tfzoo.detection import generate_anchors, shifted_anchors
from tfzoo.detection.proposals import propose


def propose_loop(scores, deltas, anchors, h, w, pre, post, thr, min_size):
    """Faster R-CNN's proposal layer, one box at a time in float64."""
    boxes = []
    for a, d in zip(anchors.astype(np.float64), deltas.astype(np.float64)):
        aw, ah = a[2] - a[0] + 1, a[3] - a[1] + 1
        cx, cy = a[0] + 0.5 * aw + d[0] * aw, a[1] + 0.5 * ah + d[1] * ah
        pw, ph = aw * np.exp(min(d[2], np.log(1000 / 16))), ah * np.exp(min(d[3], np.log(1000 / 16)))
        b = [cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw - 1, cy + 0.5 * ph - 1]
        b = [min(max(b[0], 0), w - 1), min(max(b[1], 0), h - 1),
             min(max(b[2], 0), w - 1), min(max(b[3], 0), h - 1)]
        boxes.append(b)
    boxes = np.array(boxes)
    big = [i for i, b in enumerate(boxes) if b[2] - b[0] + 1 >= min_size and b[3] - b[1] + 1 >= min_size]
    order = sorted(big, key=lambda i: -scores[i])[:pre]
    keep = [order[j] for j in nms_loop(boxes[order].astype(np.float32), scores[order], thr)][:post]
    return boxes[keep], scores[keep]


@pytest.mark.parametrize("pre,post", [(6000, 300), (40, 12)])
def test_proposal_layer_matches_numpy_loop(pre, post):
    rng = np.random.default_rng(0)
    h, w = 70, 90  # a 5 x 6 map at stride 16
    anchors = shifted_anchors(5, 6, 16, generate_anchors(16, scales=(1, 2, 4))).numpy()
    n = len(anchors)
    scores = rng.permutation(n).astype("float32") / n  # distinct: a unique order
    deltas = rng.normal(0, 0.3, (n, 4)).astype("float32")
    boxes, s, count = propose(scores, deltas, anchors, h, w, pre_nms=pre, post_nms=post,
                              nms_threshold=0.7, min_size=16)
    want_boxes, want_scores = propose_loop(scores, deltas, anchors, h, w, pre, post, 0.7, 16)
    count = int(count)
    assert count == len(want_boxes) and 0 < count <= post
    np.testing.assert_allclose(boxes.numpy()[:count], want_boxes, atol=1e-3)
    np.testing.assert_array_equal(s.numpy()[:count], want_scores)
    assert not boxes.numpy()[count:].any()  # zero padding
    kept = boxes.numpy()[:count]
    assert iou_loop(kept, kept)[np.triu_indices(count, 1)].max() <= 0.7 + 1e-6


# ---------------------------------------------------------------------------------- model

import keras  # noqa: E402

import tfzoo  # noqa: E402
from tfzoo.models.rfcn import TINY  # noqa: E402
from tfzoo.tasks import get_task  # noqa: E402
from _detection_runs import frozen_state, run_cli

CLASSES = ["disc", "square", "triangle"]


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    model = tfzoo.create_model("rfcn", num_classes=len(CLASSES), **TINY)
    # spread the untrained class scores, so that no two detections are near-ties
    layer = model.get_layer("rfcn_cls")
    layer.kernel.assign(layer.kernel * 300.0)
    return model


def frames(n=2, h=70, w=90, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype("uint8")


def head_on_the_proposals(model, x):
    """(boxes (N, 4), class probabilities (N, C)) of `model`'s head on its own proposals for
    one (1, 70, 90, 3) frame, assembled by hand: softmax of the voted PS-RoI scores, boxes
    decoded from the class-agnostic offsets and clipped to the frame."""
    from tfzoo.detection import BOX_STDS, clip_boxes, decode_boxes

    outputs = model(x.astype("float32"))
    props, _, n = model.proposals(outputs, [[70, 90]])
    n = int(n[0])
    rois = np.concatenate([np.zeros((n, 1), "float32"), props[0, :n].numpy()], 1)
    logits, deltas = model.head(outputs, rois)
    probs = tf.nn.softmax(logits).numpy()[:, 1:]
    return clip_boxes(decode_boxes(rois[:, 1:], deltas, BOX_STDS), 70, 90).numpy(), probs


def test_detect_is_per_class_nms_of_the_head_on_the_proposals(tiny):
    """detect() against the same pieces assembled by hand with numpy: greedy NMS 0.3 per class
    of the head's boxes and probabilities."""
    x = frames(1)
    out = tiny.detect(x, score_threshold=0.0, max_per_class=1000, max_detections=3000)
    boxes, probs = head_on_the_proposals(tiny, x)
    want = []
    for c in range(len(CLASSES)):
        keep = nms_loop(boxes, probs[:, c], 0.3)
        want += [(probs[i, c], c, *boxes[i]) for i in keep]
    want.sort(key=lambda r: -r[0])
    m = int(out["num_detections"][0])
    assert m == len(want) > len(CLASSES)
    got = np.concatenate([out["scores"][0, :m, None], out["classes"][0, :m, None],
                          out["boxes"][0, :m]], 1)
    want = np.array(want)

    np.testing.assert_allclose(got, want, atol=2e-3)
    assert out["classes"].dtype == tf.int32 and out["boxes"].shape[-1] == 4


def test_features_publish_the_maps_the_tracker_needs(tiny):
    f = tiny.features(frames(2, 64, 96).astype("float32"))
    assert {"conv3", "conv4", "conv5", "rfcn_features", "cls_maps", "reg_maps"} <= set(f)
    assert tuple(f["conv3"].shape) == (2, 8, 12, f["conv3"].shape[-1])  # stride 8
    assert tuple(f["conv5"].shape[1:3]) == (4, 6) == tuple(f["conv4"].shape[1:3])  # stride 16
    k, c = 3, len(CLASSES) + 1
    assert f["cls_maps"].shape[-1] == k * k * c and f["reg_maps"].shape[-1] == 4 * k * k
    np.testing.assert_allclose(f["cls_maps"], tiny(frames(2, 64, 96).astype("float32"))["cls_maps"],
                               atol=1e-5)
    assert [tiny.endpoints[n].stride for n in ("conv3", "conv4", "conv5", "cls_maps")] == [8, 16, 16, 16]


def synthetic_batch(seed=0, n=2):
    from tfzoo.detection.synthetic import SyntheticDetectionConfig, render_video

    cfg = SyntheticDetectionConfig(height=64, width=96, frames=n, size=(16, 28))
    imgs, anns = render_video(np.random.default_rng(seed), cfg)
    g = max(len(a) for a in anns)
    boxes = np.zeros((n, g, 4), "float32")
    classes = -np.ones((n, g), "int32")
    for i, objs in enumerate(anns):
        for j, (c, _, b, _, _) in enumerate(objs):
            boxes[i, j], classes[i, j] = b, c
    labels = {"gt_boxes": boxes, "gt_classes": classes, "image_size": np.array([[64, 96]] * n, "int32")}
    return np.asarray(imgs, "float32"), labels


@pytest.mark.e2e
def test_training_steps_decrease_the_loss():
    """A few fit steps on one synthetic batch (the DetectionTask's compile and loss through
    RFCN.compute_loss): the loss falls, and the RPN and the head both learn."""
    keras.utils.set_random_seed(1)
    model = tfzoo.create_model("rfcn", num_classes=4, **{**TINY, "freeze_bn": False})
    task = get_task(model)
    task.compile(model, optimizer=keras.optimizers.Adam(3e-3))
    x, y = synthetic_batch()
    # without image_size: fit takes the frames' size (unpadded batch)
    gt = {k: v for k, v in y.items() if k != "image_size"}
    losses = tf.function(lambda: task.losses(model, model(x, training=False), y))
    before = {k: float(v) for k, v in losses().items()}
    history = model.fit(x, gt, batch_size=2, epochs=12, verbose=0).history["loss"]
    after = {k: float(v) for k, v in losses().items()}
    assert history[-1] < 0.6 * history[0], history
    assert after["cls"] < before["cls"] and after["rpn_cls"] < before["rpn_cls"], (before, after)


def test_export_runs_in_the_tf1_session_loader(tiny, tmp_path):
    """serving_default through TF Serving's loader (fresh graph, signature by tensor names):
    uint8 frames of any size -> the TF Object Detection API outputs, equal to detect()."""
    from export.saved_model import export_saved_model
    from _saved_model import SessionLoaded
    from tfzoo.rundir import RunInfo

    info = RunInfo(model="rfcn", model_config=tiny.get_config(), class_names=CLASSES,
                   num_frames=1, image_size=(64, 96))
    path = export_saved_model(tiny, info, tmp_path)
    loaded = SessionLoaded(path)
    try:
        assert not len(loaded.uninitialized)
        assert sorted(loaded.signatures) == ["serving_default"]
        for shape in ((2, 70, 90), (1, 50, 120)):
            x = frames(*shape, seed=sum(shape))
            got = loaded.run("serving_default", images=x)
            want = tiny.detect(x)
            n = want["num_detections"].numpy()
            np.testing.assert_array_equal(got["num_detections"], n)
            assert n.min() > 0
            for i, k in enumerate(n):
                np.testing.assert_allclose(got["detection_boxes"][i, :k], want["boxes"][i, :k], atol=1e-3)
                np.testing.assert_allclose(got["detection_scores"][i, :k], want["scores"][i, :k], atol=1e-5)
                np.testing.assert_array_equal(got["detection_classes"][i, :k], want["classes"][i, :k])
                assert [c.decode() for c in got["detection_class_names"][i, :k]] == [
                    CLASSES[c] for c in want["classes"][i, :k]]
            assert (got["detection_boxes"][..., 2] < shape[2]).all()  # input pixels
    finally:
        loaded.close()


@pytest.mark.e2e
def test_evaluate_reads_the_saved_model_through_the_task(tiny, tmp_path):
    """`tfzoo.evaluate` on a detection model directory: the model reloaded from model.keras
    (same config), scored by DetectionTask.evaluate (VID mAP, per-class AP, motion speeds,
    proposal recall), the same numbers as the in-memory model gives."""
    from tfzoo.config import TrainConfig
    from tfzoo.detection.source import DetectionSource
    from tfzoo.evaluate import evaluate_model_dir, read_metrics
    from tfzoo.rundir import RunInfo, load_model, save_model, write_run_info
    from tfzoo.tasks.detection import evaluate_detector

    options = {"synthetic": {"videos": (1, 2), "frames": 3, "height": 64, "width": 96,
                             "size": (16, 28)}}
    config = TrainConfig(model="rfcn", dataset="detection_synthetic", dataset_options=options,
                         val_split=None, test_split="val", test_flip=False, batch_size=2,
                         model_overrides=TINY)
    names = ["disc", "square", "triangle", "cross"]
    keras.utils.set_random_seed(2)
    model = tfzoo.create_model("rfcn", num_classes=4, **TINY)
    save_model(model, tmp_path)
    write_run_info(tmp_path, RunInfo(model="rfcn", model_config=model.get_config(),
                                     class_names=names, num_frames=1, image_size=(64, 96),
                                     config=config.to_json()))
    assert load_model(tmp_path)[0].get_config() == model.get_config()
    source = DetectionSource(None, **options)
    metrics = evaluate_model_dir(tmp_path, source=source)
    assert read_metrics(tmp_path, "val") == metrics
    want = evaluate_detector(model, source.videos("val"), names, batch_size=2)
    assert metrics["num_frames"] == 6 and metrics["num_videos"] == 2
    assert metrics["mAP"] == pytest.approx(want["mAP"]) and metrics["AP"] == pytest.approx(want["AP"])
    assert set(metrics["AP"]) <= set(names) and metrics["num_detections"] > 0
    assert metrics["proposal_recall"] == pytest.approx(want["proposal_recall"])
    assert {"mAP_slow", "mAP_medium", "mAP_fast"} <= set(metrics)
    # the RPN replaced by jittered ground truth: every object has a proposal at IoU >= 0.5
    gt = evaluate_detector(model, source.videos("val"), names, proposals="gt_jitter")
    assert gt["proposal_recall"] == 1.0


@pytest.mark.slow  # builds the full ResNet-50 detector; the body's transplant is tested in
# tests/models/test_backbone.py in the default suite
def test_imagenet_transplant_into_the_detector_is_exact(keras_resnet50):
    model = tfzoo.create_model("rfcn_resnet50", num_classes=2, weights=keras_resnet50)
    x = frames(1, 64, 80, seed=4)
    conv4 = keras.Model(keras_resnet50.inputs, keras_resnet50.get_layer("conv4_block6_out").output)
    want = conv4(keras.applications.resnet.preprocess_input(x.astype("float32")))
    np.testing.assert_allclose(model.features(x)["conv4"], want, atol=1e-4)
    # R-FCN keeps the ImageNet BN statistics (one image per GPU): frozen
    assert not any(l.trainable for l in model.layers if isinstance(l, keras.layers.BatchNormalization))


# ------------------------------------------------------------------ train / evaluate CLIs




def _tiny_demo_args(tmp_path, steps=2, generated=True):
    synthetic = ("{'synthetic': {'videos': (2, 1), 'frames': 3, 'height': 64, 'width': 96, "
                 "'size': (16, 28)}}")
    return ["--model=rfcn", f"--model_dir={tmp_path / 'run'}", "--epochs=1", f"--steps={steps}",
            "--batch_size=2", "--verbose=0", "--set", "image_size=(64,96)",
            *(["--set", f"dataset_options={synthetic}"] if generated else []),
            "--set", f"model_overrides={TINY!r}"]


@pytest.mark.slow  # two CLI processes, ~1 min each
@pytest.mark.parametrize("how", ["default", "mirrored", "folder"])
def test_train_and_evaluate_clis_on_the_embedded_set(tmp_path, how):
    """`python -m tfzoo.train --model=rfcn` (the detection demo, shrunk) writes a model
    directory whose metrics are VID mAP, per-class AP, motion-speed mAP and proposal recall,
    and `python -m tfzoo.evaluate` reports them, all through the task."""
    import json

    extra = ["--strategy=mirrored", "--logical_cpus=2"] if how == "mirrored" else []
    if how == "folder":  # --data=DIR: the same set written to disk, read as a VID layout
        from tfzoo.detection.synthetic import SyntheticDetectionConfig, write_synthetic_vid

        root = write_synthetic_vid(tmp_path / "set", SyntheticDetectionConfig(
            videos=(2, 1), frames=3, height=64, width=96, size=(16, 28)))
        extra = [f"--data={root}"]
    code, out, err = run_cli("tfzoo.train",
                             _tiny_demo_args(tmp_path, generated=how != "folder") + extra)
    assert code == 0, err[-3000:]
    assert "VID mAP" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["val"]
    assert 0.0 <= metrics["mAP"] <= 1.0 and metrics["num_frames"] == 3
    assert set(metrics["AP"]) <= {"disc", "square", "triangle", "cross"} and metrics["AP"]
    assert {"mAP_slow", "mAP_medium", "mAP_fast", "proposal_recall"} <= set(metrics)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["class_names"] == ["disc", "square", "triangle", "cross"]
    code, out, err = run_cli("tfzoo.evaluate", [f"--model_dir={tmp_path / 'run'}"])
    assert code == 0, err[-3000:]
    assert out.startswith("VID mAP") and "disc" in out


def test_detect_with_box_voting_is_per_class_nms_box_voting(tiny):
    """D&T's pre-linking option: per class, nms_box_voting (tested against a loop in
    test_detection_boxes.py) of the same head outputs, merged by score, 25 per class."""
    from tfzoo.detection import nms_box_voting

    x = frames(1, seed=5)
    # votes weighted by score + 1.5 (tfzoo before issue 20; make_tubes: the score alone)
    voted = tiny.detect(x, box_voting=True, max_per_class=25, score_threshold=0.01,
                        vote_offset=1.5)
    boxes, probs = head_on_the_proposals(tiny, x)
    want = []
    for c in range(len(CLASSES)):
        keep = probs[:, c] > 0.01
        vb, vs, _ = nms_box_voting(boxes[keep], probs[keep, c], 0.3, max_output=25,
                                   add_val=1.5)
        assert len(vs) <= 25
        want += [(s, c, *b) for s, b in zip(vs.numpy(), vb.numpy())]
    want = np.array(sorted(want, key=lambda r: -r[0]))
    m = int(voted["num_detections"][0])
    assert m == len(want)
    got = np.concatenate([voted["scores"][0, :m, None], voted["classes"][0, :m, None],
                          voted["boxes"][0, :m]], 1)
    np.testing.assert_allclose(got, want, atol=2e-3)


@pytest.mark.slow  # the detection demo as shipped: ~10 min on 2 cores
def test_demo_recipe_trains_to_a_useful_map(tmp_path):
    import json

    code, out, err = run_cli("tfzoo.train", ["--model=rfcn", f"--model_dir={tmp_path / 'run'}",
                                             "--verbose=0"])
    assert code == 0, err[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["val"]
    assert metrics["proposal_recall"] > 0.9, metrics
    assert metrics["mAP"] > 0.5, metrics


def test_training_frames_are_resized_and_flipped_with_their_boxes():
    """The source's frames: shorter side image_size[0] (longest <= image_size[1]) with boxes
    scaled alike; a flip moves each box onto the flipped object (the tight box of a mask)."""
    from tfzoo.data.base import ClipSpec
    from tfzoo.detection.source import DetectionSource, flip_boxes

    mask = np.zeros((40, 60), bool)
    mask[5:20, 8:30] = True  # box (8, 5, 29, 19), inclusive
    flipped = mask[:, ::-1]
    ys, xs = np.nonzero(flipped)
    got = flip_boxes(tf.constant([[8.0, 5, 29, 19]]), 60).numpy()
    np.testing.assert_array_equal(got, [[xs.min(), ys.min(), xs.max(), ys.max()]])

    source = DetectionSource(None, synthetic={"videos": (1, 1), "frames": 2, "height": 64,
                                              "width": 96, "size": (16, 28)})
    spec = ClipSpec(image_size=(128, 160), flip=False)
    video = source.videos("train")[0]
    ds = source.dataset("train", training=True, spec=spec, seed=0).take(2)
    seen = 0
    for image, y in ds:
        assert tuple(image.shape) == (107, 160, 3) and tuple(y["image_size"].numpy()) == (107, 160)
        t = [i for i, f in enumerate(video.frames)
             if np.abs(tf.image.resize(f.astype("float32"), (107, 160)) - image).max() < 1e-3]
        assert len(t) == 1  # the frame it came from
        np.testing.assert_allclose(y["gt_boxes"], video.boxes[t[0]] * 160 / 96, rtol=1e-5)
        np.testing.assert_array_equal(y["gt_classes"], video.classes[t[0]])
        seen += 1
    assert seen == 2


def test_mixed_bfloat16_detects_and_trains_in_float32_heads():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = tfzoo.create_model("rfcn", num_classes=4, **TINY)
        get_task(model).check_outputs(model)  # float32 outputs
        x, y = synthetic_batch()
        out = model.detect(x)
        assert out["scores"].dtype == tf.float32 and out["boxes"].dtype == tf.float32
        losses = get_task(model).losses(model, model(x, training=True), y)
        assert all(v.dtype == tf.float32 and np.isfinite(v.numpy()) for v in losses.values())
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_conv1_res2_and_batchnorm_get_no_update_in_a_train_step():
    """R-FCN ResNet (default `frozen_stages=("conv1", "conv2")`, `freeze_bn=True`): one SGD step
    of fit (lr 1) changes conv3..conv5 and the heads, and no weight of conv1, res2 or any BN
    layer; `frozen_stages=()` trains conv1 again."""
    keras.utils.set_random_seed(5)
    model = tfzoo.create_model("rfcn_resnet50", num_classes=4, **TINY)
    assert model.get_config()["frozen_stages"] == ["conv1", "conv2"]
    get_task(model).compile(model, optimizer=keras.optimizers.SGD(1.0))
    x, y = synthetic_batch()
    frozen = frozen_state(model)
    assert any("conv1_conv" in p for p in frozen) and any("conv2_block1" in p for p in frozen)
    assert any("moving_mean" in p for p in frozen)
    trained = {n: model.get_layer(n).get_weights()[0] for n in ("conv3_block1_1_conv",
                                                                  "conv5_block1_2_conv", "rfcn_bbox")}
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    for path, value in frozen.items():
        np.testing.assert_array_equal(frozen_state(model)[path], value, err_msg=path)
    for name, value in trained.items():
        assert np.abs(model.get_layer(name).get_weights()[0] - value).max() > 0, name
    free = tfzoo.create_model("rfcn_resnet50", num_classes=4, frozen_stages=[], **TINY)
    assert "conv1_conv/kernel" in {w.path for w in free.trainable_weights}
    assert "conv1_conv/kernel" not in {w.path for w in model.trainable_weights}
    with pytest.raises(ValueError, match="frozen_stages='conv1'"):
        tfzoo.create_model("rfcn", num_classes=2, frozen_stages="conv1", **TINY)
    with pytest.raises(ValueError, match="box_stds=\\[0.1, 0.1, 0.2, 0\\]"):
        tfzoo.create_model("rfcn", num_classes=2, box_stds=[0.1, 0.1, 0.2, 0], **TINY)


def test_box_normalisation_is_the_models_in_the_loss_and_detect(tiny):
    """`box_means`/`box_stds` set on the model are the ones its RoI targets and its decoding
    use: `detect` decodes the head's deltas with them (against decode_boxes by hand), and the
    config (what run.json records) carries them."""
    from tfzoo.detection import clip_boxes, decode_boxes

    means, stds = (0.01, -0.02, 0.03, -0.01), (0.12, 0.11, 0.25, 0.27)
    model = tfzoo.create_model("rfcn", num_classes=len(CLASSES), **TINY)
    model.set_weights(tiny.get_weights())
    model.set_box_normalisation(means, stds)
    assert model.get_config()["box_means"] == list(means)
    assert model.get_config()["box_stds"] == list(stds)
    x = frames(1)
    props = np.array([[[10, 12, 50, 40], [30, 5, 80, 60]]], "float32")
    out = model.detect(x, proposals=(props, np.array([2])), score_threshold=0.0)
    rois = np.concatenate([np.zeros((2, 1), "float32"), props[0]], 1)
    _, deltas = model.head(model.features(x.astype("float32")), rois)
    want = clip_boxes(decode_boxes(props[0], deltas, stds, means), 70, 90).numpy()
    got = out["boxes"].numpy()[0, :out["num_detections"].numpy()[0]]
    assert len(got)
    # each detection is one of the two decoded proposals (per-class NMS keeps boxes as is)
    assert all(np.abs(want - g).max(1).min() < 1e-3 for g in got), (got, want)
    with pytest.raises(ValueError, match="expected 4 finite numbers"):
        model.set_box_normalisation(means, (0.1, 0.1, 0.2))


def test_multiscale_proposals_and_their_recall(tiny):
    """One scale is the model's own proposals at that size (in input pixels); several scales
    merge by NMS 0.7 and objectness into at most 300; the recall equals a brute-force IoU count
    over every (ground truth, proposal) pair."""
    from _references import iou_loop

    from tfzoo.detection.proposals import multiscale_proposals, proposal_recall
    from tfzoo.detection.source import resize_for_detection

    x = frames(2, 64, 96)
    boxes, scores, counts = multiscale_proposals(tiny, x, (96,))
    resized, scale = resize_for_detection(x, 96, None)
    want, want_scores, want_counts = tiny.proposals(tiny(resized), [[96, 144]] * 2)
    np.testing.assert_array_equal(counts, want_counts.numpy())
    for i in range(2):
        in_pixels = np.minimum(want.numpy()[i, :counts[i]] / float(scale), [95, 63, 95, 63])
        np.testing.assert_allclose(boxes[i, :counts[i]], in_pixels, atol=1e-3)
    np.testing.assert_allclose(scores, want_scores.numpy(), atol=1e-6)
    multi, multi_scores, n = multiscale_proposals(tiny, x, (48, 64, 96), post_nms=50)
    assert multi.shape == (2, 50, 4) and (n <= 50).all() and (n > 0).all()
    assert (np.diff(multi_scores[0, :n[0]]) <= 0).all()  # by objectness
    assert multi[..., 2].max() <= 95 and multi[..., 3].max() <= 63  # in the frames' pixels
    gt = [np.array([[10, 10, 40, 40], [50, 5, 90, 60]], "float32"), np.zeros((0, 4), "float32")]
    found, total = proposal_recall(multi, n, gt)
    iou = iou_loop(gt[0], multi[0, :n[0]])
    assert total == 2 and found == int((iou.max(1) >= 0.5).sum())
