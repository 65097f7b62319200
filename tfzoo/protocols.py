"""The papers' named test protocols: which frames and crops of a test video are classified and
how the predictions are averaged.

One option, `TrainConfig.test_protocol` (a config's recipe) or `python -m tfzoo.evaluate
--protocol=NAME` (overrides the run's), names one of `PROTOCOLS`:

  chunks5_flip   5 equally spaced chunks, full frame and its horizontal flip: the thesis's
                 default test in ch. 3 (§3.3.5, "only the T = 5 frames (and their horizontal
                 flips)"), Tables 3.1-3.4.
  chunks16_flip  16 equally spaced frames, full frame + flip (§7.3.3), Table 7.3 (YUP++).
  chunks25_flip  25 equally spaced chunks, full frame + flip, one fully convolutional pass
                 (§4.3.5, §5.4.1, after Simonyan & Zisserman 2014), Tables 4.3-4.4, 5.x.
  dense20        20 temporal predictions per video and their flips (§3.4.6, Table 3.5: "we
                 average 20 temporal predictions from each network by densely sampling the
                 input-frame-stacks and their horizontal flips"): 20 x T equally spaced chunks
                 (T = the recipe's `num_frames`, 5 for the fusion nets) cut into 20 consecutive
                 clips of T chunks; each clip (full frame) and its flip is one prediction.
  crop10         25 equally spaced chunks, each view a 224 x 224 crop (7/8 of the shorter
                 side, 256) at the four corners and the centre, and their flips: Simonyan &
                 Zisserman's 10-crop test, the alternative §5.4.1 reports as slightly better.

Crops are squares of 224/256 of the shorter side at the four corners and the centre
(`ClassificationTask.predict`). Every prediction is the task's test score (pre-softmax logits; "fused" for two streams), and
all of a video's predictions are averaged with equal weight (`ClassificationTask.predict`).
The frames are full frames with the shorter side resized to the config's `test_short_side`
(256 in the paper recipes); crops are taken from those frames. With no named protocol
(`test_protocol=None`) the config's `test_num_frames` and `test_flip` describe the test
(`test_num_frames` equally spaced chunks, full frame, flip if `test_flip`).

Example:
>>> p = get_protocol("dense20")
>>> p.total_frames(clip_frames=5), p.clips, p.crops, p.flip
(100, 20, 1, True)
>>> get_protocol("crop10").describe(clip_frames=5)
'crop10: 25 equally spaced frames, 5 crops (corners + centre, 0.875 of the short side) + horizontal flip, scores averaged'
"""

from __future__ import annotations

from dataclasses import dataclass

from tfzoo.utils import check_choice


@dataclass(frozen=True)
class TestProtocol:
    """One named test protocol (see the module docstring).

    frames: chunks per prediction; None = the recipe's training clip length (`num_frames`).
    clips: consecutive clips the sampled chunks are cut into, one prediction each.
    flip: also predict each view's horizontal flip.
    crops: 1 = the full frame; 5 = four corners + centre, squares of `crop_fraction` of the
      shorter side.
    """

    __test__ = False  # not a pytest class

    name: str
    frames: int | None
    clips: int = 1
    flip: bool = True
    crops: int = 1
    crop_fraction: float = 224 / 256
    source: str = ""

    def total_frames(self, clip_frames: int) -> int:
        """Equally spaced chunks sampled per video."""
        return self.clips * (self.frames or clip_frames)

    def describe(self, clip_frames: int) -> str:
        t = self.frames or clip_frames
        what = (f"{self.clips} clips of {t} chunks ({self.total_frames(clip_frames)} equally "
                f"spaced)" if self.clips > 1 else f"{t} equally spaced frames")
        where = ("full frame" if self.crops == 1 else
                 f"{self.crops} crops (corners + centre, {self.crop_fraction:.3g} of the short side)")
        return (f"{self.name}: {what}, {where}" + (" + horizontal flip" if self.flip else "")
                + ", scores averaged")


PROTOCOLS = {
    p.name: p for p in (
        TestProtocol("chunks5_flip", 5, source="thesis §3.3.5, Tables 3.1-3.4"),
        TestProtocol("chunks16_flip", 16, source="thesis §7.3.3, Table 7.3"),
        TestProtocol("chunks25_flip", 25, source="thesis §4.3.5, §5.4.1, Tables 4.3-5.5"),
        TestProtocol("dense20", None, clips=20, source="thesis §3.4.6, Table 3.5"),
        TestProtocol("crop10", 25, crops=5, source="Simonyan & Zisserman 2014; thesis §5.4.1"),
    )
}


def get_protocol(name: str) -> TestProtocol:
    """The named protocol; an unknown name is a TfzooError listing the choices."""
    return PROTOCOLS[check_choice("test protocol", name, PROTOCOLS)]


def protocol_of(config) -> TestProtocol:
    """The protocol a TrainConfig tests with: its named `test_protocol`, or the one its
    `test_num_frames` / `test_flip` describe."""
    if config.test_protocol is not None:
        return get_protocol(config.test_protocol)
    return TestProtocol("custom", config.test_num_frames, flip=bool(config.test_flip))


def protocol_views(protocol) -> dict:
    """`Task.predict`'s view options for a `tfzoo.protocols.TestProtocol`."""
    return {"clips": protocol.clips, "crops": protocol.crops,
            "crop_fraction": protocol.crop_fraction}
