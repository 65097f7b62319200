"""ST-ResNet / ST-ResNet*, two ResNet-50 streams, UCF101 (thesis ch. 4; NIPS 2016; Table 4.3:
92.76% / 93.46% on split 1; Table 4.4: 93.4%, mean of three splits; test protocol
`test_protocol="chunks25_flip"`, §4.3.5: 25 chunks and their flips, full frames, one pass).

    python -m tfzoo.data.prepare --dataset=ucf101 --root=UCF101_DIR --out=DIR --flow=tvl1
    python -m tfzoo.train --config=stresnet50_ucf101 --data=DIR

UCF101_DIR holds UCF-101/ and ucfTrainTestlist/; training on train1, testing on test1 (the
other splits: `--set train_split=train2 --set test_split=test2`; the table's mean over three
splits: `python -m tfzoo.evaluate --splits=1,2,3`). No validation split: every phase decays on
fixed iterations (Table 4.2). Table 4.2's three phases, iterations as epochs of 1000 steps:

1. the two streams from ImageNet, no connections, no temporal convs, single chunks, batch
   256, sub-batch BN of 4 RGB frames / 86 flow stacks (§4.3.4), each on its own schedule: the
   two streams are independent here, so each trains in its own stage with the other frozen
   (`train_streams`): "appearance" LR 1e-2 (10K) then 1e-3 (10K), "motion" 1e-2 (30K) then
   1e-3 (10K).
2. "stresnet": 4 motion->appearance connections (eq. 4.2) and 16 1x1x3 temporal convs
   (eq. 4.5), 5 chunks tau in [5, 15], batch 128, BN batch 4, LR 1e-3 / 1e-4 / 1e-5
   (30K / 30K / 20K).
3. "star": ST-ResNet* (temporal max pooling over 5 chunks, stride 2, after pool5), 11 chunks,
   tau in [1, 15], LR 1e-4 (2K) then 1e-5 (2K).
Test: 25 chunks and their flips, full frames (short side 256), one forward pass.

Not from the paper: weight decay 1e-4 (not given; the ResNet value). Known gap: stage 2 copies
stage 1's weights by name where shapes match, so its 1x1x3 convs start from the ImageNet 1x1
weights / 3 (the create_model transplant), not from the stream-trained ones.
"""

from tfzoo.config import TrainConfig
from tfzoo.recipes import AUGMENTATION, OFFICIAL_SPLIT_1, SGD, TEST_PROTOCOL, TWO_STREAM_RECORDS

# Phase 1 (both stream stages): the two-stream baseline on single frames / flow stacks.
STREAMS = dict(
    model_overrides={"fusion": "none", "temporal_kernels": (1, 1, 1),
                     "rgb_bn_group_size": 4, "flow_bn_group_size": 86},
    num_frames=1,
    stride_range=(1, 1),
    batch_size=256,
)

CONFIG = TrainConfig(
    model="stresnet50",
    weights="imagenet",
    **TWO_STREAM_RECORDS,
    **OFFICIAL_SPLIT_1,
    **AUGMENTATION,
    **TEST_PROTOCOL,
    **SGD,
    num_frames=5,
    stride_range=(5, 15),
    batch_size=128,
    weight_decay=1e-4,
    steps_per_epoch=1000,
    lr_schedule="steps",
    lr_decay=0.1,
    learning_rate=1e-3,
    lr_boundaries=(30, 60),
    epochs=80,
    stages=(
        dict(
            name="appearance",
            train_streams=("rgb",),
            learning_rate=1e-2,
            lr_boundaries=(10,),
            epochs=20,
            **STREAMS,
        ),
        dict(
            name="motion",
            train_streams=("flow",),
            learning_rate=1e-2,
            lr_boundaries=(30,),
            epochs=40,
            **STREAMS,
        ),
        dict(name="stresnet"),
        dict(
            name="star",
            model="stresnet50_star",
            num_frames=11,
            stride_range=(1, 15),
            learning_rate=1e-4,
            lr_boundaries=(2,),
            epochs=4,
        ),
    ),
)
