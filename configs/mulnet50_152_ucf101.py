"""MulNet, ResNet-50 appearance x ResNet-152 motion, UCF101 (thesis ch. 5; CVPR 2017; Table
5.5: 94.2%, mean over the three splits; test protocol `test_protocol="chunks25_flip"`, §5.4.1:
25 chunks + flips, full frames).

    python -m tfzoo.data.prepare --dataset=ucf101 --root=UCF101_DIR --out=DIR --flow=tvl1
    python -m tfzoo.train --config=mulnet50_152_ucf101 --data=DIR

Training on train1, testing on test1; no validation split, so stage 1's "when validation
saturates" plateau is on the training loss, stage 2 decays on fixed epochs. §5.4.1:

1. "appearance", then "motion": each stream trained separately (the other frozen) from
   ImageNet (ResNet-50 RGB at batch 256, ResNet-152 flow at batch 128, conv1 inflated to 20
   channels), no connections, single chunks, LR 1e-2 lowered when the loss saturates, motion
   dropout 0.8.
2. "mulnet": multiplicative motion gating into the second unit of every stage (eq. 5.5),
   identity-initialised 1x1x3 filters after its 3x3 conv (‡, centre init [0, 1, 0]), global
   temporal max pooling (eq. 5.10); 5 chunks, tau in [5, 35], batch 128 reached by gradient
   accumulation (4 x 32), LR 1e-3 x0.1 after 20 and 30 epochs.
Test: 25 chunks and their flips, full frames (short side 256), one forward pass.

Not from the paper: weight decay 1e-4 and the stage-1 epoch cap; the thesis's BN batch of the
final model is "smaller" without a number: here BN sees the 32 clips of each forward pass.
"""

from tfzoo.config import TrainConfig
from tfzoo.recipes import AUGMENTATION, OFFICIAL_SPLIT_1, SGD, TEST_PROTOCOL, TWO_STREAM_RECORDS

# Stage 1 of §5.4.1, one stage per stream (the streams are trained separately; the other
# stream is frozen and its loss does not train anything).
STREAMS = dict(
    model_overrides={"fusion": "none", "temporal_filters": "none"},
    num_frames=1,
    stride_range=(1, 1),
    grad_accum_steps=1,
    learning_rate=1e-2,
    lr_schedule="plateau",
    epochs=60,
)

CONFIG = TrainConfig(
    model="mulnet50_152",
    weights="imagenet",
    **TWO_STREAM_RECORDS,
    **OFFICIAL_SPLIT_1,
    **AUGMENTATION,
    **TEST_PROTOCOL,
    **SGD,
    num_frames=5,
    stride_range=(5, 35),
    batch_size=32,
    grad_accum_steps=4,
    weight_decay=1e-4,
    learning_rate=1e-3,
    lr_schedule="steps",
    lr_decay=0.1,
    lr_boundaries=(20, 30),
    epochs=35,
    stages=(
        dict(
            name="appearance",
            train_streams=("rgb",),
            batch_size=256,  # §5.4.1: the appearance stream at batch 256
            **STREAMS,
        ),
        dict(
            name="motion",
            train_streams=("flow",),
            batch_size=128,
            **STREAMS,
        ),
        dict(name="mulnet"),
    ),
)
