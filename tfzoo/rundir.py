"""The model directory contract shared by train, evaluate, export and the demo.

    MODEL_DIR/
      run.json            what was trained: registry name, model config, class names,
                          clip geometry, the resolved training config, a format version
      model.keras         the final model (Keras v3 format), written atomically
      checkpoints/        per-epoch weights (`epoch-NNNN.weights.h5`, each written atomically)
                          and `latest.txt` (the newest one's file name)
      backup/             weights + position every N steps (tfzoo/backup.py; resume after a kill)
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

from tfzoo.errors import TfzooError

FORMAT_VERSION = 1
RUN_FILE = "run.json"
MODEL_FILE = "model.keras"


class RunDirError(TfzooError):
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


def _umask() -> int:
    """The process umask, read without changing it where Linux says it (threads may be
    creating files meanwhile)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes a rename or a new file in `path` survive a power loss (no-op where directories
    cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_file(tmp: str | os.PathLike, path: str | os.PathLike, *, durable: bool = False) -> None:
    """Renames a finished temporary file onto `path` with the mode a plain write would give
    (0666 minus the umask: `mkstemp` and some writers make files owner-only, which a team
    sharing runs/ cannot read). `durable`: the data and the rename are on disk when this
    returns (fsync of the file, then of the directory), for files whose loss after a crash
    would corrupt a run (checkpoints, backups, run.json, a dataset's manifest)."""
    os.chmod(tmp, 0o666 & ~_umask())
    if durable:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(Path(path).parent)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> None:
    """Writes via a temporary file and a rename, so readers never see half a file; see
    `replace_file` for the mode and `durable`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        replace_file(tmp, path, durable=durable)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(model, path: str | os.PathLike) -> None:
    """`model.save_weights` atomically and durably (a killed or crashed run never leaves a
    truncated weights file under the final name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name[:-len('.weights.h5')]}.tmp-{os.getpid()}.weights.h5")
    try:
        model.save_weights(tmp)
        replace_file(tmp, path, durable=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _saved_model_in(path: Path) -> Path | None:
    """`path` itself, or its newest numbered version, when it holds a SavedModel."""
    if (path / "saved_model.pb").is_file():
        return path
    versions = [p for p in path.glob("[0-9]*") if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def write_run_info(model_dir: str | os.PathLike, info: RunInfo) -> None:
    atomic_write_text(Path(model_dir) / RUN_FILE, json.dumps(info.to_json(), indent=2) + "\n",
                      durable=True)


def read_run_info(model_dir: str | os.PathLike) -> RunInfo:
    path = Path(model_dir) / RUN_FILE
    if not path.exists():
        saved = _saved_model_in(Path(model_dir))
        if saved is not None:
            raise RunDirError(
                f"{str(model_dir)!r} is an exported SavedModel ({saved}), not a training run "
                f"directory: pass it as --saved_model={saved} (python -m tfzoo.predict), or "
                f"pass the run it was exported from as --model_dir")
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
    replace_file(tmp, path, durable=True)
    return path


def load_model(model_dir: str | os.PathLike):
    """Returns (keras model, RunInfo) from a model directory."""
    import keras  # deferred: loads Keras (TensorFlow)

    # Registers the serializable classes, the per-chunk loss a saved compile state names
    # included (tfzoo.models.heads).
    # deferred: loads TensorFlow
    import tfzoo.models  # noqa: F401

    info = read_run_info(model_dir)
    path = Path(model_dir) / MODEL_FILE
    if not path.exists():
        raise RunDirError(f"{path} is missing: training in {model_dir} has not finished")
    return keras.saving.load_model(path), info
