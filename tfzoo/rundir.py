"""The model directory contract shared by train, evaluate, export and the demo.

    MODEL_DIR/
      run.json            what was trained: registry name, model config, class names,
                          clip geometry, the resolved training config, a format version
      model.keras         the final model (Keras v3 format), written atomically
      checkpoints/        per-epoch weights (`epoch-NNNN.weights.h5`) and `latest.txt`
      backup/             Keras BackupAndRestore state (resume after a kill)
      logs/               TensorBoard event files
      metrics.json        written by `python -m tfzoo.evaluate`
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
RUN_FILE = "run.json"
MODEL_FILE = "model.keras"


class RunDirError(ValueError):
    pass


@dataclass
class RunInfo:
    model: str  # registry name, e.g. "tresnet50"
    model_config: dict[str, Any]  # constructor arguments (model.get_config())
    class_names: list[str]
    num_frames: int  # frames per clip at test time
    image_size: tuple[int, int]  # (height, width) the model was trained at
    config: dict[str, Any] = field(default_factory=dict)  # resolved training config
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["image_size"] = list(self.image_size)
        return d


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes via a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_run_info(model_dir: str | os.PathLike, info: RunInfo) -> None:
    atomic_write_text(Path(model_dir) / RUN_FILE, json.dumps(info.to_json(), indent=2) + "\n")


def read_run_info(model_dir: str | os.PathLike) -> RunInfo:
    path = Path(model_dir) / RUN_FILE
    if not path.exists():
        raise RunDirError(
            f"{str(model_dir)!r} is not a tfzoo model directory: {RUN_FILE} is missing "
            f"(train one with `python -m tfzoo.train --model_dir={model_dir}`)"
        )
    data = json.loads(path.read_text())
    if data.get("format_version") != FORMAT_VERSION:
        raise RunDirError(
            f"{path}: format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    data["image_size"] = tuple(data["image_size"])
    # Written by tfzoo before the model's own inputs said it; nothing reads it.
    data.pop("input_kind", None)
    return RunInfo(**data)


def save_model(model, model_dir: str | os.PathLike) -> Path:
    """Saves `model.keras` atomically."""
    path = Path(model_dir) / MODEL_FILE
    tmp = path.with_name(f".{MODEL_FILE}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path


def load_model(model_dir: str | os.PathLike):
    """Returns (keras model, RunInfo) from a model directory."""
    import keras

    import tfzoo.models  # noqa: F401  (registers the serializable classes)

    info = read_run_info(model_dir)
    path = Path(model_dir) / MODEL_FILE
    if not path.exists():
        raise RunDirError(f"{path} is missing: training in {model_dir} has not finished")
    return keras.saving.load_model(path), info
