"""Late fusion on the conjunction task: configs/mulnet_conjunction.py with the cross-stream
connections off (`fusion="none"`): two separately supervised ResNet streams (one loss each),
pre-softmax scores averaged at test -- the same backbones and recipe as the cross-stream
models, so the connections are the only difference.

Each stream alone carries no label information on this task, so this should stay at chance
(50%). `python -m tfzoo.train --config=latefusion_conjunction --model_dir=DIR`.
"""

import dataclasses

from tfzoo.config import load_config_file

_BASE = load_config_file("mulnet_conjunction")
CONFIG = dataclasses.replace(_BASE, model_overrides={**_BASE.model_overrides, "fusion": "none"})
