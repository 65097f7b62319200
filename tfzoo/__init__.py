"""tfzoo: two-stream and spatiotemporal video models for TensorFlow/Keras."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) drowns user-facing output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfzoo.errors import TfzooError  # noqa: E402
from tfzoo.registry import UnknownModelError, create_model, list_models, register_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "register_model", "TfzooError", "UnknownModelError",
           "__version__"]


def __getattr__(name):
    # `tfzoo.predict(model, video)`: the package tfzoo.predict is itself callable; imported on
    # first use so that `import tfzoo` stays light.
    if name == "predict":
        import importlib

        return importlib.import_module("tfzoo.predict")
    raise AttributeError(f"module 'tfzoo' has no attribute {name!r}")
