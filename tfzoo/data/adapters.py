"""Dataset layouts as distributed -> a list of videos with labels and split membership.

Each adapter only *lists* (no decoding), so listing is fast and deterministic; `prepare`
decodes in worker processes. Layouts (ROOT is `--root`):

ucf101        ROOT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi and ROOT/ucfTrainTestlist/
              {classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt} (the split files may
              also sit in ROOT itself or anywhere below it). Splits train1..3, test1..3.
hmdb51        ROOT/<class>/<video>.avi (or ROOT/hmdb51_org/<class>/...) and
              testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt anywhere below ROOT,
              lines "<video>.avi <id>" with id 1 = train, 2 = test, 0 = unused.
yuppp         ROOT/camera_static/<Class>/*.mp4 and ROOT/camera_moving/<Class>/*.mp4. A 10/90
              split as in thesis §7.4.2: per class, 10% of the static and 10% of the moving
              videos train (chosen with a fixed seed), the rest test. This is NOT the
              thesis's "split #1" (its file list is not public here); with the list, pass
              `split_file` (prepare's --split_file): a text file naming the training videos,
              one ROOT-relative path a line (camera_static/Beach/x.mp4; the extension and
              '#' comments optional), every other video tests. Splits train, test,
              train_static, test_static, train_moving, test_moving.
imagenet_vid  ROOT/Data/VID/{train,val}/.../<snippet>/000000.JPEG with
              ROOT/Annotations/VID/... XML (boxes + track ids), optional ROOT/Data/DET/train and
              ROOT/Annotations/DET/train. Split "train" is the DET+VID mix of §8.5.1 (DET images
              of the 30 VID classes, at most 2000 per class; VID snippets whose training frames
              are 10 equally spaced ones, recorded as `sample_frames`); split "val" is VID val.
folder        ROOT/<class>/<video> (one split "all" plus a deterministic per-class 80/20 train/test
              split), or ROOT/{train,test,val}/<class>/<video> to use your own split.
"""

from __future__ import annotations

import hashlib
import os
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tfzoo.data.base import DataError
from tfzoo.utils import check_choice

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".3gp", ".ogv")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")

# The 30 ImageNet VID classes (WordNet ids in the order of the official devkit).
VID_CLASSES = (
    ("n02691156", "airplane"), ("n02419796", "antelope"), ("n02131653", "bear"),
    ("n02834778", "bicycle"), ("n01503061", "bird"), ("n02924116", "bus"),
    ("n02958343", "car"), ("n02402425", "cattle"), ("n02084071", "dog"),
    ("n02121808", "domestic_cat"), ("n02503517", "elephant"), ("n02118333", "fox"),
    ("n02510455", "giant_panda"), ("n02342885", "hamster"), ("n02374451", "horse"),
    ("n02129165", "lion"), ("n01674464", "lizard"), ("n02484322", "monkey"),
    ("n03790512", "motorcycle"), ("n02324045", "rabbit"), ("n02509815", "red_panda"),
    ("n02411705", "sheep"), ("n01726692", "snake"), ("n02355227", "squirrel"),
    ("n02129604", "tiger"), ("n04468005", "train"), ("n01662784", "turtle"),
    ("n04530566", "watercraft"), ("n02062744", "whale"), ("n02391049", "zebra"),
)
_VID_INDEX = {wnid: i for i, (wnid, _) in enumerate(VID_CLASSES)}


@dataclass
class VideoItem:
    video_id: str  # unique within the dataset (relative path without extension)
    label: int
    splits: tuple[str, ...]
    path: str | None = None  # a video file ...
    frame_paths: list[str] | None = None  # ... or an image sequence (ImageNet VID/DET)
    annotation_paths: list[str | None] | None = None  # per-frame VOC XML (ImageNet)
    attrs: dict = field(default_factory=dict)  # e.g. {"camera": "static"}

    @property
    def source(self) -> str:
        return self.path if self.path is not None else os.path.dirname(self.frame_paths[0])


@dataclass
class Listing:
    dataset: str
    class_names: list[str]
    items: list[VideoItem]
    split_names: list[str]
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"} found while listing
    params: dict = field(default_factory=dict)


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")


