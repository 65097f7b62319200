"""Recipe blocks the paper configs share (configs/*.py spread them into `TrainConfig`).

The UCF101 / HMDB51 protocol of the thesis is the same in chapters 3-5 (and ch. 7 for YUP++
augmentation): one block each, so a config states only what its paper changes.
"""

# The official UCF101 / HMDB51 evaluation split 1 (the ablation tables' split; Tables 3.5, 4.3
# and 5.5 average three runs, `python -m tfzoo.evaluate --splits=1,2,3`). Neither dataset has a
# validation split (§3.4), so nothing is validated during training: step schedules decay on
# fixed iterations (Table 4.2, §5.4.1) and "when validation saturates" schedules (§3.3.5,
# §5.4.1) decay on the training loss, the only monitored quantity without held-out videos.
OFFICIAL_SPLIT_1 = dict(train_split="train1", val_split=None, test_split="test1")

# The splits of a prepared dataset (`python -m tfzoo.data.prepare --dataset=NAME`) that a run
# uses when its config names splits the data does not have (`--model=X --data=DIR` alone: the
# defaults train / val / test): split 1 of the official splits, as the recipes of that dataset.
DATASET_SPLITS = {
    "ucf101": OFFICIAL_SPLIT_1,
    "hmdb51": OFFICIAL_SPLIT_1,
    "yuppp": dict(train_split="train", val_split=None, test_split="test"),
    "imagenet_vid": dict(train_split="train", val_split=None, test_split="val"),
}
SPLIT_KEYS = ("train_split", "val_split", "test_split")


def dataset_splits(dataset: str, available, current: dict, explicit=()) -> dict:
    """The split keys to change for a run on `dataset` whose splits are `available`: none when
    the run's splits (`current`, {key: split}) are all in the data; else `DATASET_SPLITS`'
    splits for every key not given `explicit`ly (`--set`). Datasets without default splits
    change nothing (the reader then names the splits the data has)."""
    wanted = DATASET_SPLITS.get(dataset)
    missing = [k for k in SPLIT_KEYS if current.get(k) is not None and current[k] not in available]
    if wanted is None or not missing:
        return {}
    return {k: wanted[k] for k in SPLIT_KEYS if k not in explicit and current.get(k) != wanted[k]}

# Prepared records with RGB and flow (`python -m tfzoo.data.prepare --flow`).
TWO_STREAM_RECORDS = dict(dataset="records", dataset_options={"streams": ("rgb", "flow")})

# Training crops: 224 x 224 from frames with a 256 px short side, width and height jittered by
# +/- 25 %, placed within 25 % of a border, random horizontal flips (thesis §3.3.5, §4.3.5).
AUGMENTATION = dict(image_size=(224, 224), scale_jitter=0.25, border=0.25, flip=True)

# Test: 25 equally spaced chunks and their horizontal flips, on full frames (short side 256)
# in one fully convolutional forward pass (thesis §4.3.5, §5.4.1; tfzoo.protocols).
TEST_PROTOCOL = dict(test_protocol="chunks25_flip", test_short_side=256)

# SGD with momentum 0.9, the optimiser of every paper recipe.
SGD = dict(optimizer="sgd", momentum=0.9)
