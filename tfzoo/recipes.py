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
