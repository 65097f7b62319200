"""The dataset a `tfzoo.config.TrainConfig` names: `make_source(config)`.

One place knows every kind of source, above the packages that define them: the classification
sets of `tfzoo.data` (synthetic, prepared TFRecords, conjunction) and the detection sets of
`tfzoo.detection` (which builds on `tfzoo.data`'s VideoSource interface, so data never imports
detection).
"""

from __future__ import annotations

from tfzoo.data.base import DataError, VideoSource
from tfzoo.data.synthetic import SyntheticSource
from tfzoo.utils import check_choice


def folder_dataset(dataset: str) -> str:
    """The dataset kind that reads a `--data` folder for a run of `dataset`: a detection folder
    as it is (ImageNet VID or custom layout), anything else prepared TFRecords."""
    return "detection" if dataset in ("detection", "detection_synthetic") else "records"


def make_source(config) -> VideoSource:
    """The VideoSource a TrainConfig names."""
    # Each kind imported when named: a source's module brings TensorFlow, PyAV or OpenCV.
    if config.dataset == "synthetic":
        return SyntheticSource(**config.dataset_options)
    if config.dataset == "records":
        if not config.data_dir:
            raise DataError("dataset 'records' needs a prepared directory: pass --data=DIR")
        from tfzoo.data.readers import RecordSource  # deferred: loads TensorFlow

        return RecordSource(config.data_dir, **config.dataset_options)
    if config.dataset in ("detection", "detection_synthetic"):
        from tfzoo.detection.source import DetectionSource  # deferred: loads TensorFlow

        if config.dataset == "detection" and not config.data_dir:
            raise DataError("dataset 'detection' needs a folder (ImageNet VID or custom layout): "
                            "pass --set data_dir=DIR")
        options = dict(config.dataset_options)
        if config.dataset == "detection_synthetic":
            return DetectionSource(None, synthetic=options.pop("synthetic", None), **options)
        return DetectionSource(config.data_dir, **options)
    if config.dataset == "conjunction":
        from tfzoo.data.conjunction import ConjunctionSource  # deferred: loads TensorFlow

        return ConjunctionSource(**config.dataset_options)
    check_choice("dataset", config.dataset, ("synthetic", "records", "conjunction", "detection",
                                             "detection_synthetic"),
                 error=DataError)
    raise AssertionError(f"dataset {config.dataset!r} has no source")
