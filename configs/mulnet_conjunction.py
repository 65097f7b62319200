"""MulNet (thesis ch. 5) on the conjunction task: motion gates appearance multiplicatively.

`python -m tfzoo.train --config=mulnet_conjunction --model_dir=DIR`, or all three conjunction
recipes with the results table: `python -m tfzoo.experiments.conjunction`.

The conjunction task (tfzoo/data/conjunction.py): a red and a blue disc whose textures slide in
opposite directions; the class is which colour slides which way. Neither stream alone carries
any label information (by construction), so late fusion (configs/latefusion_conjunction.py,
this recipe with the connections off) stays at chance; the cross-stream connections can solve
it. Tiny streams (2 units per stage, width 8), 3 chunks of 2 flow fields (2L = 4 channels),
48 px, from scratch. The recipe (identical for the three models, only the connection differs):
15 epochs of the 600 training videos, Adam 2e-3 with cosine decay, batch 16,
no validation pass, no motion-stream dropout (the tiny stream underfits, the
paper's 0.8 is for ResNet-152 on UCF101).
"""

from tfzoo.config import TrainConfig

STREAMS = dict(rgb_blocks=(2, 2, 2, 2), flow_blocks=(2, 2, 2, 2), width=8, flow_channels=4,
               flow_dropout=0.0)

CONFIG = TrainConfig(
    model="mulnet50",
    model_overrides={**STREAMS, "fusion": "multiply"},
    dataset="conjunction",
    dataset_options={"flow_stack": 2},
    num_frames=3,
    stride_range=(1, 4),
    image_size=(48, 48),
    test_num_frames=3,
    test_short_side=None,
    test_flip=True,
    val_split=None,  # tracing the validation graph costs more than the epochs here
    flip=True,
    batch_size=16,
    epochs=15,
    steps_per_epoch=None,  # one pass over the 600 training videos
    optimizer="adam",
    learning_rate=2e-3,
    weight_decay=1e-4,
    lr_schedule="cosine",
    seed=0,
)
