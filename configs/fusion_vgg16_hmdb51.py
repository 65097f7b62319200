"""Two-stream fusion, VGG-16 towers, HMDB51 (thesis ch. 3; Table 3.5: 65.4%, tested
with Table 3.5's dense protocol "dense20", §3.4.6).

    python -m tfzoo.data.prepare --dataset=hmdb51 --root=HMDB51_DIR --out=DIR --flow=tvl1
    python -m tfzoo.train --config=fusion_vgg16_hmdb51 --data=DIR

The UCF101 recipe (configs/fusion_vgg16_ucf101.py) on HMDB51; the class count comes from the
prepared data. The paper initialises the temporal HMDB51 network from the temporal UCF101 one
(§3.4.3): add `init_from="RUN_DIR/stages/1-streams"` of a UCF101 run to the "streams" stage dict of a
copy of this file (not to the base config: that would also override stage 2's start from
stage 1). Layers are copied by name where shapes match, so the 101-way fc8 is skipped.
"""

from tfzoo.config import load_config_file

CONFIG = load_config_file("fusion_vgg16_ucf101")
