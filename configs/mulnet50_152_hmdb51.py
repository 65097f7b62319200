"""MulNet, ResNet-50 appearance x ResNet-152 motion, HMDB51 (thesis ch. 5; CVPR 2017; Table
5.5: 68.9%, mean over the three splits, test protocol "chunks25_flip" (§5.4.1)).

    python -m tfzoo.data.prepare --dataset=hmdb51 --root=HMDB51_DIR --out=DIR --flow=tvl1
    python -m tfzoo.train --config=mulnet50_152_hmdb51 --data=DIR

The UCF101 recipe (configs/mulnet50_152_ucf101.py) on HMDB51, with the motion scores weighted
3x in the fused output (§5.5.3); the class count comes from the prepared data.
"""

import dataclasses

from tfzoo.config import load_config_file

_base = load_config_file("mulnet50_152_ucf101")
CONFIG = dataclasses.replace(
    _base,
    model_overrides={**_base.model_overrides, "flow_weight": 3.0},
    stages=tuple(
        {**s, "model_overrides": {**s.get("model_overrides", {}), "flow_weight": 3.0}}
        for s in _base.stages
    ),
)
