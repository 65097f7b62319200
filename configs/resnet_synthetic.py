"""Embedded demo baseline: the frame-wise ResNet on the same data (`--model=resnet`).

Identical recipe to configs/tresnet_synthetic.py; only the model differs. A single frame of the
synthetic videos carries no label information, so this stays near chance (1/8).
"""

import dataclasses

from tfzoo.config import load_config_file

CONFIG = dataclasses.replace(load_config_file("tresnet_synthetic"), model="resnet_small")
