"""D&T training data and evaluation: DET/VID alternation of the pair source (thesis §8.5.2)
and `python -m tfzoo.evaluate` on a D&T model dir at several temporal strides (§8.5.3)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tfzoo.data.base import DataError
from tfzoo.detection.source import DetectionSource
from tfzoo.tasks import get_task
from _paths import BIKES


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory):
    """The ILSVRC layout fixture: 2 VID training snippets (12, 15 frames), 2 DET images."""
    from _data_fixtures import bikes_frames, make_imagenet_vid

    root = tmp_path_factory.mktemp("ilsvrc")
    make_imagenet_vid(root, bikes_frames(BIKES, short_side=32, num=20))
    return root


def _kind(image_pair, boxes, classes, track_ids):
    """"det" for a DET pair (two copies of one image, its one object tracked onto itself), "vid"
    for adjacent frames of a snippet (the fixture's track-0 box moves 1 px right a frame)."""
    real = classes[0] >= 0
    if np.array_equal(image_pair[0], image_pair[1]) and real.sum() == 1:
        np.testing.assert_array_equal(boxes[0][real], [[1, 1, 20, 20]])
        np.testing.assert_array_equal(track_ids[:, real], [[0], [0]])
        return "det"
    first = boxes[:, np.flatnonzero(track_ids[0] == 0)[0]]
    assert first[1, 0] - first[0, 0] == 1, first  # frames t and t+1
    return "vid"


def test_pair_batches_alternate_vid_and_det(ilsvrc):
    """The D&T recipe's source on a tree with Data/DET and Data/VID: batches of 3 pairs, all
    VID, then all DET, in turn."""
    from tfzoo.config import load_config_file
    from tfzoo.sources import make_source

    recipe = load_config_file("dt_resnet101_vid").replace(data_dir=str(ilsvrc))
    source = make_source(recipe)
    assert source.alternate_det_vid and source.pairs
    spec = SimpleNamespace(image_size=(32, 1000), flip=False)  # native size: boxes as written
    ds = source.dataset("train", training=True, spec=spec, seed=3)
    batches = get_task("detection").batch(ds, 3, drop_remainder=True).take(6)
    kinds = []
    for x, y in batches:
        assert "det_image" not in y  # the tag does not reach the model
        assert x.shape[:2] == (3, 2)
        got = {_kind(*(np.asarray(v[b]) for v in (x, y["gt_boxes"], y["gt_classes"],
                                                   y["gt_track_ids"]))) for b in range(3)}
        assert len(got) == 1, got  # a batch is one kind
        kinds.append(got.pop())
    assert kinds == ["vid", "det"] * 3
    # without the option the same tree mixes them (the DET images are in the train split)
    mixed = DetectionSource(ilsvrc, pairs=True).dataset("train", training=True, spec=spec, seed=3)
    seen = {_kind(*(np.asarray(v) for v in (x, y["gt_boxes"], y["gt_classes"],
                                            y["gt_track_ids"]))) for x, y in mixed.take(40)}
    assert seen == {"vid", "det"}


def test_alternation_needs_pairs_and_both_kinds():
    with pytest.raises(DataError, match="needs pairs=True"):
        DetectionSource(None, alternate_det_vid=True)
    with pytest.raises(DataError, match="alternate_det_vid='yes'"):
        DetectionSource(None, pairs=True, alternate_det_vid="yes")
    source = DetectionSource(None, pairs=True, alternate_det_vid=True, synthetic={
        "videos": (1, 1), "frames": 2, "height": 32, "width": 48, "size": (8, 12)})
    spec = SimpleNamespace(image_size=(32, 48), flip=False)
    with pytest.raises(DataError, match=r"no DET images .*alternate_det_vid=False"):
        source.dataset("train", training=True, spec=spec)


@pytest.fixture(scope="module")
def dt_run(tmp_path_factory):
    """A model dir holding a tiny untrained D&T on 2 generated validation videos of 4 frames;
    the run's `link_strides` is (1, 2)."""
    from tfzoo.config import TrainConfig
    from tfzoo.models.dt import DetectTrack
    from tfzoo.models.rfcn import TINY
    from tfzoo.rundir import RunInfo, save_model, write_run_info

    model = DetectTrack(num_classes=4, max_displacement=2, **TINY)
    config = TrainConfig(model="dt", dataset="detection_synthetic", test_split="val",
                         val_split=None, test_flip=False, batch_size=2, image_size=(64, 96),
                         link_strides=(1, 2),
                         dataset_options={"synthetic": {"videos": (1, 2), "frames": 4,
                                                        "height": 64, "width": 96,
                                                        "size": (16, 28)}})
    run = tmp_path_factory.mktemp("dt") / "run"
    run.mkdir()
    save_model(model, run)
    write_run_info(run, RunInfo(model="dt", model_config=model.get_config(),
                                class_names=["disc", "square", "triangle", "cross"],
                                num_frames=1, image_size=(64, 96), config=config.to_json()))
    return run


def _check_linked(metrics, strides, lines):
    want = {f"tau={t} {m}" for t in strides for m in ("offline", "online")}
    assert set(metrics["linked"]) == want
    for key, m in metrics["linked"].items():
        tau = int(key.split()[0][4:])
        assert m["num_frames"] == 2 * len(range(0, 4, tau))  # the processed frames only
        assert 0.0 <= m["mAP"] <= 1.0 and 0.0 <= m["mAP_unlinked"] <= 1.0
        assert m["unlinked"]["mAP"] == m["mAP_unlinked"]
        t = m["tracks"]
        assert t["num_tracks"] == t["num_consistent"] + t["num_switched"] + t["num_lost"] > 0
        assert any(s.startswith(f"D&T {key}: VID mAP {m['mAP']:.4f}") for s in lines)
    assert lines[0].startswith("VID mAP") and len([s for s in lines if s.startswith("D&T")]) == 4


@pytest.mark.e2e
def test_evaluate_reports_each_stride_offline_and_online(dt_run):
    """`evaluate_model_dir(link_strides=(1, 3))`: D, then each tau offline and online, in
    metrics.json and the summary; tau = 3 is scored on the processed frames 0 and 3 of each
    4-frame video."""
    from tfzoo.evaluate import evaluate_model_dir, read_metrics

    metrics = evaluate_model_dir(dt_run, link_strides=(1, 3))
    assert read_metrics(dt_run, "val")["linked"] == metrics["linked"]
    _check_linked(metrics, (1, 3), get_task("detection").describe(metrics))


@pytest.mark.slow  # a CLI process, ~40 s
def test_evaluate_cli_uses_the_runs_link_strides(dt_run):
    from _detection_runs import run_cli

    code, out, err = run_cli("tfzoo.evaluate", [f"--model_dir={dt_run}"])
    assert code == 0, err[-3000:]
    metrics = json.loads((dt_run / "metrics.json").read_text())["val"]
    _check_linked(metrics, (1, 2), out.splitlines())
