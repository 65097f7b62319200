"""Small fixture trees in each dataset layout, cut from the real clip tests/data/bikes.mp4."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from tfzoo.video import read_video

_CACHE: dict = {}


def bikes_frames(path, short_side=32, num=60) -> np.ndarray:
    key = (str(path), short_side, num)
    if key not in _CACHE:
        _CACHE[key] = read_video(path, num_frames=num, short_side=short_side)
    return _CACHE[key]


def write_clip(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """Encodes RGB frames as an MPEG-4 AVI (the UCF101/HMDB51 container) or MP4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.height, s.width = frames.shape[1] & ~1, frames.shape[2] & ~1
        s.pix_fmt = "yuv420p"
        s.codec_context.qscale = 3 if hasattr(s.codec_context, "qscale") else None
        s.bit_rate = 2_000_000
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: s.height, : s.width]),
                                            format="rgb24")
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def clip_variant(base: np.ndarray, k: int, length: int) -> np.ndarray:
    """A distinct short clip: a different start in the real video and a colour shift."""
    start = (7 * k) % max(1, len(base) - length)
    out = base[start:start + length].astype(np.int16)
    out[..., k % 3] += 20 * (k % 4)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_ucf101(root: Path, base, classes=("ApplyEyeMakeup", "Biking", "YoYo"), groups=3):
    """UCF-101/<Class>/v_<Class>_gXX_c01.avi + ucfTrainTestlist/ (official formats)."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    vids = []
    for ci, c in enumerate(classes):
        for g in range(1, groups + 1):
            rel = f"{c}/v_{c}_g{g:02d}_c01.avi"
            write_clip(root / "UCF-101" / rel, clip_variant(base, ci * groups + g, 10))
            vids.append((rel, ci + 1, g))
    for k in (1, 2, 3):
        # split k tests group k (the official splits hold out groups of actors)
        (lists / f"trainlist0{k}.txt").write_text(
            "".join(f"{rel} {ci}\r\n" for rel, ci, g in vids if g != k))
        (lists / f"testlist0{k}.txt").write_text(
            "".join(f"{rel}\r\n" for rel, ci, g in vids if g == k))
    return vids


def make_hmdb51(root: Path, base, classes=("brush_hair", "cartwheel"), per_class=3):
    sp = root / "testTrainMulti_7030_splits"
    sp.mkdir(parents=True)
    for ci, c in enumerate(classes):
        names = [f"{c}_clip_{j}.avi" for j in range(per_class)]
        for j, n in enumerate(names):
            write_clip(root / "hmdb51_org" / c / n, clip_variant(base, 5 * ci + j, 10))
        for k in (1, 2, 3):
            ids = [1, 2, 0][(k - 1):] + [1, 2, 0][: k - 1]  # rotate train/test/unused
            (sp / f"{c}_test_split{k}.txt").write_text(
                "".join(f"{n} {ids[j % 3]} \n" for j, n in enumerate(names)))
    return classes


def make_yuppp(root: Path, base, classes=("Beach", "Fountain"), per_camera=10):
    for ci, c in enumerate(classes):
        for cam in ("static", "moving"):
            for j in range(per_camera):
                write_clip(root / f"camera_{cam}" / c / f"{c}_{cam}_cam_{j + 1:02d}.mp4",
                           clip_variant(base, ci + j, 8))


def make_folder(root: Path, base, per_class=(3, 2)):
    for ci, n in enumerate(per_class):
        for j in range(n):
            write_clip(root / f"class{ci}" / f"v{j}.avi", clip_variant(base, 3 * ci + j, 10))


def make_imagenet_vid(root: Path, base):
    """Data/VID/{train,val}/.../<snippet>/%06d.JPEG + VOC XML with track ids; Data/DET/train."""
    import cv2

    def xml(path: Path, h, w, objs):
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(
            f"<object><trackid>{t}</trackid><name>{wnid}</name><bndbox><xmax>{x1}</xmax>"
            f"<xmin>{x0}</xmin><ymax>{y1}</ymax><ymin>{y0}</ymin></bndbox><occluded>0</occluded>"
            f"<generated>0</generated></object>" for t, wnid, (x0, y0, x1, y1) in objs)
        path.write_text(f"<annotation><folder>x</folder><filename>f</filename><size><width>{w}"
                        f"</width><height>{h}</height></size>{body}</annotation>")

    snippets = {"train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000": (12, "n02834778"),
                "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00001000": (15, "n02958343"),
                "val/ILSVRC2015_val_00000000": (6, "n02834778")}
    for k, (rel, (n, wnid)) in enumerate(snippets.items()):
        frames = clip_variant(base, k, n)
        h, w = frames.shape[1:3]
        for t, f in enumerate(frames):
            p = root / "Data" / "VID" / rel / f"{t:06d}.JPEG"
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            xml(root / "Annotations" / "VID" / rel / f"{t:06d}.xml", h, w,
                [(0, wnid, (2 + t, 3, 30 + t, 20)), (1, "n02084071", (40, 5, 60, 25))])
    # DET: two bicycle images, one of a non-VID class (excluded from the mix)
    for j, wnid in enumerate(["n02834778", "n02834778", "n07753592"]):
        p = root / "Data" / "DET" / "train" / "ILSVRC2013_train" / wnid / f"{wnid}_{j}.JPEG"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), base[j])
        xml(root / "Annotations" / "DET" / "train" / "ILSVRC2013_train" / wnid / f"{wnid}_{j}.xml",
            base.shape[1], base.shape[2], [(-1, wnid, (1, 1, 20, 20))])
    return snippets


def write_mjpeg(path, width, height, n=3):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = width, height, "yuvj420p"
        for k in range(n):
            img = np.full((height, width, 3), 40 * k, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


# The classes of the official-layout trees (tests/train/test_recipes_e2e.py,
# tests/cli/test_docs_commands.py): two per dataset, clips cut from the real clip.
LAYOUT_CLASSES = {"ucf101": ("ApplyEyeMakeup", "Biking"), "hmdb51": ("brush_hair", "cartwheel"),
                  "yuppp": ("Beach", "Fountain")}


def official_layout(dataset: str, root: Path, clip: Path, short_side: int = 64) -> Path:
    """A tiny tree of `dataset` in its layout as distributed (ucf101, hmdb51, yuppp,
    imagenet_vid, folder) under `root`; 64 px clips so that VGG towers reach pool5."""
    base = bikes_frames(clip, short_side=short_side, num=40)
    if dataset == "ucf101":
        make_ucf101(root, base, classes=LAYOUT_CLASSES[dataset], groups=2)
    elif dataset == "hmdb51":
        make_hmdb51(root, base, classes=LAYOUT_CLASSES[dataset], per_class=3)
    elif dataset == "yuppp":
        make_yuppp(root, base, classes=LAYOUT_CLASSES[dataset], per_camera=3)
    elif dataset == "imagenet_vid":
        make_imagenet_vid(root, base)
    elif dataset == "folder":
        make_folder(root, base)
    else:
        raise AssertionError(f"no fixture layout for {dataset!r}")
    return root


def write_prepared(tmp_path, videos, flow=True):
    """A prepared directory (`tfzoo.data.prepare`'s format) written directly from arrays:
    `videos` = [(rgb (T,H,W,3) uint8, flow (T-1,H,W,2) px or None, label)], one shard."""
    import json

    import tensorflow as tf

    from tfzoo.data import records

    path = tmp_path / "shard-00000-of-00001.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        for i, (rgb, fl, label) in enumerate(videos):
            fu = fv = None
            if flow:
                pairs = [records.encode_flow_jpegs(x, 100) for x in fl]
                fu, fv = [p[0] for p in pairs], [p[1] for p in pairs]
            w.write(records.make_example(
                video_id=f"v{i}", label=label, splits=["train", "test"],
                frames=[records.encode_jpeg(x, 100) for x in rgb], height=rgb.shape[1],
                width=rgb.shape[2], flow_u=fu, flow_v=fv))
    n = len(videos)
    manifest = {"format_version": records.FORMAT_VERSION, "dataset": "t", "class_names": ["a", "b"],
                "splits": {"train": n, "test": n}, "counts": {}, "skipped": [],
                "streams": ["rgb", "flow"] if flow else ["rgb"], "params": {"short_side": None},
                "shards": [{"file": path.name, "num_videos": n, "splits": {"train": n, "test": n}}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path