def _find(root: Path, name: str) -> Path | None:
    direct = root / name
    if direct.exists():
        return direct
    hits = sorted(root.rglob(name))
    return hits[0] if hits else None


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _need_dir(root, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--root {str(root)!r} is not a directory (expected the {what})")
    return root


# ---------------------------------------------------------------------------- UCF101
def list_ucf101(root) -> Listing:
    root = _need_dir(root, "UCF101 root with UCF-101/ and ucfTrainTestlist/")
    class_ind = _find(root, "classInd.txt")
    if class_ind is None:
        raise DataError(f"{root}: ucfTrainTestlist/classInd.txt not found (the official UCF101 "
                        f"split files; extract UCF101TrainTestSplits-RecognitionTask.zip here)")
    lists_dir = class_ind.parent
    classes: dict[int, str] = {}
    for line in class_ind.read_text().splitlines():
        if line.strip():
            idx, name = line.split()
            classes[int(idx)] = name
    class_names = [classes[i] for i in sorted(classes)]
    name_to_label = {n: i for i, n in enumerate(class_names)}
    video_dir = root / "UCF-101" if (root / "UCF-101").is_dir() else root

    membership: dict[str, list[str]] = {}
    split_names = []
    for k in (1, 2, 3):
        for kind in ("train", "test"):
            f = lists_dir / f"{kind}list0{k}.txt"
            if not f.exists():
                continue
            split_names.append(f"{kind}{k}")
            for line in f.read_text().splitlines():
                if line.strip():
                    rel = line.split()[0].replace("\\", "/")
                    membership.setdefault(rel, []).append(f"{kind}{k}")
    if not split_names:
        raise DataError(f"{lists_dir}: no trainlist0k.txt/testlist0k.txt split files")

    items, skipped = [], []
    for rel in sorted(membership):
        p = video_dir / rel
        cls = rel.split("/")[0]
        if cls not in name_to_label:
            skipped.append({"path": str(p), "reason": f"class {cls!r} not in classInd.txt"})
            continue
        if not p.is_file():
            skipped.append({"path": str(p), "reason": "listed in the split files but missing"})
            continue
        items.append(VideoItem(video_id=rel.rsplit(".", 1)[0], label=name_to_label[cls],
                               splits=tuple(membership[rel]), path=str(p),
                               attrs={"group": _ucf_group(rel)}))
    return Listing("ucf101", class_names, items, split_names, skipped)


def _ucf_group(rel: str) -> str:
    # v_<Class>_g08_c01: the group (same actor/scene) is what the official splits separate
    stem = Path(rel).stem
    parts = stem.split("_")
    return parts[-2] if len(parts) >= 3 else ""


# ---------------------------------------------------------------------------- HMDB51
def list_hmdb51(root) -> Listing:
    root = _need_dir(root, "HMDB51 root with the class folders and testTrainMulti_7030_splits/")
    split_files = sorted(root.rglob("*_test_split[123].txt"))
    if not split_files:
        raise DataError(f"{root}: no <class>_test_split{{1,2,3}}.txt files found (the official "
                        f"HMDB51 split files, testTrainMulti_7030_splits.rar)")
    video_dir = root / "hmdb51_org" if (root / "hmdb51_org").is_dir() else root
    membership: dict[tuple[str, str], list[str]] = {}
    class_set = set()
    for f in split_files:
        stem = f.stem  # <class>_test_split1
        cls, k = stem.rsplit("_test_split", 1)
        class_set.add(cls)
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            kind = {"1": "train", "2": "test"}.get(parts[1])
            entry = membership.setdefault((cls, parts[0]), [])
            if kind:
                entry.append(f"{kind}{k}")
    class_names = sorted(class_set)
    name_to_label = {n: i for i, n in enumerate(class_names)}
    split_names = [f"{kind}{k}" for k in (1, 2, 3) for kind in ("train", "test")
                   if any(f.stem.endswith(f"split{k}") for f in split_files)]
    items, skipped = [], []
    for (cls, name), splits in sorted(membership.items()):
        p = video_dir / cls / name
        if not p.is_file():
            skipped.append({"path": str(p), "reason": "listed in the split files but missing"})
            continue
        items.append(VideoItem(video_id=f"{cls}/{Path(name).stem}", label=name_to_label[cls],
                               splits=tuple(sorted(set(splits))), path=str(p)))
    return Listing("hmdb51", class_names, items, split_names, skipped)


# ---------------------------------------------------------------------------- YUP++
YUPPP_CAMERAS = ("static", "moving")


def _read_train_list(split_file, videos: dict[str, Path]) -> set[Path]:
    """The videos a split file names (see the module docstring); a name that is no video of
    the tree is an error naming it and the line."""
    path = Path(split_file)
    if not path.is_file():
        raise DataError(f"split file {str(path)!r} does not exist")
    by_stem = {k.rsplit(".", 1)[0]: p for k, p in videos.items()}
    chosen = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        entry = line.split("#", 1)[0].strip().replace("\\", "/").lstrip("./")
        if not entry:
            continue
        p = videos.get(entry) or by_stem.get(entry)
        if p is None:
            raise DataError(f"{path}:{n}: {entry!r} is not a video of the YUP++ tree; expected "
                            f"a ROOT-relative path such as {next(iter(videos), 'camera_static/C/v.mp4')!r}")
        chosen.add(p)
    if not chosen:
        raise DataError(f"split file {path} names no video (one training video per line)")
    return chosen


def list_yuppp(root, *, train_fraction: float = 0.1, seed: int = 0,
               split_file: str | None = None) -> Listing:
    root = _need_dir(root, "YUP++ root with camera_static/ and camera_moving/")
    by_class: dict[str, dict[str, list[Path]]] = {}
    for cam in YUPPP_CAMERAS:
        d = root / f"camera_{cam}"
        if not d.is_dir():
            raise DataError(f"{root}: camera_{cam}/ missing (YUP++ layout: "
                            f"camera_static/<Class>/*.mp4, camera_moving/<Class>/*.mp4)")
        for c in _class_dirs(d):
            by_class.setdefault(c.name, {}).setdefault(cam, []).extend(
                sorted(p for p in c.iterdir() if _is_video(p)))
    class_names = sorted(by_class)
    if not class_names:
        raise DataError(f"{root}: no class folders under camera_static/ or camera_moving/")
    items = []
    given = None
    if split_file is not None:
        every = {p.relative_to(root).as_posix(): p for c in by_class.values()
                 for ps in c.values() for p in ps}
        given = _read_train_list(split_file, every)
    for label, cls in enumerate(class_names):
        for cam in YUPPP_CAMERAS:
            vids = by_class[cls].get(cam, [])
            if given is not None:
                train = given
            else:
                # a per-(class, camera) seed keeps the split of one class stable when others change
                rng = random.Random(f"{seed}/{cls}/{cam}")
                order = list(vids)
                rng.shuffle(order)
                n_train = max(1, round(train_fraction * len(vids))) if vids else 0
                train = set(order[:n_train])
            for p in vids:
                kind = "train" if p in train else "test"
                items.append(VideoItem(
                    video_id=f"camera_{cam}/{cls}/{p.stem}", label=label,
                    splits=(kind, f"{kind}_{cam}"), path=str(p), attrs={"camera": cam}))
    splits = ["train", "test"] + [f"{k}_{c}" for c in YUPPP_CAMERAS for k in ("train", "test")]
    params = ({"split_file": str(Path(split_file).resolve()), "train_videos": len(given)}
              if given is not None else {"train_fraction": train_fraction, "split_seed": seed})
    return Listing("yuppp", class_names, items, splits, params=params)


# ---------------------------------------------------------------------------- ImageNet VID
def parse_voc_xml(path) -> dict:
    """An ImageNet VID/DET annotation: {"height", "width", "objects": [{"wnid", "label",
    "trackid", "box": [xmin, ymin, xmax, ymax], "occluded", "generated"}]} (label -1 for
    classes outside the 30 VID classes)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise DataError(f"{path}: unreadable annotation XML ({e})") from e
    size = root.find("size")
    out = {"height": int(size.findtext("height", "0")) if size is not None else 0,
           "width": int(size.findtext("width", "0")) if size is not None else 0, "objects": []}
    for obj in root.findall("object"):
        wnid = obj.findtext("name", "").strip()
        bb = obj.find("bndbox")
        if bb is None:
            continue
        try:
            box = [float(_required(bb, k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            out["objects"].append({
                "wnid": wnid, "label": _VID_INDEX.get(wnid, -1),
                "trackid": int(obj.findtext("trackid", "-1")),
                "box": box, "occluded": int(obj.findtext("occluded", "0")),
                "generated": int(obj.findtext("generated", "0"))})
        except (KeyError, ValueError) as e:
            raise DataError(f"{path}: object {wnid or '(unnamed)'!r} has a bad box or field "
                            f"({e}); expected numeric xmin, ymin, xmax, ymax") from None
    return out


def _required(element, tag: str) -> str:
    text = element.findtext(tag)
    if text is None or not text.strip():
        raise KeyError(f"<{tag}> missing")  # internal: the caller reports it as a DataError
    return text


def _frames_in(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _snippet_dirs(d: Path) -> list[Path]:
    # train is grouped in ILSVRC2015_VID_train_000k/ folders, val is flat: find the leaves
    out = []
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames.sort()
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in filenames):
            out.append(Path(dirpath))
    return sorted(out)


def vid_classes(root) -> list[tuple[str, str]]:
    """(wnid, name) of the classes of an ImageNet VID-layout root: ROOT/classes.txt
    ("<wnid> <name>" lines, as the embedded synthetic set writes) or the 30 VID classes."""
    path = Path(root) / "classes.txt"
    if not path.exists():
        return list(VID_CLASSES)
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        if len(fields) != 2:
            raise DataError(f"{path}:{n}: {line!r}; expected '<wnid> <name>'")
        pairs.append((fields[0], fields[1].strip()))
    return pairs


def list_det_images(root, class_index: dict, *, per_class: int = 2000, seed: int = 0,
                    skipped: list | None = None) -> list[tuple[Path, Path, int]]:
    """(image, annotation, label) of the ImageNet DET training images in the thesis' DET+VID
    mix (§8.5.1): images holding an object of `class_index` (wnid -> label), labelled by their
    most frequent such class, at most `per_class` per class (a seeded sample), in path order.
    Empty without ROOT/Data/DET/train. An image whose annotation does not parse is left out
    and, given `skipped`, reported there ({"path", "video_id", "reason"})."""
    data, ann = Path(root) / "Data", Path(root) / "Annotations"
    det = data / "DET" / "train"
    if not det.is_dir() or not per_class:
        return []
    by_label: dict[int, list] = {}
    for dirpath, dirnames, filenames in os.walk(det):
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.lower().endswith(IMAGE_EXTENSIONS):
                continue
            img = Path(dirpath) / fn
            a = ann / img.relative_to(data).with_suffix(".xml")
            if not a.exists():
                continue
            try:
                objects = parse_voc_xml(a)["objects"]
            except DataError as e:  # one broken annotation skips its image, not the listing
                if skipped is not None:
                    skipped.append({"path": str(img), "video_id": img.relative_to(data)
                                    .with_suffix("").as_posix(), "reason": str(e)})
                continue
            labels = [class_index[o["wnid"]] for o in objects if o["wnid"] in class_index]
            if labels:  # only images of the mix's classes enter it
                label = max(sorted(set(labels)), key=labels.count)
                by_label.setdefault(label, []).append((img, a, label))
    out = []
    for label, imgs in sorted(by_label.items()):
        rng = random.Random(f"{seed}/det/{label}")
        out += sorted(imgs if len(imgs) <= per_class else rng.sample(imgs, per_class))
    return out


def list_imagenet_vid(root, *, vid_train_frames: int = 10, det_per_class: int = 2000,
                      seed: int = 0) -> Listing:
    root = _need_dir(root, "ILSVRC2015 root with Data/VID and Annotations/VID")
    data, ann = root / "Data", root / "Annotations"
    if not (data / "VID").is_dir():
        raise DataError(f"{root}: Data/VID/ missing (ILSVRC2015 VID layout)")
    classes = vid_classes(root)
    class_names = [name for _, name in classes]
    index = {wnid: i for i, (wnid, _) in enumerate(classes)}
    items, skipped = [], []
    for subset, split in (("train", "train"), ("val", "val")):
        base = data / "VID" / subset
        if not base.is_dir():
            continue
        for snip in _snippet_dirs(base):
            rel = snip.relative_to(data / "VID")
            frames = _frames_in(snip)
            anns = [ann / "VID" / rel / (f.stem + ".xml") for f in frames]
            anns = [str(a) if a.exists() else None for a in anns]
            labels = []
            try:
                for a in anns[:: max(1, len(anns) // 20)]:  # a sample of frames decides the label
                    if a is not None:
                        labels += [index[o["wnid"]] for o in parse_voc_xml(a)["objects"]
                                   if o["wnid"] in index]
            except DataError as e:  # the snippet is skipped and reported, the listing goes on
                skipped.append({"path": str(snip), "video_id": f"VID/{rel.as_posix()}",
                                "reason": str(e)})
                continue
            label = max(sorted(set(labels)), key=labels.count) if labels else -1
            attrs = {"source": "VID"}
            if split == "train" and vid_train_frames:
                n = len(frames)
                k = min(vid_train_frames, n)
                attrs["sample_frames"] = sorted({round(i * (n - 1) / max(k - 1, 1))
                                                 for i in range(k)})
            items.append(VideoItem(video_id=f"VID/{rel.as_posix()}", label=label, splits=(split,),
                                   frame_paths=[str(f) for f in frames], annotation_paths=anns,
                                   attrs=attrs))
    for img, a, label in list_det_images(root, index, per_class=det_per_class, seed=seed,
                                         skipped=skipped):
        items.append(VideoItem(video_id=img.relative_to(data).with_suffix("").as_posix(),
                               label=label, splits=("train",), frame_paths=[str(img)],
                               annotation_paths=[str(a)], attrs={"source": "DET"}))
    if not items:
        raise DataError(f"{root}: no snippets found under Data/VID/train or Data/VID/val")
    return Listing("imagenet_vid", class_names, items, ["train", "val"], skipped,
                   params={"vid_train_frames": vid_train_frames, "det_per_class": det_per_class})


# ---------------------------------------------------------------------------- folder
_OWN_SPLITS = ("train", "val", "test")


def _stable_fraction(key: str) -> float:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32


def _test_count(n: int, test_fraction: float) -> int:
    if n < 2 or test_fraction <= 0:
        return 0
    return min(max(1, round(test_fraction * n)), n - 1)


def list_folder(root, *, test_fraction: float = 0.2) -> Listing:
    root = _need_dir(root, "folder with one sub-folder per class")
    own = [s for s in _OWN_SPLITS if (root / s).is_dir()]
    items = []
    if own:
        class_names = sorted({c.name for s in own for c in _class_dirs(root / s)})
        lab = {n: i for i, n in enumerate(class_names)}
        for s in own:
            for c in _class_dirs(root / s):
                for p in sorted(filter(_is_video, c.rglob("*"))):
                    items.append(VideoItem(video_id=p.relative_to(root).with_suffix("").as_posix(),
                                           label=lab[c.name], splits=(s,), path=str(p)))
        splits = list(own)
    else:
        class_names = [c.name for c in _class_dirs(root)]
        for label, c in enumerate(class_names):
            paths = sorted(filter(_is_video, (root / c).rglob("*")))
            ids = [p.relative_to(root).with_suffix("").as_posix() for p in paths]
            # Stratified: each class gives round(test_fraction * n) of its videos to test (at
            # least one when it has two or more), so every class is in both splits; a per-video
            # coin would split 16 videos 15/1 and could leave a class out of test. Which videos
            # is decided by a hash of the id (not a shuffle), so it does not depend on the order
            # of listing or on other classes.
            n_test = _test_count(len(ids), test_fraction)
            test = set(sorted(ids, key=_stable_fraction)[:n_test])
            for p, vid in zip(paths, ids):
                kind = "test" if vid in test else "train"
                items.append(VideoItem(video_id=vid, label=label, splits=("all", kind),
                                       path=str(p)))
        splits = ["all", "train", "test"]
    if not items:
        raise DataError(f"{root}: no videos found (expected <class>/<video>{VIDEO_EXTENSIONS[:3]}"
                        f"... or train|val|test/<class>/<video>)")
    return Listing("folder", class_names, items, splits,
                   params={} if own else {"test_fraction": test_fraction,
                                          "split": "stratified per class"})


ADAPTERS = {
    "ucf101": list_ucf101,
    "hmdb51": list_hmdb51,
    "yuppp": list_yuppp,
    "imagenet_vid": list_imagenet_vid,
    "folder": list_folder,
}


def list_dataset(name: str, root, **kwargs) -> Listing:
    check_choice("dataset", name, sorted(ADAPTERS), error=DataError)
    listing = ADAPTERS[name](root, **kwargs)
    ids = [it.video_id for it in listing.items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(f"{root}: duplicate video ids {dup}")
    return listing
