"""Adapters (fixture trees in the official layouts, cut from the real clip) and prepare."""

import json

import numpy as np
import pytest

from _data_fixtures import (bikes_frames, make_folder, make_hmdb51, make_imagenet_vid,
                            make_ucf101, make_yuppp, write_mjpeg)
from tfzoo.data import prepare as prep
from tfzoo.data import records
from tfzoo.data.adapters import list_dataset
from tfzoo.data.base import DataError
from _paths import BIKES


@pytest.fixture(scope="module")
def base():

    return bikes_frames(BIKES, short_side=32, num=60)


def _all_records(out):
    recs = []
    for f in sorted(out.glob("shard-*.tfrecord")):
        recs += records.read_examples(f)
    return recs


def test_ucf101_official_splits_and_prepared_counts(tmp_path, base):
    vids = make_ucf101(tmp_path / "ucf", base)
    lst = list_dataset("ucf101", tmp_path / "ucf")
    assert lst.class_names == ["ApplyEyeMakeup", "Biking", "YoYo"]
    assert lst.split_names == ["train1", "test1", "train2", "test2", "train3", "test3"]
    by_id = {it.video_id: it for it in lst.items}
    it = by_id["Biking/v_Biking_g02_c01"]
    assert it.label == 1 and set(it.splits) == {"train1", "test2", "train3"}

    m = prep.prepare("ucf101", tmp_path / "ucf", tmp_path / "out", short_side=24,
                     videos_per_shard=4, progress=False)
    assert m["num_videos"] == len(vids) == 9
    for k in (1, 2, 3):
        assert m["counts"][f"test{k}"] == {c: 1 for c in lst.class_names}
        assert m["counts"][f"train{k}"] == {c: 2 for c in lst.class_names}
    recs = _all_records(tmp_path / "out")
    assert sorted(r["video_id"] for r in recs) == sorted(by_id)
    r = next(r for r in recs if r["video_id"] == "YoYo/v_YoYo_g03_c01")
    assert r["label"] == 2
    assert r["num_frames"] == [10] and r["height"] == [24] and len(r["frames"]) == 10
    # frames are JPEGs of the real content at the prepared size
    import cv2

    img = cv2.imdecode(np.frombuffer(r["frames"][0], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (24, 56, 3) and img.std() > 10
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["params"]["short_side"] == 24 and man["skipped"] == []


def test_hmdb51_split_ids(tmp_path, base):
    make_hmdb51(tmp_path / "h", base)
    lst = list_dataset("hmdb51", tmp_path / "h")
    assert lst.class_names == ["brush_hair", "cartwheel"]
    by_id = {it.video_id: set(it.splits) for it in lst.items}
    # clip_0 has ids 1, 2, 0 in splits 1, 2, 3: train, test, unused
    assert by_id["brush_hair/brush_hair_clip_0"] == {"train1", "test2"}
    assert by_id["cartwheel/cartwheel_clip_1"] == {"test1", "train3"}
    assert by_id["cartwheel/cartwheel_clip_2"] == {"train2", "test3"}
    counts = {s: sum(s in v for v in by_id.values()) for s in lst.split_names}
    assert counts == {f"{k}{i}": 2 for i in (1, 2, 3) for k in ("train", "test")}


def test_yuppp_ten_ninety_split_per_camera(tmp_path, base):
    make_yuppp(tmp_path / "y", base)
    lst = list_dataset("yuppp", tmp_path / "y", seed=3)
    assert lst.class_names == ["Beach", "Fountain"]
    for cls in range(2):
        for cam in ("static", "moving"):
            its = [i for i in lst.items if i.label == cls and i.attrs["camera"] == cam]
            assert len(its) == 10
            assert sum("train" in i.splits for i in its) == 1  # 10% of each camera subset
            assert all(f"{'train' if 'train' in i.splits else 'test'}_{cam}" in i.splits
                       for i in its)
    again = list_dataset("yuppp", tmp_path / "y", seed=3)
    assert [i.splits for i in again.items] == [i.splits for i in lst.items]
    other = list_dataset("yuppp", tmp_path / "y", seed=4)
    assert [i.splits for i in other.items] != [i.splits for i in lst.items]


def test_yuppp_split_file_gives_the_training_videos(tmp_path, base, capsys):
    # the official split's list is not shipped: a user passes it; everything else tests
    make_yuppp(tmp_path / "y", base, per_camera=2)
    listed = tmp_path / "train.txt"
    listed.write_text("# YUP++ training videos\n"
                      "camera_static/Beach/Beach_static_cam_02.mp4\n"
                      "camera_moving\\Fountain\\Fountain_moving_cam_01   # no extension, backslashes\n\n")
    lst = list_dataset("yuppp", tmp_path / "y", split_file=str(listed))
    train = sorted(i.video_id for i in lst.items if "train" in i.splits)
    assert train == ["camera_moving/Fountain/Fountain_moving_cam_01",
                     "camera_static/Beach/Beach_static_cam_02"]
    assert sum("test" in i.splits for i in lst.items) == 6
    assert {"train_moving", "train"} <= set(next(i for i in lst.items if i.video_id == train[0]).splits)
    assert lst.params["train_videos"] == 2
    listed.write_text("camera_static/Beach/Beach_static_cam_02.mp4\ncamera_static/Beach/nope.mp4\n")
    with pytest.raises(DataError, match=r"train.txt:2: 'camera_static/Beach/nope.mp4' is not a "
                                        r"video of the YUP\+\+ tree"):
        list_dataset("yuppp", tmp_path / "y", split_file=str(listed))
    from tfzoo.data.prepare import main

    assert main(["--dataset=ucf101", f"--root={tmp_path}", f"--out={tmp_path / 'o'}",
                 f"--split_file={listed}", "--no_progress"]) != 0
    assert "--split_file applies to --dataset=yuppp" in capsys.readouterr().err


def test_imagenet_vid_snippets_boxes_and_det_mix(tmp_path, base):
    snippets = make_imagenet_vid(tmp_path / "vid", base)
    lst = list_dataset("imagenet_vid", tmp_path / "vid")
    vid = [i for i in lst.items if i.attrs["source"] == "VID"]
    det = [i for i in lst.items if i.attrs["source"] == "DET"]
    assert len(vid) == 3 and len(det) == 2  # the non-VID DET class is not in the mix
    assert {i.label for i in det} == {lst.class_names.index("bicycle")}
    t0 = next(i for i in vid if i.video_id.endswith("train_00000000"))
    assert t0.label == lst.class_names.index("bicycle") and len(t0.frame_paths) == 12
    assert t0.attrs["sample_frames"] == [0, 1, 2, 4, 5, 6, 7, 9, 10, 11]
    assert sum("val" in i.splits for i in lst.items) == 1

    m = prep.prepare("imagenet_vid", tmp_path / "vid", tmp_path / "out", short_side=16,
                     videos_per_shard=2, progress=False)
    assert m["splits"] == {"train": 4, "val": 1}
    r = next(r for r in _all_records(tmp_path / "out") if r["video_id"].endswith("train_00000000"))
    scale = 16 / base.shape[1]
    assert r["box_track"][:2] == [0, 1] and r["box_frame"][:4] == [0, 0, 1, 1]
    np.testing.assert_allclose(r["box"][:4], np.array([2, 3, 30, 20]) * scale, rtol=0.02)
    assert r["sample_frames"] == t0.attrs["sample_frames"]


def test_folder_corrupt_file_skipped_and_reported(tmp_path, base):
    make_folder(tmp_path / "f", base, per_class=(3, 2))
    (tmp_path / "f" / "class1" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"x" * 500)
    (tmp_path / "f" / "class0" / "empty.avi").write_bytes(b"")
    m = prep.prepare("folder", tmp_path / "f", tmp_path / "out", short_side=24,
                     videos_per_shard=2, progress=False)
    assert m["counts"]["all"] == {"class0": 3, "class1": 2}
    assert m["num_videos"] == 5
    reasons = {s["video_id"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"class1/broken", "class0/empty"}
    assert "broken.mp4" in reasons["class1/broken"] and "empty" in reasons["class0/empty"]
    assert m["splits"]["train"] + m["splits"]["test"] == 5


def test_killed_prepare_resumes_without_duplicates(tmp_path, base, monkeypatch):
    make_folder(tmp_path / "f", base, per_class=(4, 3))
    out = tmp_path / "out"
    real = prep._write_shard
    calls = []

    def dying(out_, index, count, items, params):
        if len(calls) == 2:
            # the kill arrives while the third shard is half written
            (out / f".{records.shard_name(index, count)}.tfrecord.999.tmp").write_bytes(b"half")
            raise KeyboardInterrupt
        calls.append(index)
        return real(out_, index, count, items, params)

    monkeypatch.setattr(prep, "_write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare("folder", tmp_path / "f", out, short_side=24, videos_per_shard=2,
                     progress=False)
    assert not (out / "manifest.json").exists()
    done = sorted(out.glob("shard-*.json"))
    assert len(done) == 2
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tfrecord")}

    monkeypatch.setattr(prep, "_write_shard", real)
    m = prep.prepare("folder", tmp_path / "f", out, short_side=24, videos_per_shard=2,
                     progress=False)
    assert not list(out.glob(".*tmp"))
    ids = [r["video_id"] for r in _all_records(out)]
    assert len(ids) == len(set(ids)) == 7 == m["num_videos"]
    # finished shards were not redone
    for name, t in mtimes.items():
        assert (out / name).stat().st_mtime_ns == t
    # a different setting into the same directory is refused, naming the difference
    with pytest.raises(DataError, match="short_side"):
        prep.prepare("folder", tmp_path / "f", out, short_side=32, videos_per_shard=2,
                     progress=False)


def test_cli_and_errors(tmp_path, base, capsys):
    make_folder(tmp_path / "f", base, per_class=(2, 1))
    # Issue 23 item 3: the 0.1 dashed spellings still work, each with a one-line note.
    rc = prep.main(["--dataset", "folder", "--root", str(tmp_path / "f"), "--out",
                    str(tmp_path / "o"), "--short-side", "24", "--workers", "2",
                    "--videos-per-shard=1", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0 and "prepared 3 videos" in out.out
    notes = [line for line in out.err.splitlines() if "deprecated" in line]
    assert notes == [f"python -m tfzoo.data.prepare: note: --{d} is deprecated, use --{u} (the "
                     "dashed spellings go in the next release)" for d, u in
                     (("short-side", "short_side"), ("videos-per-shard", "videos_per_shard"),
                      ("no-progress", "no_progress"))]
    assert len(list((tmp_path / "o").glob("shard-*.tfrecord"))) == 3
    rc = prep.main(["--dataset=ucf101", f"--root={tmp_path / 'f'}",
                    f"--out={tmp_path / 'o2'}", "--no_progress"])
    assert rc == 2 and "classInd.txt" in capsys.readouterr().err
    # absl flags: underscores, --help lists them
    assert prep.main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert "--short_side" in shown and "--beam_pipeline_options" in shown


def test_out_must_be_new_empty_or_a_preparation(tmp_path, base, capsys):
    """Issue 11 item 11: an existing file or an unrelated non-empty folder as --out is refused
    (one line, exit 2) before anything is written into it."""
    make_folder(tmp_path / "f", base, per_class=(1, 1))
    (tmp_path / "file.txt").write_text("keep me")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("keep me")
    for out, named in ((tmp_path / "file.txt", "file.txt"), (tmp_path / "docs", "notes.md")):
        rc = prep.main(["--dataset", "folder", "--root", str(tmp_path / "f"), "--out", str(out),
                        "--short_side", "24", "--no_progress"])
        err = capsys.readouterr().err
        assert rc == 2 and named in err and "Traceback" not in err, err
    assert (tmp_path / "file.txt").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["notes.md"]
    # An empty folder is fine, and so is the same preparation again (resumed: nothing to do).
    (tmp_path / "empty").mkdir()
    for _ in range(2):
        m = prep.prepare("folder", tmp_path / "f", tmp_path / "empty", short_side=24,
                         progress=False)
        assert m["num_videos"] == 2


def test_folder_split_is_stratified_per_class(tmp_path):
    """Issue 11 item 16: the folder layout's 80/20 split is drawn per class, so 16 videos of one
    class split 13/3 (not whatever a per-video coin gives) and no class is missing from test."""
    for c, n in (("a", 16), ("b", 5), ("c", 2), ("d", 1)):
        for j in range(n):
            (tmp_path / c).mkdir(exist_ok=True)
            (tmp_path / c / f"clip{j:02d}.mp4").write_bytes(b"")  # listing reads names only
    listing = list_dataset("folder", tmp_path)
    test = {}
    for it in listing.items:
        assert it.splits[0] == "all" and it.splits[1] in ("train", "test")
        name = listing.class_names[it.label]
        test.setdefault(name, [0, 0])[it.splits[1] == "test"] += 1
    assert test == {"a": [13, 3], "b": [4, 1], "c": [1, 1], "d": [1, 0]}
    # The choice is a property of each video's id: listing again gives the same split.
    again = {it.video_id: it.splits for it in list_dataset("folder", tmp_path).items}
    assert again == {it.video_id: it.splits for it in listing.items}


def test_prepare_stores_tvl1_flow_of_the_stored_frames(tmp_path, base):
    import cv2

    from tfzoo.video import iter_frames
    from tfzoo.flow import tvl1_video

    make_folder(tmp_path / "f", base, per_class=(1, 1))
    m = prep.prepare("folder", tmp_path / "f", tmp_path / "out", short_side=24, flow="tvl1",
                     progress=False)
    assert m["num_videos"] == 2 and m["skipped"] == []
    for r in _all_records(tmp_path / "out"):
        src = tmp_path / "f" / f"{r['video_id']}.avi"
        frames = np.stack(list(iter_frames(src, short_side=24)))
        assert len(r["flow_u"]) == len(r["flow_v"]) == len(r["frames"]) - 1 == len(frames) - 1
        ref = tvl1_video(frames)
        assert np.abs(ref).mean() > 0.05  # the clip moves
        stored = np.stack([[cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE)
                            for b in r[k]] for k in ("flow_u", "flow_v")], -1)
        back = records.decode_flow(stored.astype(np.float32))
        # Quantisation (40/255 px per code) and JPEG only.
        assert np.abs(back - np.clip(ref, -20, 20)).mean() < 0.2


def test_box_without_a_coordinate_skips_and_reports_its_annotation(tmp_path, base):
    """Issue 24 item 5: a VOC box missing <ymax> was a TypeError that aborted prepare; now the
    snippet (or DET image) is skipped and reported naming the annotation file, the rest is
    prepared."""
    make_imagenet_vid(tmp_path / "vid", base)
    ann = tmp_path / "vid" / "Annotations"
    # frame 3 of a training snippet (not among the frames sampled for its label) ...
    bad_vid = next((ann / "VID" / "train").rglob("ILSVRC2015_train_00001000/000003.xml"))
    bad_vid.write_text(bad_vid.read_text().replace("<ymax>20</ymax>", "", 1))
    # ... and one DET image, read while listing
    bad_det = sorted((ann / "DET").rglob("n02834778_1.xml"))[0]
    bad_det.write_text(bad_det.read_text().replace("<xmin>1</xmin>", "<xmin></xmin>"))
    m = prep.prepare("imagenet_vid", tmp_path / "vid", tmp_path / "out", short_side=16,
                     videos_per_shard=2, progress=False)
    reasons = {s["video_id"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"VID/train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00001000",
                            "DET/train/ILSVRC2013_train/n02834778/n02834778_1"}, reasons
    assert all(("000003.xml" in r and "ymax" in r) or ("n02834778_1.xml" in r and "xmin" in r)
               for r in reasons.values()), reasons
    assert m["splits"] == {"train": 2, "val": 1}
    ids = {r["video_id"] for r in _all_records(tmp_path / "out")}
    assert not ids & set(reasons) and len(ids) == 3


def test_prepare_holds_a_window_of_frames_not_the_video(tmp_path, base, monkeypatch):
    """Issue 24 item 4: frames stream through JPEG encoding and flow; at most the flow window
    of decoded frames is alive at once (it was every frame of the video)."""
    import weakref

    from _data_fixtures import write_clip

    write_clip(tmp_path / "f" / "a" / "long.avi", base[:40])
    refs, peak = [], [0]
    real = prep.iter_frames

    class Frame(np.ndarray):  # a plain ndarray subclass, so the frames can be weakly tracked
        pass

    def tracked(*args, **kwargs):
        for f in real(*args, **kwargs):
            f = f.view(Frame)
            refs.append(weakref.ref(f))
            # No gc.collect(): a frame kept only by a cycle counts as alive, which can only
            # raise the peak (one collection per frame cost 1-2 s with TensorFlow loaded).
            peak[0] = max(peak[0], sum(r() is not None for r in refs))
            yield f

    monkeypatch.setattr(prep, "iter_frames", tracked)
    m = prep.prepare("folder", tmp_path / "f", tmp_path / "out", short_side=24, flow="opencv",
                     progress=False)
    assert m["num_videos"] == 1 and m["num_frames"] == 40, m["skipped"]
    assert 2 <= peak[0] <= prep._FlowComputer.WINDOW + 1, peak[0]
    r = _all_records(tmp_path / "out")[0]
    assert len(r["frames"]) == 40 and len(r["flow_u"]) == len(r["flow_v"]) == 39


def test_frames_over_the_pixel_cap_skip_their_video(tmp_path, base):
    """Issue 24 item 4: a 4096x8 MJPEG would be stored as 256 x 131072 frames (101 MB each);
    it is skipped and reported before decoding, the other videos are prepared."""
    from _data_fixtures import make_folder

    make_folder(tmp_path / "f", base, per_class=(1, 1))
    write_mjpeg(tmp_path / "f" / "class0" / "wide.avi", 4096, 8)
    m = prep.prepare("folder", tmp_path / "f", tmp_path / "out", progress=False)
    assert m["num_videos"] == 2 and m["params"]["max_frame_pixels"] == 3840 * 2160
    (reason,) = [s["reason"] for s in m["skipped"] if s["video_id"] == "class0/wide"]
    assert "wide.avi" in reason and "4096x8" in reason and "131072x256" in reason
    assert "max_frame_pixels=8294400" in reason
    # with the cap raised (here: off) the same video is prepared
    m = prep.prepare("folder", tmp_path / "f", tmp_path / "out2", short_side=16,
                     max_frame_pixels=None, progress=False)
    assert m["num_videos"] == 3 and m["skipped"] == []


def test_a_second_run_on_the_same_out_is_refused_naming_the_holder(tmp_path, base,
                                                                  monkeypatch, capsys):
    """Issue 24 item 6: two prepare runs on one --out deleted each other's temporary shards;
    the second is now refused (one line naming the lock holder) and the first finishes."""
    import os
    import socket

    make_folder(tmp_path / "f", base, per_class=(2, 2))
    out = tmp_path / "out"
    real = prep._write_shard
    seen = {}

    def write_and_start_another(out_, index, count, items, params):
        if not seen:
            # a half-written shard of this run, as the second run would find it
            (out / f".{records.shard_name(index, count)}.tfrecord.{os.getpid()}.tmp").write_bytes(b"x")
            args = ["--dataset", "folder", "--root", str(tmp_path / "f"), "--out", str(out),
                    "--short_side", "24", "--videos_per_shard", "1", "--no_progress"]
            seen["code"] = prep.main(args)
            seen["err"] = capsys.readouterr().err
            seen["tmp_kept"] = bool(list(out.glob(".shard-*.tmp")))
        return real(out_, index, count, items, params)

    monkeypatch.setattr(prep, "_write_shard", write_and_start_another)
    m = prep.prepare("folder", tmp_path / "f", out, short_side=24, videos_per_shard=1,
                     progress=False)
    assert seen["code"] == 2 and seen["tmp_kept"], seen
    err = seen["err"].strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(out) in err and f"pid {os.getpid()} on {socket.gethostname()}" in err, err
    assert m["num_videos"] == 4
    # released: the next run (resumed, nothing to do) takes the lock again
    assert prep.prepare("folder", tmp_path / "f", out, short_side=24, videos_per_shard=1,
                        progress=False)["num_videos"] == 4
