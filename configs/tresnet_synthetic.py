"""Embedded demo: a small T-ResNet on the synthetic dynamics dataset (`--model=tresnet`).

Trained from scratch (no ImageNet), so two choices differ from the paper's fine-tuning recipe
(configs/tresnet50_yuppp.py), both measured on this data: the temporal filters start as the
reference code's 'diff' filter [-1, 3, -1] (a temporal high-pass, so motion is visible from the
first step) and the scaling S starts at 1 instead of 0.01 (which only protects a pretrained
spatial network); the classifier starts at zero. Adam instead of SGD for the same reason.
"""

from tfzoo.config import TrainConfig

CONFIG = TrainConfig(
    model="tresnet_small",
    model_overrides={"temporal_init": "diff", "temporal_scale_init": 1.0, "zero_init_head": True},
    dataset="synthetic",
    num_frames=8,
    stride_range=(2, 3),  # test frames of a 24-frame video are ~3.3 apart
    image_size=(48, 48),
    test_num_frames=8,
    batch_size=16,
    epochs=16,
    optimizer="adam",
    learning_rate=3e-3,
    weight_decay=1e-4,
    lr_schedule="cosine",
    warmup_epochs=1,
)
