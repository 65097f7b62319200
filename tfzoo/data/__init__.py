"""Datasets: the embedded synthetic set and prepared TFRecords behind one interface."""

from __future__ import annotations

import importlib

from tfzoo.data.base import ClipSpec, DataError, DatasetInfo, VideoSource
from tfzoo.protocols import protocol_of


def clip_spec(config) -> ClipSpec:
    """The ClipSpec of a `tfzoo.config.TrainConfig`: test clips hold every chunk its test
    protocol classifies (`tfzoo.protocols`)."""
    return ClipSpec(
        num_frames=config.num_frames,
        stride_range=tuple(config.stride_range),
        image_size=tuple(config.image_size),
        test_num_frames=protocol_of(config).total_frames(config.num_frames),
        test_short_side=config.test_short_side,
        scale_jitter=config.scale_jitter,
        border=config.border,
        flip=config.flip,
        # §4.3.5: the motion stream's base training uses corner/centre multi-scale crops
        crop="motion" if tuple(config.train_streams or ()) == ("flow",) else "auto",
        flow_rescale=getattr(config, "flow_rescale", False),
    )


def __getattr__(name):
    # Decoding and TFRecord helpers load on first use, so `import tfzoo.data` stays light.
    lazy = {"read_video": "tfzoo.video", "video_info": "tfzoo.video",
            "RecordSource": "tfzoo.data.readers", "list_dataset": "tfzoo.data.adapters"}
    if name in lazy:
        module = importlib.import_module(lazy[name])
        return getattr(module, name)
    raise AttributeError(f"module 'tfzoo.data' has no attribute {name!r}")


__all__ = ["ClipSpec", "DataError", "DatasetInfo", "VideoSource", "clip_spec",
           "read_video", "video_info", "RecordSource", "list_dataset"]
