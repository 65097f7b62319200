"""D&T recipe, step 3 (thesis §8.5.2): the D&T ResNet-101 (R-FCN + correlation RoI tracking),
fine-tuned from the R-FCN VID model (configs/rfcn_resnet101_vid.py) with a learning rate of
1e-4 for 40K iterations then 1e-5 for 20K, batch 4, the thesis' DET+VID data:

    python -m tfzoo.train --config=dt_resnet101_vid --data=DIR --set init_from=runs/rfcn_resnet101_vid --model_dir=runs/dt_resnet101_vid
    python -m tfzoo.detect --model_dir=runs/dt_resnet101_vid --video=IN.mp4 --out=OUT.mp4

Training elements are pairs of adjacent frames (`pairs=True`, tau = 1; DET images as two
copies), so `fit` optimises eq. 8.1 whole: the detection terms on both frames and the tracking
term on the pairs (`DetectTrack.train_step`); the batch counts pairs (the thesis: one pair per
GPU, 4 GPUs). The batches alternate between VID pairs and DET pairs (`alternate_det_vid`: "in
each other iteration we also sample from the ImageNet DET training set"), so DIR must hold
Data/DET/train next to Data/VID (`--set "dataset_options={'frames_per_video': 10, 'pairs':
True, 'alternate_det_vid': False}"` trains on what it holds). `python -m tfzoo.evaluate`
reports D and the linked D&T at tau = 1 and 10 (`link_strides`), offline and online.
"""

import dataclasses

from tfzoo.config import load_config_file

CONFIG = dataclasses.replace(
    load_config_file("rfcn_resnet101_vid"),
    model="dt_resnet101",
    dataset_options={**load_config_file("rfcn_resnet101_vid").dataset_options, "pairs": True,
                     "tau": 1, "alternate_det_vid": True},
    link_strides=(1, 10),  # the thesis' Table 8.1 rows: tau = 1, and tau = 10 (§8.5.3)
    learning_rate=1e-4,
    lr_boundaries=(40,),  # x 1000 steps per epoch: 40K at 1e-4, then 20K at 1e-5
    epochs=60,
)
