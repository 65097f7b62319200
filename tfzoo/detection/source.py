"""Detection data for train/evaluate: a folder in the ImageNet VID or custom layout
(`read_detection_dataset`), or the embedded synthetic set generated on the fly.

Training yields single frames (videos visited in a seeded random order, `frames_per_video`
random frames of each per pass, as the thesis samples 10 frames per VID training video),
resized so the shorter side is `image_size[0]` and the longer at most `image_size[1]`
(R-FCN/D&T: 600 / 1000), randomly flipped with their boxes. Each element is
`(image (H, W, 3) float32, {"gt_boxes" (G, 4), "gt_classes" (G,) int32, "gt_track_ids" (G,)
int32, "image_size" (2,) int32})`; `DetectionTask.batch` pads a batch (images with zeros,
ground truth with class -1). With `pairs=True` (D&T) each element is a frame pair, every tensor
with a pair axis first (images (2, H, W, 3), gt_boxes (2, G, 4), image_size (2, 2)).

DET/VID alternation (`alternate_det_vid=True`, D&T's training, thesis §8.5.2: "in each other
iteration we also sample from the ImageNet DET training set"): the pairs come one by one from
the VID videos and the DET images in turn (each kind in its own seeded random order), every
element tagged `det_image` in its labels; `DetectionTask.batch` batches the two kinds apart,
so the batches alternate VID, DET, VID, ... and a step never mixes them.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfzoo.data.base import DataError, DatasetInfo
from tfzoo.detection.dataset import read_detection_dataset
from tfzoo.detection.synthetic import SyntheticDetectionConfig, write_synthetic_vid
from tfzoo.utils import check_choice


def resize_for_detection(images, short_side: int | None, max_side: int | None):
    """Frames (..., H, W, 3) resized (bilinear) so the shorter side is `short_side` and the
    longer at most `max_side`; returns (float32 frames, scale). None: unchanged, scale 1."""
    images = tf.cast(images, tf.float32)
    if not short_side:
        return images, tf.constant(1.0)
    size = tf.cast(tf.shape(images)[-3:-1], tf.float32)
    scale = short_side / tf.reduce_min(size)
    if max_side:
        scale = tf.minimum(scale, max_side / tf.reduce_max(size))
    new = tf.cast(tf.round(size * scale), tf.int32)
    return tf.image.resize(images, new), scale


def flip_boxes(boxes, width):
    """Boxes (G, 4) of a frame `width` pixels wide after a horizontal flip (inclusive
    pixels: x -> width - 1 - x)."""
    w = tf.cast(width, tf.float32) - 1.0
    return tf.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)


class DetectionSource:
    """Detection videos of a folder, or of the embedded synthetic set (`root=None`).

    Args:
      root: an ImageNet VID or custom layout (docs/detection.md); None: the embedded synthetic
        set, generated into a temporary folder (removed at exit) with `synthetic` options
        (`tfzoo.detection.synthetic.SyntheticDetectionConfig` fields).
      frames_per_video: frames drawn from each training video per pass (None: all).
      pairs: training elements are frame pairs (t, t+tau) for D&T (`tfzoo.models.dt`):
        images (2, H, W, 3) and ground truth (2, G, ...) with the pair axis first (index 0 =
        t), both frames resized and flipped alike; a one-frame video (a DET image) gives two
        copies of itself whose objects get track ids 0..G-1 (WORKSPACE, "D&T frame pairs").
      tau: the pairs' temporal offset (1: adjacent frames, as D&T trains).
      alternate_det_vid: with `pairs`, training batches alternate between VID pairs and DET
        pairs (module docstring); the training split must hold both (an ImageNet layout with
        Data/DET/train, see `read_detection_dataset`).
    """

    def __init__(self, root=None, *, synthetic: dict | None = None,
                 frames_per_video: int | None = None, pairs: bool = False, tau: int = 1,
                 alternate_det_vid: bool = False):
        if not isinstance(pairs, bool):
            raise DataError(f"pairs={pairs!r}; expected True (frame pairs for D&T) or False")
        if not isinstance(alternate_det_vid, bool):
            raise DataError(f"alternate_det_vid={alternate_det_vid!r}; expected True (batches "
                            "alternate DET and VID pairs) or False")
        if alternate_det_vid and not pairs:
            raise DataError("alternate_det_vid=True alternates D&T's frame pairs; it needs "
                            "pairs=True")
        self.alternate_det_vid = alternate_det_vid
        if isinstance(tau, bool) or not isinstance(tau, int) or tau < 1:
            raise DataError(f"tau={tau!r}; expected a positive integer (frames between a pair)")
        self.pairs, self.tau = pairs, tau
        if root is None:
            tmp = Path(tempfile.mkdtemp(prefix="tfzoo-detection-"))
            atexit.register(shutil.rmtree, tmp, True)
            root = write_synthetic_vid(tmp / "set", SyntheticDetectionConfig(**(synthetic or {})))
            name = "detection_synthetic"
        else:
            name = "detection"
            if synthetic:
                raise DataError("synthetic options only apply to the embedded set (no data_dir)")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: not a folder (expected an ImageNet VID or custom "
                            "detection layout, see docs/detection.md)")
        self.frames_per_video = frames_per_video
        base = self.root / "Data" / "VID" if (self.root / "Data" / "VID").is_dir() else self.root
        splits = sorted(p.name for p in base.iterdir() if p.is_dir())
        self.splits = {s: read_detection_dataset(self.root, s) for s in splits}
        if not self.splits:
            raise DataError(f"{self.root}: no split folders")
        first = next(iter(self.splits.values()))
        self.info = DatasetInfo(name=name, class_names=list(first.class_names),
                                num_videos={s: len(d) for s, d in self.splits.items()},
                                extra={"fixed_frame_size": False})
        self._cache: dict = {}

    def videos(self, split: str):
        """The decoded videos of `split` (`DetectionVideo`s), in order."""
        check_choice("split", split, sorted(self.splits), error=DataError)
        if self.info.name == "detection_synthetic":  # small: decoded once
            if split not in self._cache:
                self._cache[split] = list(self.splits[split])
            return self._cache[split]
        return iter(self.splits[split])

    def _pool(self, split: str, det: bool | None = None):
        """(load(i) -> DetectionVideo or None, indices) of the videos of `split` (only the DET
        images, or only the others, when `det` is given), decoded one at a time when read (the
        synthetic set: decoded once)."""
        check_choice("split", split, sorted(self.splits), error=DataError)
        if self.info.name == "detection_synthetic":
            videos = self.videos(split)
            flags = [v.det for v in videos]
            load = videos.__getitem__
        else:
            data = self.splits[split]
            flags = [e.det for e in data.entries]
            load = data.video
        return load, [i for i, f in enumerate(flags) if det is None or f == det]

    def _videos(self, split: str, rng, det: bool | None = None):
        """The videos of `split` (see `_pool`), each pass in a new random order, forever."""
        load, indices = self._pool(split, det)
        while True:
            found = False
            for i in rng.permutation(indices):
                video = load(i)
                if video is not None:
                    found = True
                    yield video
            if not found:
                kind = {None: "", True: "DET ", False: "VID "}[det]
                raise DataError(f"split {split!r} of {self.root} has no readable {kind}video")

    def _frames(self, split: str, seed: int):
        rng = np.random.default_rng(seed)
        for video in self._videos(split, rng):
            t = np.arange(len(video.frames))
            if self.frames_per_video and len(t) > self.frames_per_video:
                t = rng.choice(t, self.frames_per_video, replace=False)
            for j in t:
                yield (video.frames[j], video.boxes[j].reshape(-1, 4),
                       video.classes[j].astype(np.int32),
                       video.track_ids[j].astype(np.int32))

    def _pairs(self, split: str, seed: int, det: bool | None = None):
        """(frames (2, H, W, 3), boxes (2, G, 4), classes (2, G), track ids (2, G)): frame t
        and t+tau of a video, the two frames' ground truth padded to one G (class -1); `det`:
        only DET images (True) or only the VID videos (False)."""
        rng = np.random.default_rng(seed)
        for video in self._videos(split, rng, det):
            n = len(video.frames)
            if n == 1:  # a DET image: two copies, every object tracked onto itself
                g = len(video.classes[0])
                ids = np.arange(g, dtype=np.int32)
                yield (np.stack([video.frames[0]] * 2),
                       np.stack([video.boxes[0].reshape(-1, 4)] * 2).astype(np.float32),
                       np.stack([video.classes[0].astype(np.int32)] * 2), np.stack([ids] * 2))
                continue
            tau = min(self.tau, n - 1)
            t = np.arange(n - tau)
            if self.frames_per_video and len(t) > self.frames_per_video:
                t = rng.choice(t, self.frames_per_video, replace=False)
            for j in t:
                both = (j, j + tau)
                g = max(len(video.classes[f]) for f in both)
                boxes = np.zeros((2, g, 4), np.float32)
                classes = np.full((2, g), -1, np.int32)
                ids = np.full((2, g), -1, np.int32)
                for k, f in enumerate(both):
                    m = len(video.classes[f])
                    boxes[k, :m] = video.boxes[f].reshape(-1, 4)
                    classes[k, :m] = video.classes[f]
                    ids[k, :m] = video.track_ids[f]
                yield np.stack([video.frames[f] for f in both]), boxes, classes, ids

    def dataset(self, split: str, *, training: bool, spec, seed: int = 0) -> tf.data.Dataset:
        """Training frames of `split` (see the module docstring), shuffled, forever."""
        if not training:
            raise DataError("detection is evaluated per video (DetectionTask.evaluate reads "
                            "DetectionSource.videos), not from a frame dataset")
        short, longest = spec.image_size
        pair = [2] if self.pairs else []
        signature = (tf.TensorSpec(pair + [None, None, 3], tf.uint8),
                     tf.TensorSpec(pair + [None, 4], tf.float32),
                     tf.TensorSpec(pair + [None], tf.int32), tf.TensorSpec(pair + [None], tf.int32))
        flip = spec.flip

        def prepare(image, boxes, classes, tracks):
            image, scale = resize_for_detection(image, short, longest)
            boxes = boxes * scale
            size = tf.shape(image)[-3:-1]
            if flip:
                # a stateless draw per element keeps the stream reproducible under a seed; a
                # pair's frames flip together
                do = tf.random.uniform([], seed=seed) < 0.5
                image = tf.cond(do, lambda: tf.reverse(image, [-2]), lambda: image)
                flipped = lambda: tf.reshape(flip_boxes(tf.reshape(boxes, [-1, 4]), size[1]),
                                             tf.shape(boxes))
                boxes = tf.cond(do, flipped, lambda: boxes)
            if self.pairs:
                size = tf.stack([size, size])
            return image, {"gt_boxes": boxes, "gt_classes": classes, "gt_track_ids": tracks,
                           "image_size": size}

        def stream(generate, order_seed=seed):
            ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
            return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).shuffle(
                64, seed=order_seed)

        if not self.alternate_det_vid:
            return stream((lambda: self._pairs(split, seed)) if self.pairs
                          else (lambda: self._frames(split, seed)))
        for det in (False, True):
            if not self._pool(split, det)[1]:
                kind = "DET images (ROOT/Data/DET/train)" if det else "VID videos"
                raise DataError(f"alternate_det_vid=True: split {split!r} of {self.root} has no "
                                f"{kind} to alternate with; set dataset_options "
                                "alternate_det_vid=False to train on what it holds")
        # one element of each kind in turn, tagged, so that DetectionTask.batch can batch them
        # apart: then the batches alternate too (VID first)
        # (the DET order gets its own seed, so the two kinds are not drawn alike)
        kinds = [stream(lambda det=det: self._pairs(split, seed + det, det), seed + det).map(
                     lambda x, y, det=det: (x, {**y, "det_image": tf.constant(det)}))
                 for det in (False, True)]
        return tf.data.Dataset.choose_from_datasets(kinds, tf.data.Dataset.range(2).repeat())
