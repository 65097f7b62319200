"""The embedded synthetic detection set and the detection-dataset reader."""

import hashlib

import numpy as np
import pytest

from tfzoo.data.base import DataError
from tfzoo.detection import read_detection_dataset
from tfzoo.detection.synthetic import (
    CLASSES, SyntheticDetectionConfig, render_video, write_synthetic_vid,
)
from _paths import BIKES, REPO

SMALL = SyntheticDetectionConfig(height=48, width=64, frames=5, videos=(2, 2),
                                 size=(10.0, 18.0))


def test_boxes_are_tight_around_the_rendered_objects():
    cfg = SyntheticDetectionConfig(height=48, width=64, frames=8, speed=(2.0, 5.0),
                                   occluder_probability=1.0)
    seen_blur = 0
    for v in range(4):
        frames, anns = render_video(np.random.default_rng([1, v]), cfg)
        for t, objs in enumerate(anns):
            for cls, track, (x1, y1, x2, y2), occluded, alpha in objs:
                ys, xs = np.nonzero(alpha > 0)
                # every pixel the object covers is inside its box, and the box touches them
                assert xs.min() == x1 and xs.max() == x2 and ys.min() == y1 and ys.max() == y2
                seen_blur += np.any((alpha > 0) & (alpha < 1))
                # the object is drawn: its fully covered pixels are textured, not flat
                inside = frames[t][alpha >= 1]
                assert len(inside) < 10 or inside.std() > 0
    assert seen_blur > 0  # fast objects are motion blurred


def test_classes_have_distinct_shapes():
    # at the same size, the class shapes differ in many pixels
    from tfzoo.detection.synthetic import _shape_mask

    yy, xx = np.mgrid[-20:20, -20:20].astype(float)
    masks = [_shape_mask(k, yy, xx, 15.0) for k in range(len(CLASSES))]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert (masks[i] != masks[j]).sum() > 50


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_written_set_round_trips_and_is_deterministic(tmp_path):
    a = write_synthetic_vid(tmp_path / "a", SMALL)
    b = write_synthetic_vid(tmp_path / "b", SMALL)
    c = write_synthetic_vid(tmp_path / "c", SyntheticDetectionConfig(**{**SMALL.__dict__,
                                                                          "seed": 1}))
    assert _digest(a) == _digest(b) != _digest(c)
    with pytest.raises(FileExistsError):
        write_synthetic_vid(a, SMALL)
    ds = read_detection_dataset(a, "val")
    assert ds.layout == "imagenet_vid" and ds.class_names == list(CLASSES) and len(ds) == 2
    videos = list(ds)
    assert not ds.skipped
    for v, video in enumerate(videos):
        frames, anns = render_video(np.random.default_rng([SMALL.seed, 1, v]), SMALL)
        assert video.frames.shape == frames.shape
        assert np.abs(video.frames.astype(int) - frames).mean() < 8  # JPEG of a noisy texture
        for t, objs in enumerate(anns):
            np.testing.assert_array_equal(video.boxes[t], [o[2] for o in objs])
            np.testing.assert_array_equal(video.classes[t], [o[0] for o in objs])
            np.testing.assert_array_equal(video.track_ids[t], [o[1] for o in objs])
    ann = videos[0].annotations()
    assert set(ann) == {(videos[0].video_id, t) for t in range(SMALL.frames)}


def test_reader_skips_and_reports_corrupt_files(tmp_path):
    root = write_synthetic_vid(tmp_path / "s", SMALL)
    snippet = root / "Data" / "VID" / "train" / "synthetic_train_00000"
    (snippet / "000001.JPEG").write_bytes(b"not a jpeg")
    xml = root / "Annotations" / "VID" / "train" / "synthetic_train_00000" / "000002.xml"
    xml.write_text("<annotation><object>")
    ds = read_detection_dataset(root, "train")
    videos = list(ds)
    assert videos[0].frame_names == ["000000", "000003", "000004"]
    reasons = {p.split("/")[-1]: r for p, r in ((s["path"], s["reason"]) for s in ds.skipped)}
    assert "unreadable image" in reasons["000001.JPEG"]
    assert "unreadable annotation XML" in reasons["000002.JPEG"] or any(
        "000002.xml" in s["reason"] for s in ds.skipped)
    assert len(ds.skipped) == 2 and len(videos[1].frame_names) == SMALL.frames


