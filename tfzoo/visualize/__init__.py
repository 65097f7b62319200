"""The spatiotemporal visualiser: which input does a unit of a video model want to see?

Activation maximisation with space-time total-variation regularisers (Feichtenhofer, Pinz,
Wildes, Zisserman, "What have we learned from deep representations for action recognition?",
CVPR 2018; thesis ch. 6), for any Keras video model, single- or two-stream. See
docs/visualize.md; CLI: `python -m tfzoo.visualize --model_dir=DIR --layer=NAME`.
"""

from tfzoo.visualize.core import max_activations, maximize, stream_kind
from tfzoo.visualize.geometry import LayerGeometry, layer_geometry, list_layers

__all__ = ["maximize", "max_activations", "layer_geometry", "list_layers", "LayerGeometry",
           "stream_kind"]
