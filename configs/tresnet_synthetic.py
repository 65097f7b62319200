"""Embedded demo: a small T-ResNet on the synthetic dynamics dataset (`--model=tresnet`)."""

from tfzoo.config import TrainConfig

CONFIG = TrainConfig(
    model="tresnet_small",
    dataset="synthetic",
    num_frames=8,
    stride_range=(2, 3),  # test frames of a 24-frame video are ~3.3 apart
    image_size=(48, 48),
    test_num_frames=8,
    batch_size=16,
    epochs=8,
    optimizer="sgd",
    learning_rate=0.05,
    lr_schedule="cosine",
    warmup_epochs=1,
    weight_decay=1e-4,
)
