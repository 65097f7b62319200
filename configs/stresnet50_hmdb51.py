"""ST-ResNet / ST-ResNet*, ResNet-50 streams, HMDB51 (thesis ch. 4; Table 4.3: 65.57% / 66.41%;
test protocol "chunks25_flip", §4.3.5).

    python -m tfzoo.data.prepare --dataset=hmdb51 --root=HMDB51_DIR --out=DIR --flow=tvl1
    python -m tfzoo.train --config=stresnet50_hmdb51 --data=DIR

HMDB51_DIR holds the class folders and testTrainMulti_7030_splits/. The UCF101 recipe (configs/stresnet50_ucf101.py, Table 4.2) on HMDB51; the class count comes
from the prepared data.
"""

from tfzoo.config import load_config_file

CONFIG = load_config_file("stresnet50_ucf101")
