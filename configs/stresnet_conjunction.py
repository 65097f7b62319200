"""ST-ResNet (thesis ch. 4) on the conjunction task: additive motion -> appearance residual
connections (eq. 4.2) and 1x1x3 temporal convs in every stage's second unit (eq. 4.5).

Same streams size and recipe as configs/mulnet_conjunction.py; full-batch BN (the registry
preset's sub-batch BN of 4 is for the paper's batch of 128).
`python -m tfzoo.train --config=stresnet_conjunction --model_dir=DIR`.
"""

import dataclasses

from tfzoo.config import load_config_file

CONFIG = dataclasses.replace(
    load_config_file("mulnet_conjunction"),
    model="stresnet50",
    model_overrides=dict(blocks=(2, 2, 2, 2), width=8, flow_channels=4, fusion="add",
                         rgb_bn_group_size=None, flow_bn_group_size=None),
)
