"""Optical flow in TensorFlow: TV-L1 and TVNet layers, the uint8 storage code, renderers.

- `TVL1`, `TVNet`: Keras layers, (B, T, H, W, 3) RGB in [0, 255] -> (B, T-1, H, W, 2) px;
  `TVL1(**OPENCV)` matches OpenCV's DualTVL1 (no presmoothing or antialiasing, zero border).
- `TwoStreamFrames`: a dense RGB clip -> {"rgb", "flow"} two-stream inputs (sampled frames and
  stacked TV-L1 flow), so an exported two-stream model takes RGB only.
- `tvl1(img0, img1, **params)`, `tvl1_video(frames)`: numpy in, numpy out (XLA, cached).
- `encode_flow` / `decode_flow`: the papers' +-20 px uint8 code.
- `flow_to_color` (Middlebury wheel), `flow_to_uvm` ((u, v, |w|) RGB), `write_flow_video`.
- CLI: `python -m tfzoo.flow --video IN.mp4 --out OUT [--format mp4|npz|jpeg]`;
  unsupervised TVNet training: `python -m tfzoo.flow.train`; benchmark: `tfzoo.flow.tvl1_bench`.
"""

import importlib

# The layers and the storage code come with TensorFlow: loaded on first use, so that the flow
# programs (`python -m tfzoo.flow`, `tfzoo.flow.train`, `tfzoo.flow.tvl1_bench`) answer
# --help in half a second, as the other programs do (it took 5 s of CPU importing TensorFlow).
_HOMES = {
    "encoding": ("DEFAULT_BOUND", "decode_flow", "encode_flow", "flow_to_color", "flow_to_uvm",
                 "load_npz", "render_flow", "write_flow_video"),
    "solver": ("OPENCV", "TVL1", "TVNet", "FlowInputError", "bicubic_warp", "bilinear_warp",
               "num_scales", "to_grey", "tvl1", "tvl1_video"),
    "stacks": ("TwoStreamFrames",),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'tfzoo.flow' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tfzoo.flow.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_HOME})


__all__ = [
    "TVL1", "TVNet", "TwoStreamFrames", "OPENCV", "FlowInputError", "tvl1", "tvl1_video", "bilinear_warp",
    "bicubic_warp", "num_scales",
    "to_grey", "encode_flow", "decode_flow", "DEFAULT_BOUND", "flow_to_color", "flow_to_uvm",
    "render_flow", "write_flow_video", "load_npz",
]
