"""Reading detection videos: the ImageNet VID layout (real or the embedded synthetic set) and
a simple custom layout, with corrupt frames/annotations skipped and reported.

ImageNet VID layout (ILSVRC2015; `tfzoo.detection.synthetic` writes the same)::

    ROOT/Data/VID/<split>/[<group>/]<snippet>/<frame>.JPEG
    ROOT/Annotations/VID/<split>/[<group>/]<snippet>/<frame>.xml   (VOC XML, boxes + trackid)
    ROOT/classes.txt   optional "<wnid> <name>" lines; default: the 30 VID classes
    ROOT/Data/DET/train/.../<image>.JPEG + ROOT/Annotations/DET/train/.../<image>.xml
                       optional: split "train" adds these images (one-frame videos) for the
                       DET+VID mix, at most `det_per_class` per class

Custom layout (one folder per video, or one video file per video)::

    ROOT/<split>/<video>/*.jpg|*.png + ROOT/<split>/<video>/boxes.csv
    ROOT/<split>/<video>.mp4|.avi|... + ROOT/<split>/<video>.csv
    ROOT/classes.txt   optional, one class name per line (default: sorted names in the CSVs)

    boxes.csv: a header line `frame,track_id,class,x1,y1,x2,y2`, then one row per box; `frame`
    is the image file name (frame folders) or the 0-based frame index (video files), `class`
    a class name, boxes in pixels (x1 y1 x2 y2, inclusive), `track_id` an integer (-1 if
    unknown). Frames without a row have no objects.

Example:
>>> import tempfile, pathlib
>>> from tfzoo.detection.synthetic import SyntheticDetectionConfig, write_synthetic_vid
>>> root = pathlib.Path(tempfile.mkdtemp()) / "syn"
>>> _ = write_synthetic_vid(root, SyntheticDetectionConfig(videos=(1, 1), frames=3))
>>> ds = read_detection_dataset(root, "val")
>>> video = next(iter(ds))
>>> video.frames.shape, len(video.boxes), ds.class_names[0]
((3, 96, 128, 3), 3, 'disc')
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfzoo.data.adapters import IMAGE_EXTENSIONS, list_det_images, parse_voc_xml, vid_classes
from tfzoo.data.base import DataError
from tfzoo.video import read_video

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
CSV_HEADER = ["frame", "track_id", "class", "x1", "y1", "x2", "y2"]


@dataclass
class DetectionVideo:
    """One decoded video with its per-frame ground truth (frames that failed are dropped)."""

    video_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    frame_names: list[str]
    boxes: list[np.ndarray]  # per frame (n, 4) float32 x1 y1 x2 y2
    classes: list[np.ndarray]  # per frame (n,) int32
    track_ids: list[np.ndarray]  # per frame (n,) int64
    # per frame (n,) bool: the annotation's `occluded` flag (VID XML; None: not annotated)
    occluded: list[np.ndarray] | None = None
    det: bool = False  # an ImageNet DET image (a one-frame video from Data/DET)

    def annotations(self) -> dict:
        """`evaluate_vid` annotations: {(video_id, t): [(class, x1, y1, x2, y2, track), ...]}."""
        return {(self.video_id, t): [(int(c), *map(float, b), int(k))
                                     for c, b, k in zip(cs, bs, ks)]
                for t, (bs, cs, ks) in enumerate(zip(self.boxes, self.classes, self.track_ids))}

    def occluded_objects(self) -> set:
        """The occluded objects as `evaluate_vid(subsets=...)` keys {((video_id, t), j)}."""
        return {((self.video_id, t), j) for t, flags in enumerate(self.occluded or [])
                for j in np.flatnonzero(flags).tolist()}


@dataclass
class _Entry:
    video_id: str
    frame_paths: list[str] = field(default_factory=list)
    annotation_paths: list[str | None] = field(default_factory=list)  # VID XML per frame
    video_path: str | None = None  # custom: a video file
    rows: dict = field(default_factory=dict)  # custom: frame key -> [(track, class, box)]
    det: bool = False  # an ImageNet DET image: objects of other classes are not in the mix


def _read_image(path):
    import cv2  # deferred: optional OpenCV (the test extra)

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class DetectionDataset:
    """Lists the videos of one split (no decoding); iterating decodes them one at a time.

    `skipped` lists {"path", "reason"} for every frame, annotation, CSV row or video that could
    not be used; it grows while iterating (corrupt frames are found when decoded).
    """

    def __init__(self, root, split: str, *, det_per_class: int = 2000, seed: int = 0):
        self.root = Path(root)
        self.split = split
        self.det_per_class, self.seed = det_per_class, seed
        self.skipped: list[dict] = []
        if not self.root.is_dir():
            raise DataError(f"{self.root}: not a folder (expected an ImageNet VID layout with "
                            "Data/VID/, or a custom layout, see docs/detection.md)")
        if (self.root / "Data" / "VID").is_dir():
            self.layout = "imagenet_vid"
            self._list_vid()
        else:
            self.layout = "custom"
            self._list_custom()

    # ---------------------------------------------------------------------- listing
    def _list_vid(self):
        pairs = vid_classes(self.root)
        self.class_names = [name for _, name in pairs]
        self._wnid = {wnid: i for i, (wnid, _) in enumerate(pairs)}
        base = self.root / "Data" / "VID" / self.split
        if not base.is_dir():
            raise DataError(f"{base}: no such split folder (have: "
                            f"{sorted(p.name for p in base.parent.iterdir())})")
        self.entries = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            frames = sorted(f for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS))
            if not frames:
                continue
            rel = Path(dirpath).relative_to(self.root / "Data" / "VID")
            ann = self.root / "Annotations" / "VID" / rel
            e = _Entry(rel.as_posix())
            for f in frames:
                e.frame_paths.append(str(Path(dirpath) / f))
                a = ann / (Path(f).stem + ".xml")
                e.annotation_paths.append(str(a) if a.exists() else None)
            self.entries.append(e)
        if self.split == "train":
            # The thesis' DET+VID mix (§8.5.1): DET images of these classes, each a one-frame
            # "video", at most `det_per_class` per class.
            for img, a, _ in list_det_images(self.root, self._wnid,
                                             per_class=self.det_per_class, seed=self.seed,
                                             skipped=self.skipped):
                rel = img.relative_to(self.root / "Data").with_suffix("")
                self.entries.append(_Entry(rel.as_posix(), frame_paths=[str(img)],
                                           annotation_paths=[str(a)], det=True))

    def _list_custom(self):
        base = self.root / self.split
        if not base.is_dir():
            raise DataError(f"{base}: no such split folder in the custom layout "
                            "(ROOT/<split>/<video>/ frames + boxes.csv)")
        self.entries = []
        names = set()
        for p in sorted(base.iterdir()):
            if p.is_dir():
                e = _Entry(p.name, frame_paths=[str(f) for f in sorted(p.iterdir())
                                                if f.suffix.lower() in IMAGE_EXTENSIONS])
                csv_path = p / "boxes.csv"
            elif p.suffix.lower() in VIDEO_EXTENSIONS:
                e = _Entry(p.stem, video_path=str(p))
                csv_path = p.with_suffix(".csv")
            else:
                continue
            if csv_path.exists():
                e.rows = self._read_csv(csv_path)
                names.update(c for rows in e.rows.values() for _, c, _ in rows)
            else:
                self.skipped.append({"path": str(csv_path), "reason": "missing box file: the "
                                     "video is read without objects"})
            self.entries.append(e)
        classes = self.root / "classes.txt"
        self.class_names = ([line.strip() for line in classes.read_text().splitlines()
                             if line.strip()] if classes.exists() else sorted(names))
        self._index = {n: i for i, n in enumerate(self.class_names)}

    def _read_csv(self, path) -> dict:
        rows: dict = {}
        try:
            with open(path, newline="") as f:
                reader = csv.reader(f)
                header = [h.strip() for h in next(reader, [])]
                if header != CSV_HEADER:
                    self.skipped.append({"path": str(path), "reason": f"header {header}, "
                                         f"expected {CSV_HEADER}"})
                    return rows
                for n, row in enumerate(reader, start=2):
                    try:
                        frame, track, cls = row[0].strip(), int(row[1]), row[2].strip()
                        box = [float(v) for v in row[3:7]]
                        if len(row) != 7 or box[2] < box[0] or box[3] < box[1]:
                            raise ValueError("expected 7 fields and x2 >= x1, y2 >= y1")  # internal: skipped below
                    except (ValueError, IndexError) as e:
                        self.skipped.append({"path": f"{path}:{n}", "reason": f"bad row {row}: "
                                             f"{e}"})
                        continue
                    rows.setdefault(frame, []).append((track, cls, box))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            self.skipped.append({"path": str(path), "reason": f"unreadable box file ({e})"})
        return rows

    # ---------------------------------------------------------------------- decoding
    def __len__(self):
        return len(self.entries)

    def __iter__(self):
        for e in self.entries:
            video = self._load(e)
            if video is not None:
                yield video

    def video(self, i: int) -> "DetectionVideo | None":
        """The i-th entry decoded (None if nothing in it is readable; see `skipped`)."""
        return self._load(self.entries[i])

    def _objects_vid(self, path, det: bool = False):
        if path is None:
            return []
        objs = []
        for o in parse_voc_xml(path)["objects"]:
            if o["wnid"] not in self._wnid:
                if det:
                    continue
                self.skipped.append({"path": path, "reason": f"unknown class {o['wnid']!r}"})
                continue
            objs.append((o["trackid"], self._wnid[o["wnid"]], o["box"], bool(o["occluded"])))
        return objs

    def _objects_custom(self, e, key):
        objs = []
        for track, cls, box in e.rows.get(key, []):
            if cls not in self._index:
                self.skipped.append({"path": e.video_id, "reason": f"class {cls!r} not in "
                                     "classes.txt"})
                continue
            objs.append((track, self._index[cls], box, False))
        return objs

    def _load(self, e: _Entry):
        frames, names, objects = [], [], []
        if e.video_path is not None:
            try:
                decoded = read_video(e.video_path, short_side=None)  # boxes are in source pixels
            except Exception as err:  # any decoder failure: report the video, keep going
                self.skipped.append({"path": e.video_path, "reason": f"unreadable video ({err})"})
                return None
            for t, img in enumerate(decoded):
                frames.append(np.asarray(img))
                names.append(str(t))
                objects.append(self._objects_custom(e, str(t)))
        else:
            for t, path in enumerate(e.frame_paths):
                try:
                    img = _read_image(path)
                    if self.layout == "imagenet_vid":
                        objs = self._objects_vid(e.annotation_paths[t], e.det)
                    else:
                        objs = self._objects_custom(e, Path(path).name)
                except DataError as err:
                    self.skipped.append({"path": path, "reason": str(err)})
                    continue
                if frames and img.shape != frames[0].shape:
                    self.skipped.append({"path": path, "reason": f"size {img.shape[:2]} differs "
                                         f"from the video's {frames[0].shape[:2]}"})
                    continue
                frames.append(img)
                names.append(Path(path).stem)
                objects.append(objs)
        if not frames:
            self.skipped.append({"path": e.video_id, "reason": "no readable frame"})
            return None
        return DetectionVideo(
            video_id=e.video_id, frames=np.stack(frames), frame_names=names,
            boxes=[np.array([b for _, _, b, _ in o], np.float32).reshape(-1, 4) for o in objects],
            classes=[np.array([c for _, c, _, _ in o], np.int32) for o in objects],
            track_ids=[np.array([k for k, _, _, _ in o], np.int64) for o in objects],
            occluded=[np.array([v for *_, v in o], bool) for o in objects], det=e.det)


def read_detection_dataset(root, split: str = "train", *, det_per_class: int = 2000,
                           seed: int = 0) -> DetectionDataset:
    """The videos of `split` under `root` (ImageNet VID or custom layout, see module doc); an
    ImageNet layout's "train" adds ROOT/Data/DET/train images of its classes, at most
    `det_per_class` per class (a sample drawn with `seed`)."""
    return DetectionDataset(root, split, det_per_class=det_per_class, seed=seed)