def test_custom_layout(tmp_path):
    import cv2

    vid = tmp_path / "train" / "clip1"
    vid.mkdir(parents=True)
    for t in range(3):
        img = np.full((20, 30, 3), 40 * t, np.uint8)
        cv2.imwrite(str(vid / f"{t:04d}.png"), img)
    (vid / "boxes.csv").write_text("frame,track_id,class,x1,y1,x2,y2\n"
                                   "0000.png,3,car,1,2,10,12\n"
                                   "0002.png,3,car,2,2,11,12\n"
                                   "0002.png,4,person,5,5,8,9\n"
                                   "0001.png,x,car,1,2,3,4\n")
    ds = read_detection_dataset(tmp_path, "train")
    (video,) = list(ds)
    assert ds.layout == "custom" and ds.class_names == ["car", "person"]
    np.testing.assert_array_equal(video.boxes[0], [[1, 2, 10, 12]])
    assert video.boxes[1].shape == (0, 4)
    np.testing.assert_array_equal(video.classes[2], [0, 1])
    np.testing.assert_array_equal(video.track_ids[2], [3, 4])
    assert video.frames[2, 0, 0, 0] == 80
    assert len(ds.skipped) == 1 and "bad row" in ds.skipped[0]["reason"]
    from tfzoo.data.base import DataError

    with pytest.raises(DataError, match="no such split"):
        read_detection_dataset(tmp_path, "val")


def test_custom_layout_video_file_keeps_source_pixels(tmp_path):
    from tfzoo.video import VideoWriter

    (tmp_path / "val").mkdir()
    with VideoWriter(tmp_path / "val" / "clip.mp4", fps=10) as w:
        for t in range(4):
            w.write(np.full((48, 320, 3), 60 * t, np.uint8))  # shorter side 48: no rescale
    (tmp_path / "val" / "clip.csv").write_text("frame,track_id,class,x1,y1,x2,y2\n"
                                               "1,0,car,100,10,300,40\n")
    (video,) = list(read_detection_dataset(tmp_path, "val"))
    assert video.frames.shape == (4, 48, 320, 3)  # boxes index these pixels
    np.testing.assert_array_equal(video.boxes[1], [[100, 10, 300, 40]])
    assert abs(int(video.frames[3].mean()) - 180) <= 3  # decoded, in order


def test_imagenet_train_split_is_the_det_vid_mix(tmp_path):
    from _data_fixtures import bikes_frames, make_imagenet_vid

    root = tmp_path / "ilsvrc"
    make_imagenet_vid(root, bikes_frames(BIKES, short_side=32, num=20))
    train = read_detection_dataset(root, "train")
    videos = list(train)
    vid = [v for v in videos if v.video_id.startswith("train/")]
    det = [v for v in videos if v.video_id.startswith("DET/")]
    assert [len(v.frames) for v in vid] == [12, 15]
    # The two bicycle DET images, one frame each; the image of a non-VID class is not in the
    # mix, and its foreign objects are not reported as errors.
    assert len(det) == 2 and all(len(v.frames) == 1 for v in det)
    bicycle = train.class_names.index("bicycle")
    for v in det:
        np.testing.assert_array_equal(v.classes[0], [bicycle])
        np.testing.assert_array_equal(v.boxes[0], [[1, 1, 20, 20]])
        np.testing.assert_array_equal(v.track_ids[0], [-1])
    assert not train.skipped
    assert len(read_detection_dataset(root, "train", det_per_class=1)) == 2 + 1
    assert len(read_detection_dataset(root, "train", det_per_class=0)) == 2
    assert not [e for e in read_detection_dataset(root, "val").entries if "DET" in e.video_id]


