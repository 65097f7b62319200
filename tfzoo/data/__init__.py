"""Datasets: the embedded synthetic set and prepared TFRecords behind one interface."""

from __future__ import annotations

from tfzoo.data.base import ClipSpec, DataError, DatasetInfo, VideoSource
from tfzoo.utils import check_choice


def clip_spec(config) -> ClipSpec:
    """The ClipSpec of a `tfzoo.config.TrainConfig`: test clips hold every chunk its test
    protocol classifies (`tfzoo.protocols`)."""
    from tfzoo.protocols import protocol_of

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


def folder_dataset(dataset: str) -> str:
    """The dataset kind that reads a `--data` folder for a run of `dataset`: a detection folder
    as it is (ImageNet VID or custom layout), anything else prepared TFRecords."""
    return "detection" if dataset in ("detection", "detection_synthetic") else "records"


def make_source(config) -> VideoSource:
    """The VideoSource a TrainConfig names."""
    if config.dataset == "synthetic":
        from tfzoo.data.synthetic import SyntheticSource

        return SyntheticSource(**config.dataset_options)
    if config.dataset == "records":
        if not config.data_dir:
            raise DataError("dataset 'records' needs a prepared directory: pass --data=DIR")
        from tfzoo.data.readers import RecordSource

        return RecordSource(config.data_dir, **config.dataset_options)
    if config.dataset in ("detection", "detection_synthetic"):
        from tfzoo.detection.source import DetectionSource

        if config.dataset == "detection" and not config.data_dir:
            raise DataError("dataset 'detection' needs a folder (ImageNet VID or custom layout): "
                            "pass --set data_dir=DIR")
        options = dict(config.dataset_options)
        if config.dataset == "detection_synthetic":
            return DetectionSource(None, synthetic=options.pop("synthetic", None), **options)
        return DetectionSource(config.data_dir, **options)
    if config.dataset == "conjunction":
        from tfzoo.data.conjunction import ConjunctionSource

        return ConjunctionSource(**config.dataset_options)
    check_choice("dataset", config.dataset, ("synthetic", "records", "conjunction", "detection",
                                             "detection_synthetic"),
                 error=DataError)
    raise AssertionError(f"dataset {config.dataset!r} has no source")


def __getattr__(name):
    # Decoding and TFRecord helpers load on first use, so `import tfzoo.data` stays light.
    lazy = {"read_video": "tfzoo.video", "video_info": "tfzoo.video",
            "RecordSource": "tfzoo.data.readers", "list_dataset": "tfzoo.data.adapters"}
    if name in lazy:
        import importlib

        module = importlib.import_module(lazy[name])
        return getattr(module, name)
    raise AttributeError(f"module 'tfzoo.data' has no attribute {name!r}")


__all__ = ["ClipSpec", "DataError", "DatasetInfo", "VideoSource", "clip_spec", "make_source",
           "read_video", "video_info", "RecordSource", "list_dataset"]
