"""The embedded synthetic detection set: videos of textured shapes moving on textured
backgrounds, written in the ImageNet VID layout (no download; deterministic in the seed).

Four classes, each a shape with its own texture: `disc` (concentric rings), `square`
(checkerboard), `triangle` (diagonal stripes), `cross` (dots); colours are drawn per object,
so shape and texture, not colour, tell the classes apart. Each video has 1-3 objects moving
along straight tracks with constant velocity and a per-frame scale change, a grey occluder bar
sweeping across some videos (partial occlusion) and motion blur on fast objects (the frame
averages the object over sub-frame positions). An object's box is the tight box of every pixel
it covers (blur smear included), clipped to the frame; a frame where it is outside has no box.

Layout (that of ILSVRC2015 VID, so `tfzoo.detection.read_detection_dataset` reads real and
synthetic data through one path)::

    ROOT/classes.txt                                  "<wnid> <name>" per line (class order)
    ROOT/Data/VID/{train,val}/<snippet>/000000.JPEG   frames
    ROOT/Annotations/VID/{train,val}/<snippet>/000000.xml
        VOC XML: <size><width/><height/></size>, per object <object><trackid/><name>wnid</name>
        <bndbox><xmax/><xmin/><ymax/><ymin/></bndbox><occluded/><generated>0</generated>
    ROOT/ImageSets/VID/val.txt                        "<snippet>/<frame> <index>" (devkit list)

    python -m tfzoo.detection.synthetic --out=DIR [--seed=0] [--train=24] [--val=8]
        [--frames=16] [--variant=standard|occluded]

The "occluded" variant (`variant="occluded"`, `object_events`) adds to each object, with the
probabilities `EVENTS`, one event drawn from the video's seed: wholly covered for 2-4 frames
by a striped foreground bar (no box in those frames, as ImageNet VID annotates only visible
objects), entering late or leaving early (not in the video before or after a frame), or
leaving the frame across its border. The standard set is unchanged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from absl import app, flags

from tfzoo.errors import TfzooError, report

CLASSES = ("disc", "square", "triangle", "cross")
WNIDS = tuple(f"synthetic_{c}" for c in CLASSES)
VARIANTS = ("standard", "occluded")
# The "occluded" variant: the event each object gets, with its probability (the rest: none).
EVENTS = {"gap": 0.3, "enter": 0.15, "leave": 0.15, "exit": 0.2}


@dataclass(frozen=True)
class SyntheticDetectionConfig:
    """Size and difficulty of the generated set."""

    height: int = 96
    width: int = 128
    frames: int = 16
    videos: tuple[int, int] = (24, 8)  # train, val
    objects: tuple[int, int] = (1, 3)  # per video, inclusive
    size: tuple[float, float] = (18.0, 36.0)  # object size (px) in the first frame
    speed: tuple[float, float] = (0.5, 4.0)  # px / frame
    scale_rate: tuple[float, float] = (0.97, 1.03)  # size multiplier per frame
    blur_speed: float = 2.5  # objects faster than this are motion blurred
    occluder_probability: float = 0.4
    jpeg_quality: int = 92
    seed: int = 0
    # "occluded": besides the above, each object may be hidden behind a pillar for a few
    # frames, enter late, leave early or leave the frame (`object_events`)
    variant: str = "standard"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise TfzooError(f"variant={self.variant!r}; expected one of {list(VARIANTS)}")


def _texture(kind: int, yy, xx, period: float, phase: float):
    """The class texture in [0, 1] on pixel grids (object-centred coordinates)."""
    if kind == 0:  # concentric rings
        return 0.5 + 0.5 * np.cos(2 * np.pi * np.hypot(yy, xx) / period + phase)
    if kind == 1:  # checkerboard
        return ((np.floor(yy / period * 2 + phase) + np.floor(xx / period * 2)) % 2).astype(float)
    if kind == 2:  # diagonal stripes
        return 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * (xx + yy) / period + phase))
    # dots
    return (np.hypot((yy / period * 2 + phase) % 1 - 0.5, (xx / period * 2) % 1 - 0.5) < 0.3
            ).astype(float)


def _shape_mask(kind: int, yy, xx, half: float):
    """Whether a pixel (object-centred coordinates) is inside the class shape of half-size
    `half`."""
    if kind == 0:
        return np.hypot(yy, xx) <= half
    if kind == 1:
        return (np.abs(yy) <= half * 0.85) & (np.abs(xx) <= half * 0.85)
    if kind == 2:  # apex up
        return (yy <= half * 0.8) & (yy >= -half) & (np.abs(xx) <= (yy + half) * 0.55)
    arm = half * 0.35
    vertical = (np.abs(yy) <= half) & (np.abs(xx) <= arm)
    return vertical | ((np.abs(xx) <= half) & (np.abs(yy) <= arm))


def _background(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    img = np.zeros((h, w, 3))
    for _ in range(5):
        f = rng.uniform(0.01, 0.08, 2) * rng.choice([-1, 1], 2)
        img += rng.uniform(0.1, 0.3, 3) * np.sin(2 * np.pi * (f[0] * yy + f[1] * xx)
                                                  + rng.uniform(0, 2 * np.pi))[..., None]
    img = 0.45 + img / 3 + rng.normal(0, 0.03, (h, w, 3))
    return np.clip(img, 0, 1)


def _extent(o, t, blur_steps):
    """(y0, x0, y1, x1) bounding every pixel object `o` can cover at frame t (shapes fit in
    +-half of their centre; blur smears over the sub-frame positions)."""
    centres = [o["start"] + o["velocity"] * (t + s) for s in blur_steps]
    half = max(0.5 * o["size"] * o["rate"] ** (t + s) for s in blur_steps)
    ys, xs = [c[0] for c in centres], [c[1] for c in centres]
    return min(ys) - half, min(xs) - half, max(ys) + half, max(xs) + half


def object_events(rng: np.random.Generator, objects, cfg: SyntheticDetectionConfig):
    """The "occluded" variant's events, one or none per object (probabilities `EVENTS`):

    - `gap`: wholly covered in frames `frames = (first, stop)` (2-4 frames, with frames
      before and after where it is in the frame) by a foreground bar over its path in those
      frames, as by something passing in front of it;
    - `enter`: not in the video before frame `frames[0]` (2 .. T/2);
    - `leave`: not in the video from frame `frames[0]` on (T/2 .. T-2);
    - `exit`: moves out across the frame border, entirely outside from frame `frames[0]`
      (T/2 .. T-2) on: its direction and start are redrawn so (`objects` is updated).

    Returns a list of `{"track", "event", "frames"}` for the objects with an event."""
    h, w, t_len = cfg.height, cfg.width, cfg.frames
    names, probs = list(EVENTS), list(EVENTS.values())
    events = []
    for o in objects:
        event = rng.choice(names + ["none"], p=probs + [1 - sum(probs)])
        if event == "gap":
            k = int(rng.integers(2, 5))
            # hidden where it is wholly inside the frame, seen in the frames either side
            steps = np.linspace(-0.5, 0.5, 7) if o["blur"] else np.zeros(1)
            inside = [0 <= y0 and 0 <= x0 and y1 < h and x1 < w
                      for y0, x0, y1, x1 in (_extent(o, t, steps) for t in range(t_len))]
            starts = [f for f in range(1, t_len - k) if all(inside[f - 1:f + k + 1])]
            if not starts:
                continue
            first = int(rng.choice(starts))
            frames = (first, first + k)
        elif event == "enter":
            frames = (int(rng.integers(2, t_len // 2 + 1)),)
        elif event == "leave":
            frames = (int(rng.integers(t_len // 2, t_len - 1)),)
        elif event == "exit":
            out = int(rng.integers(t_len // 2, t_len - 1))
            edge = int(rng.integers(4))  # top, bottom, left, right
            normal = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]][edge], float)
            along = rng.uniform(0.3, 0.7)
            point = np.array([[0, along * w], [h - 1, along * w], [along * h, 0],
                              [along * h, w - 1]][edge])
            angle = rng.uniform(-np.pi / 6, np.pi / 6)
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            direction = rot @ normal
            depth = (h if edge < 2 else w) * 0.3  # the start lies at least this far inside
            half = 0.5 * o["size"] * max(o["rate"] ** out, o["rate"] ** (t_len - 1), 1.0)
            speed = max(np.linalg.norm(o["velocity"]),
                        (depth + 2 * half + 4) / (out * np.cos(angle)))
            o["blur"] = speed > cfg.blur_speed
            margin = half + 1 + (0.5 * speed if o["blur"] else 0.0)
            # beyond the border at frame `out`, and further out after it
            o["velocity"] = speed * direction
            o["start"] = point + normal * margin - o["velocity"] * out
            frames = (out,)
        else:
            continue
        events.append({"track": o["track"], "event": str(event), "frames": frames})
    return events


def render_video(rng: np.random.Generator, cfg: SyntheticDetectionConfig, *,
                 return_events: bool = False):
    """One video: frames (T, H, W, 3) uint8 and per frame a list of objects
    `(class_index, track_id, (x1, y1, x2, y2), occluded, alpha (H, W))` (alpha: the object's
    coverage, > 0 exactly inside its box). With `return_events`, also the "occluded"
    variant's `object_events` (empty for the standard set)."""
    h, w, t_len = cfg.height, cfg.width, cfg.frames
    bg = _background(rng, h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    objects = []
    for track in range(rng.integers(cfg.objects[0], cfg.objects[1] + 1)):
        speed = rng.uniform(*cfg.speed)
        angle = rng.uniform(0, 2 * np.pi)
        objects.append({
            "cls": int(rng.integers(len(CLASSES))), "track": track,
            "start": np.array([rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w]),
            "velocity": speed * np.array([np.sin(angle), np.cos(angle)]),
            "size": rng.uniform(*cfg.size), "rate": rng.uniform(*cfg.scale_rate),
            "colour": rng.uniform(0.0, 1.0, (2, 3)), "period": rng.uniform(5, 9),
            "phase": rng.uniform(0, 2 * np.pi), "blur": speed > cfg.blur_speed})
    occluder = None
    if rng.uniform() < cfg.occluder_probability:
        occluder = {"x0": rng.uniform(-0.3, 0.3) * w,
                    "speed": rng.uniform(4, 9) * rng.choice([-1, 1]),
                    "width": rng.uniform(8, 16), "shade": rng.uniform(0.3, 0.7)}
        if occluder["speed"] < 0:
            occluder["x0"] += w
    # the variant draws after everything the standard set draws: standard videos are unchanged
    events = object_events(rng, objects, cfg) if cfg.variant == "occluded" else []
    present = {o["track"]: np.ones(t_len, bool) for o in objects}
    pillars = np.zeros((t_len, h, w), bool)
    for e in events:
        o = objects[e["track"]]
        if e["event"] == "enter":
            present[o["track"]][:e["frames"][0]] = False
        elif e["event"] == "leave":
            present[o["track"]][e["frames"][0]:] = False
        elif e["event"] == "gap":
            steps = np.linspace(-0.5, 0.5, 7) if o["blur"] else np.zeros(1)
            boxes = np.array([_extent(o, t, steps) for t in range(*e["frames"])])
            y0, x0 = boxes[:, :2].min(0) - 2
            y1, x1 = boxes[:, 2:].max(0) + 2
            pillars[slice(*e["frames"])] |= (yy >= y0) & (yy <= y1) & (xx >= x0) & (xx <= x1)
    pillar_shade = 0.35 + 0.15 * (np.floor(xx / 4) % 2)  # vertical stripes
    frames, annotations = [], []
    for t in range(t_len):
        img = bg.copy()
        objs = []
        for o in objects:
            if not present[o["track"]][t]:
                continue
            steps = np.linspace(-0.5, 0.5, 7) if o["blur"] else np.zeros(1)
            alpha = np.zeros((h, w))
            colour = np.zeros((h, w, 3))
            for s in steps:
                centre = o["start"] + o["velocity"] * (t + s)
                half = 0.5 * o["size"] * o["rate"] ** (t + s)
                dy, dx = yy - centre[0], xx - centre[1]
                m = _shape_mask(o["cls"], dy, dx, half)
                tex = _texture(o["cls"], dy, dx, o["period"], o["phase"])[..., None]
                colour += m[..., None] * (tex * o["colour"][0] + (1 - tex) * o["colour"][1])
                alpha += m
            alpha /= len(steps)
            colour /= len(steps)
            img = img * (1 - alpha[..., None]) + colour  # colour is premultiplied by alpha
            objs.append((o, alpha))
        occ_mask = np.zeros((h, w), bool)
        if occluder is not None:
            x = occluder["x0"] + occluder["speed"] * t
            occ_mask = (xx >= x) & (xx < x + occluder["width"])
            img[occ_mask] = occluder["shade"]
        if pillars[t].any():
            img[pillars[t]] = pillar_shade[pillars[t]][:, None]
            occ_mask = occ_mask | pillars[t]
        ann = []
        for o, alpha in objs:
            ys, xs = np.nonzero(alpha > 0)
            if len(ys) == 0:
                continue  # outside the frame
            covered = (alpha > 0) & occ_mask
            if events and covered.sum() == len(ys):
                continue  # wholly hidden (VID annotates only what is visible)
            ann.append((o["cls"], o["track"], (int(xs.min()), int(ys.min()), int(xs.max()),
                                                int(ys.max())),
                        int(covered.sum() > 0.3 * len(ys)), alpha))
        frames.append(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
        annotations.append(ann)
    if return_events:
        return np.stack(frames), annotations, events
    return np.stack(frames), annotations


def annotation_xml(folder: str, filename: str, width: int, height: int, objects) -> str:
    """A VOC/ImageNet VID annotation; objects are (wnid, track_id, (x1, y1, x2, y2),
    occluded)."""
    parts = [f"<annotation><folder>{escape(folder)}</folder><filename>{escape(filename)}"
             f"</filename><source><database>ILSVRC_2015</database></source><size><width>{width}"
             f"</width><height>{height}</height></size>"]
    for wnid, track, (x1, y1, x2, y2), occluded in objects:
        parts.append(f"<object><trackid>{track}</trackid><name>{escape(wnid)}</name><bndbox>"
                     f"<xmax>{x2}</xmax><xmin>{x1}</xmin><ymax>{y2}</ymax><ymin>{y1}</ymin>"
                     f"</bndbox><occluded>{occluded}</occluded><generated>0</generated>"
                     "</object>")
    parts.append("</annotation>\n")
    return "".join(parts)


def write_synthetic_vid(root, cfg: SyntheticDetectionConfig = SyntheticDetectionConfig()) -> Path:
    """Generates the set into `root` (which must not exist yet): built in a temporary sibling
    folder and renamed at the end, so `root` is either complete or absent."""
    from tfzoo.data.records import encode_jpeg  # deferred: loads TensorFlow

    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root} exists; remove it or choose another --out")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        (tmp / "classes.txt").write_text("".join(f"{wn} {c}\n" for wn, c in zip(WNIDS, CLASSES)))
        (tmp / "ImageSets" / "VID").mkdir(parents=True)
        for split, count in zip(("train", "val"), cfg.videos):
            lines = []
            for v in range(count):
                # one generator per video: a video does not change when the counts do
                rng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1, v])
                frames, anns = render_video(rng, cfg)
                snippet = f"synthetic_{split}_{v:05d}"
                fdir = tmp / "Data" / "VID" / split / snippet
                adir = tmp / "Annotations" / "VID" / split / snippet
                fdir.mkdir(parents=True)
                adir.mkdir(parents=True)
                for t, (img, objs) in enumerate(zip(frames, anns)):
                    (fdir / f"{t:06d}.JPEG").write_bytes(encode_jpeg(img, cfg.jpeg_quality))
                    xml = annotation_xml(f"{split}/{snippet}", f"{t:06d}", cfg.width,
                                         cfg.height, [(WNIDS[c], k, b, occ)
                                                      for c, k, b, occ, _ in objs])
                    (adir / f"{t:06d}.xml").write_text(xml)
                    lines.append(f"{split}/{snippet}/{t:06d} {len(lines) + 1}\n")
            if split == "val":
                (tmp / "ImageSets" / "VID" / "val.txt").write_text("".join(
                    line.split("/", 1)[1] for line in lines))
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def define_flags():
    """CLI flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_string("out", None, "Folder to write (must not exist).")
    flags.DEFINE_integer("seed", 0, "Generator seed (one generator per video).")
    flags.DEFINE_integer("train", 24, "Training videos.")
    flags.DEFINE_integer("val", 8, "Validation videos.")
    flags.DEFINE_integer("frames", 16, "Frames per video.")
    flags.DEFINE_string("variant", "standard", "standard, or occluded: objects also hidden "
                        "for a few frames, entering late, leaving early or leaving the frame.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    prog = "python -m tfzoo.detection.synthetic"
    try:
        if not f.out:
            raise TfzooError("--out is required: the folder to write the set into")
        for name in ("train", "val", "frames"):
            if getattr(f, name) < (1 if name == "frames" else 0):
                raise TfzooError(f"--{name}={getattr(f, name)}: expected a count >= "
                                 f"{1 if name == 'frames' else 0}")
        if f.variant not in VARIANTS:
            raise TfzooError(f"--variant={f.variant}: expected one of {', '.join(VARIANTS)}")
        cfg = SyntheticDetectionConfig(seed=f.seed, videos=(f.train, f.val), frames=f.frames,
                                       variant=f.variant)
        try:
            root = write_synthetic_vid(f.out, cfg)
        except FileExistsError as e:
            raise TfzooError(str(e)) from None
    except TfzooError as e:
        return report(e, prog)
    print(f"wrote {f.train} + {f.val} {f.variant} videos of {f.frames} frames to {root}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
