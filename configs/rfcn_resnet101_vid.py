"""D&T recipe, step 2 (thesis §8.5.2): the R-FCN ResNet-101 frame detector on the 30 VID classes.

Single-scale frames (shorter side 600, longer at most 1000), batch 4, SGD with learning rate
1e-3 for 60K iterations then 1e-4 for 20K, random horizontal flips; 15 anchors, 300 proposals
(NMS 0.7), OHEM on 128 RoIs, test NMS 0.3 (the model's defaults, tfzoo.models.rfcn.RFCN).
Data: the thesis' DET+VID mix, the 30 VID classes, at most 2k DET images per class and 10
frames per VID training video (`frames_per_video`), in one folder DIR (ImageNet VID layout or
the custom layout, docs/detection.md).

The RPN is pre-trained on the 200 DET classes first (configs/rfcn_resnet101_det200.py, its
docstring's command, into runs/rfcn_resnet101_det200); this run starts from it (`--set init_from=...`: layers copied by name; the class-dependent R-FCN
maps, whose shapes differ, keep their initialisation):

    python -m tfzoo.train --config=rfcn_resnet101_vid --data=DIR --set init_from=runs/rfcn_resnet101_det200 --model_dir=runs/rfcn_resnet101_vid
    python -m tfzoo.evaluate --model_dir=runs/rfcn_resnet101_vid   # VID mAP on val

Multi-GPU: `--strategy=mirrored` (batch 4 = one frame per GPU on 4 GPUs, as the thesis).
"""

import dataclasses

from tfzoo.config import load_config_file

CONFIG = dataclasses.replace(
    load_config_file("rfcn_resnet101_det200"),
    dataset_options={"frames_per_video": 10},
)
