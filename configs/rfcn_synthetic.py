"""The detection demo: the small R-FCN (`--model=rfcn`) on the embedded synthetic detection set.

`python -m tfzoo.train --model=rfcn` generates the set (4 classes, 160 training and 16
validation videos of 8 frames, `tfzoo.detection.synthetic`), trains from scratch on single
frames (shorter side 192, the model's test scale; random flips) and reports the VID mAP of the
validation videos (`tfzoo.detection.evaluate_vid`). The thesis recipe for real data is
configs/rfcn_resnet101_vid.py.
"""

from tfzoo.config import TrainConfig

CONFIG = TrainConfig(
    model="rfcn",
    dataset="detection_synthetic",
    # 160 training videos: with the generator's default 24, the small R-FCN fits the training
    # frames (train mAP 0.98) but reaches only 0.34 on the validation videos.
    dataset_options={"synthetic": {"videos": (160, 16), "frames": 8}},
    train_split="train",
    val_split=None,
    test_split="val",
    image_size=(192, 256),  # detection: (shorter side, longest side allowed)
    flip=True,
    test_flip=False,
    batch_size=4,
    epochs=10,
    steps_per_epoch=150,
    optimizer="adam",
    learning_rate=1e-3,
    weight_decay=1e-4,
    lr_schedule="cosine",
)
