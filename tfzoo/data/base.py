"""The interface between datasets and train/evaluate.

A `VideoSource` (the synthetic set, prepared TFRecords, ...) knows its classes and splits and
turns a split into an *unbatched* tf.data.Dataset of `(inputs, label)` where `inputs` is a
float32 clip (T, H, W, 3) with RGB in [0, 255], or a dict {"rgb": ..., "flow": ...} for
two-stream sources (flow in pixels at the clip's resolution, 2L channels u1, v1, ...).
A source may give its training clips packed instead (`tfzoo.data.packed`: uint8 crop windows
and the crop box on them, what prepared records give by default): batched with
`Task.batch` (padded), they become those float inputs in the model's train step
(`VideoModel.train_step` calls `packed.unpack` first), on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import tensorflow as tf

from tfzoo.errors import DataError  # noqa: F401  (re-exported: tfzoo.data.DataError)


@dataclass(frozen=True)
class ClipSpec:
    """How clips are sampled and augmented (thesis §4.3.5, §7.3.3)."""

    num_frames: int = 16
    stride_range: tuple[int, int] = (5, 15)  # training temporal stride tau in [a, b]
    image_size: tuple[int, int] = (224, 224)  # training crop size (H, W)
    test_num_frames: int = 16  # equally spaced frames at test
    test_short_side: int | None = 256  # full frame at test, shorter side resized; None = as is
    scale_jitter: float = 0.25  # crop width/height jitter
    border: float = 0.25  # max crop distance from the borders
    flip: bool = True  # random horizontal flip in training
    flow_stack: int = 10  # L: flow fields per motion chunk (2L channels)
    # Training crop: "appearance" (jitter +/-25 %, <= 25 % from the borders), "motion" (sides
    # from {256, 224, 192, 168} at a corner or the centre, §4.3.5) or "auto" (motion for a
    # flow-only source). A stage training only the flow stream of a two-stream model uses
    # "motion" (`tfzoo.data.clip_spec`).
    crop: str = "auto"
    # Multiply stored flow by the crop-resize factor (pixels at the network resolution). The
    # reference code feeds the stored values as they are (False, the paper's).
    flow_rescale: bool = False


@dataclass
class DatasetInfo:
    name: str
    class_names: list[str]
    num_videos: dict[str, int]  # split -> number of videos
    # Class index after a horizontal flip; None = flipping keeps the label (real datasets).
    flip_label_map: list[int] | None = None
    streams: tuple[str, ...] = ("rgb",)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class VideoSource(Protocol):
    info: DatasetInfo

    def dataset(self, split: str, *, training: bool, spec: ClipSpec, seed: int) -> tf.data.Dataset:
        """Unbatched (inputs, label) pairs. Training: augmented clips of `spec.num_frames`
        frames, shuffled and repeated forever. Test: every video once, in order, as
        `spec.test_num_frames` equally spaced full frames (no flip: evaluate adds it)."""
        ...


