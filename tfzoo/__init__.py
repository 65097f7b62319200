"""tfzoo: two-stream and spatiotemporal video models for TensorFlow/Keras."""

import os
import sys

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) drowns user-facing output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfzoo import _checkout  # noqa: E402
from tfzoo.errors import TfzooError, quiet_tensorflow_start_up  # noqa: E402

_checkout.install(os.path.dirname(os.path.abspath(__file__)))

# `python -m tfzoo.<cli>`: Python sets argv[0] to "-m" while it imports the packages that
# locate the module, i.e. before any of the CLI's own imports. TF 2.21's C++ start-up lines
# ignore TF_CPP_MIN_LOG_LEVEL and would come before the CLI's output or its one-line error.
if sys.argv[:1] == ["-m"]:
    quiet_tensorflow_start_up()

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "register_model", "TfzooError", "UnknownModelError",
           "__version__"]


# The registry comes with the model families (TensorFlow): loaded on first use, so that
# `import tfzoo` (and a CLI's --help) stays light.
_REGISTRY_NAMES = ("create_model", "list_models", "register_model", "UnknownModelError")


def __getattr__(name):
    if name in _REGISTRY_NAMES:
        import tfzoo.models  # deferred: loads TensorFlow

        return getattr(tfzoo.models, name)
    # `tfzoo.predict(model, video)`: the function (tfzoo/prediction.py), loaded on first use;
    # `python -m tfzoo.predict` is the program in tfzoo/predict/, a folder with only
    # __main__.py, so that no library import replaces this attribute with a module.
    if name == "predict":
        from tfzoo.prediction import predict  # deferred: `import tfzoo` loads only tfzoo.errors

        return predict
    raise AttributeError(f"module 'tfzoo' has no attribute {name!r}")
