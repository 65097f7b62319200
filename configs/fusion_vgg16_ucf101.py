"""Two-stream fusion, VGG-16 towers, UCF101 (thesis ch. 3; CVPR 2016; Table 3.5: 92.5%, mean
of three splits, tested with Table 3.5's protocol `test_protocol="dense20"`: "we average 20
temporal predictions from each network by densely sampling the input-frame-stacks and their
horizontal flips" (§3.4.6): 100 equally spaced chunks cut into 20 clips of T = 5, each clip's
full frame (short side 256) and its flip one prediction, logits averaged; tfzoo.protocols).
The ablations of Tables 3.1-3.4 tested "only the T = 5 frames (and their horizontal flips)"
(§3.3.5): `python -m tfzoo.evaluate --protocol=chunks5_flip`.

    python -m tfzoo.data.prepare --dataset=ucf101 --root=UCF101_DIR --out=DIR --flow=tvl1
    python -m tfzoo.train --config=fusion_vgg16_ucf101 --data=DIR

(TV-L1 for VGG-16, §3.4.3), training on train1 and testing on test1. The paper lowers the LR
"as soon as the validation accuracy saturates" (§3.3.5); UCF101 has no validation split, so
the plateau is on the training loss.

Stage 1 trains the two streams (twostream_vgg16: one loss per tower, nothing shared, so this is
the paper's separate training). Stage 2 starts from those towers (weights copied by layer name)
and fine-tunes the proposed model: 3-D conv fusion at relu5, 3-D pooling, both towers kept,
T = 5 chunks tau in [1, 10] frames apart, batch 96, LR 1e-3 x0.1 when validation saturates,
back-propagating only to the fusion layer (§3.3.5).

Both streams start from ImageNet VGG-16 (keras.applications' weights from the Keras cache; the
motion tower's conv1 averages the RGB filters and replicates them over the 20 flow channels).
Not from the paper: the epoch caps (its schedules stop on plateaus) and weight decay 5e-4
(the MatConvNet reference code's value).
"""

from tfzoo.config import TrainConfig
from tfzoo.recipes import AUGMENTATION, OFFICIAL_SPLIT_1, SGD, TEST_PROTOCOL, TWO_STREAM_RECORDS

CONFIG = TrainConfig(
    model="fusion_vgg16_conv_relu5",
    **TWO_STREAM_RECORDS,
    **OFFICIAL_SPLIT_1,
    **AUGMENTATION,
    **SGD,
    # Table 3.5's dense test (§3.4.6), full frames with the shorter side 256
    test_protocol="dense20",
    test_short_side=256,
    num_frames=5,
    stride_range=(1, 10),
    batch_size=96,
    learning_rate=1e-3,
    weight_decay=5e-4,
    lr_schedule="plateau",
    lr_decay=0.1,
    plateau_patience=2,
    epochs=30,
    stages=(
        dict(
            name="streams",
            model="twostream_vgg16",
            weights="imagenet",
            num_frames=1,
            test_protocol=TEST_PROTOCOL["test_protocol"],  # Simonyan & Zisserman's 25 + flips
            batch_size=256,
            learning_rate=5e-4,  # §3.4.3 for VGG-16 (printed as "50^-4")
            epochs=60,
        ),
        dict(
            name="fusion",
            model="fusion_vgg16_conv_relu5",
            model_overrides={"freeze_below_fusion": True},
        ),
    ),
)
