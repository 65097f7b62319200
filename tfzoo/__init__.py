"""tfzoo: two-stream and spatiotemporal video models for TensorFlow/Keras."""

import os
import sys

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) drowns user-facing output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfzoo import _checkout  # noqa: E402
from tfzoo.errors import TfzooError, quiet_tensorflow_start_up  # noqa: E402
from tfzoo.registry import UnknownModelError, create_model, list_models, register_model  # noqa: E402

_checkout.install(os.path.dirname(os.path.abspath(__file__)))

# `python -m tfzoo.<cli>`: Python sets argv[0] to "-m" while it imports the packages that
# locate the module, i.e. before any of the CLI's own imports. TF 2.21's C++ start-up lines
# ignore TF_CPP_MIN_LOG_LEVEL and would come before the CLI's output or its one-line error.
if sys.argv[:1] == ["-m"]:
    quiet_tensorflow_start_up()

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