def test_prepare_reads_the_class_list_of_a_vid_layout(tmp_path):
    from tfzoo.data.adapters import list_dataset

    root = write_synthetic_vid(tmp_path / "syn", SMALL)
    listing = list_dataset("imagenet_vid", root)
    assert listing.class_names == list(CLASSES)
    videos = {f"VID/{v.video_id}": v for split in ("train", "val")
              for v in read_detection_dataset(root, split)}
    assert sorted(videos) == sorted(item.video_id for item in listing.items)
    for item in listing.items:  # each snippet's label is its most frequent class
        counts = np.bincount(np.concatenate(videos[item.video_id].classes), minlength=len(CLASSES))
        assert item.label == int(np.argmax(counts)), item.video_id
    (root / "classes.txt").write_text("n1 disc\nbroken-line\n")
    with pytest.raises(DataError, match=r"classes.txt:2: 'broken-line'; expected '<wnid> <name>'"):
        list_dataset("imagenet_vid", root)


def test_occluded_variant_has_gaps_entries_and_exits_at_the_seeded_frames():
    """The "occluded" variant: each event drawn from the video's seed is in the annotations at
    its frames: a gap (no box in its 2-4 frames, boxes on the frames either side, of the same
    track), an object entering late (no box before its frame, one at it) or leaving early (a
    box before its frame, none from it on), one leaving the frame (none from its frame on, its
    last box at the border). The standard set draws no event."""
    cfg = SyntheticDetectionConfig(height=64, width=96, frames=16, variant="occluded",
                                   size=(14.0, 24.0))
    seen = set()
    for v in range(12):
        _, anns, events = render_video(np.random.default_rng([5, v]), cfg, return_events=True)
        again = render_video(np.random.default_rng([5, v]), cfg, return_events=True)[2]
        assert events == again  # from the seed
        for e in events:
            frames = [t for t, objs in enumerate(anns) if any(o[1] == e["track"] for o in objs)]
            f = e["frames"][0]
            if e["event"] == "gap":
                gap = set(range(*e["frames"]))
                assert 2 <= len(gap) <= 4 and not gap & set(frames), (e, frames)
                assert f - 1 in frames and e["frames"][1] in frames, (e, frames)
            elif e["event"] == "enter":
                assert f > 0 and min(frames) == f, (e, frames)
            elif e["event"] == "leave":
                assert f < cfg.frames - 1 and max(frames) == f - 1, (e, frames)
            else:  # exit: out across the border
                assert frames and max(frames) < f <= cfg.frames - 2, (e, frames)
                x1, y1, x2, y2 = [o[2] for o in anns[max(frames)] if o[1] == e["track"]][0]
                assert min(x1, y1) == 0 or x2 == cfg.width - 1 or y2 == cfg.height - 1
            seen.add(e["event"])
    assert seen == {"gap", "enter", "leave", "exit"}
    assert render_video(np.random.default_rng([5, 0]), SMALL, return_events=True)[2] == []
    with pytest.raises(ValueError, match="variant='occluded '"):
        SyntheticDetectionConfig(variant="occluded ")


def test_cli_writes_the_variant(tmp_path):
    """`python -m tfzoo.detection.synthetic` (absl flags, `--flag value` and `--flag=value`)
    writes the set; its bad flags are rows of tests/cli/test_cli_errors.py."""
    import os
    import subprocess
    import sys

    repo = REPO
    ok = subprocess.run([sys.executable, "-m", "tfzoo.detection.synthetic", "--out",
                         str(tmp_path / "set"), "--train=0", "--val=1", "--frames=3",
                         "--variant=occluded"], cwd=tmp_path, capture_output=True, text=True,
                        timeout=300, env={**os.environ, "PYTHONPATH": str(repo)})
    assert ok.returncode == 0, ok.stderr
    assert "1 occluded videos of 3 frames" in ok.stdout
    video = next(iter(read_detection_dataset(tmp_path / "set", "val")))
    assert video.frames.shape == (3, 96, 128, 3)
