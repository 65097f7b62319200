"""Step-exact backups for resuming a killed training run (`MODEL_DIR/backup/`).

Keras' `BackupAndRestore` saves every N steps but restores the epoch only, so a run killed in
the middle of an epoch starts that epoch again at step 0. `StepBackup` writes the weights (the
optimizer state included: Keras' weights file holds the optimizer's variables) and the position
`{"epoch": e, "step": s}` (e epochs finished, s steps of the next one done), each file written
under a temporary name and renamed; `tfzoo.train` reads the position back and runs the rest of
the interrupted epoch (`steps_per_epoch - s` steps) before the remaining epochs, so the run
makes exactly the optimizer steps an uninterrupted run makes. The input pipeline restarts at its
first batch, which draws fresh random clips (the training stream is shuffled and augmented at
random, so no clip is owed to any particular step).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras

from tfzoo.rundir import atomic_write_text, save_weights

STATE_FILE = "state.json"


def architecture_fingerprint(model) -> str:
    """A short hash of the model's config: a backup only fits the architecture it came from."""
    text = json.dumps(model.get_config(), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def read_state(backup_dir) -> dict | None:
    """The last backup's position and weights file, or None when there is no usable backup."""
    path = Path(backup_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (Path(backup_dir) / state.get("weights", "")).is_file():
        return None
    return state


class StepBackup(keras.callbacks.Callback):
    """Backs up weights + position every `every_steps` steps (None: at epoch ends only) and at
    the end of every epoch. `start` = (epoch, step) where this fit resumes."""

    def __init__(self, backup_dir, *, model_name: str, every_steps: int | None = None,
                 start: tuple[int, int] = (0, 0)):
        super().__init__()
        self.dir = Path(backup_dir)
        self.model_name = model_name
        self.every_steps = every_steps
        self.epoch, self.step = start

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.epoch:  # a new epoch (a resumed partial epoch keeps its offset)
            self.epoch, self.step = epoch, 0
        self._offset = self.step

    def on_train_batch_end(self, batch, logs=None):
        self.step = self._offset + batch + 1
        if self.every_steps and self.step % self.every_steps == 0:
            self.save(self.epoch, self.step)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch, self.step = epoch + 1, 0
        self.save(self.epoch, 0)

    def save(self, epoch: int, step: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch{epoch:04d}-step{step:06d}.weights.h5"
        save_weights(self.model, self.dir / name)
        old = read_state(self.dir)
        # Durable before the old weights go: after a crash the state names a complete file.
        atomic_write_text(self.dir / STATE_FILE, json.dumps({
            "epoch": epoch, "step": step, "weights": name, "model": self.model_name,
            "architecture": architecture_fingerprint(self.model)}) + "\n", durable=True)
        if old and old["weights"] != name:
            (self.dir / old["weights"]).unlink(missing_ok=True)


class RunProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar counting the run's epochs. A resumed run fits the rest of the
    interrupted epoch in a `fit` of its own, which Keras alone would print as "Epoch 2/2" and
    then "Epoch 3/3" for a 3-epoch run."""

    def __init__(self, epochs: int):
        super().__init__()
        self.run_epochs = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.run_epochs


class EpochCheckpoint(keras.callbacks.Callback):
    """Per-epoch weights `DIR/epoch-NNNN.weights.h5`, each written atomically and durably, and
    `DIR/latest.txt` naming the newest (tfzoo/rundir.py's layout)."""

    def __init__(self, directory):
        super().__init__()
        self.dir = Path(directory)

    def on_epoch_end(self, epoch, logs=None):
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        save_weights(self.model, self.dir / name)
        atomic_write_text(self.dir / "latest.txt", name + "\n", durable=True)
