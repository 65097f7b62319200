"""D&T recipe, step 1 (thesis §8.5.2): R-FCN ResNet-101 trained on the 200 ImageNet DET classes,
the RPN pre-training that "helps to increase the recall" before the 30-class VID+DET model
(configs/rfcn_resnet101_vid.py starts from this run).

    python -m tfzoo.train --config=rfcn_resnet101_det200 --data=DIR --model_dir=runs/rfcn_resnet101_det200

DIR: ImageNet DET in the custom detection layout (docs/detection.md: one folder per image,
`classes.txt` with the 200 class names, `boxes.csv` per folder) with a `train` split. The
thesis gives no schedule for this step; it uses the VID step's (batch 4, 1e-3 for 60K, 1e-4 for
20K iterations).
"""

from tfzoo.config import TrainConfig

CONFIG = TrainConfig(
    model="rfcn_resnet101",
    weights="imagenet",
    dataset="detection",
    train_split="train",
    val_split=None,
    test_split="val",
    image_size=(600, 1000),  # detection: shorter side 600, longer side at most 1000
    flip=True,
    test_flip=False,
    batch_size=4,
    optimizer="sgd",
    momentum=0.9,
    weight_decay=5e-4,  # R-FCN's
    learning_rate=1e-3,
    lr_schedule="steps",
    lr_decay=0.1,
    lr_boundaries=(60,),
    steps_per_epoch=1000,
    epochs=80,
    checkpoint_every_steps=1000,
)
