"""The D&T demo: the small D&T (`dt`) fine-tuned on frame pairs of the embedded synthetic
detection set from the R-FCN demo run (configs/rfcn_synthetic.py), eq. 8.1 whole (detection
terms on both frames, tracking term on the pairs of adjacent frames):

    python -m tfzoo.train --config=rfcn_synthetic --model_dir=runs/rfcn_synthetic
    python -m tfzoo.train --config=dt_synthetic --set init_from=runs/rfcn_synthetic --model_dir=runs/dt_synthetic
    python -m tfzoo.detect --model_dir=runs/dt_synthetic --video=IN.mp4 --out=OUT.mp4

Like the thesis' D&T stage, a tenth of the detector's learning rate, and conv1 and res2 frozen
as the authors' prototxts (the R-FCN demo trains them from scratch; here they are fine-tuned
from it). Tracking targets are eq. 8.2-8.3 as written (`tracking_stds` (1, 1, 1, 1)).
"""

import dataclasses

from tfzoo.config import load_config_file

_RFCN = load_config_file("rfcn_synthetic")

CONFIG = dataclasses.replace(
    _RFCN,
    model="dt",
    model_overrides={"frozen_stages": ("conv1", "conv2")},
    dataset_options={**_RFCN.dataset_options, "pairs": True, "tau": 1},
    batch_size=2,  # pairs: 4 frames a step, as the R-FCN demo's batch
    epochs=4,
    learning_rate=1e-4,
    link_strides=(1, 4),  # the validation videos have 8 frames: tau = 10 would score frame 0 only
)
