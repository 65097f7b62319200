"""Embedded demo baseline: the frame-wise ResNet on the same data (`--model=resnet`).

The recipe of configs/tresnet_synthetic.py with the frame-wise model. A single frame of the
synthetic videos carries no label information, so this stays near chance (1/6).
"""

import dataclasses

from tfzoo.config import load_config_file

CONFIG = dataclasses.replace(
    load_config_file("tresnet_synthetic"), model="resnet_small",
    model_overrides={"zero_init_head": True},
)
