"""Run-directory files: atomic writes keep the umask's mode, durable ones reach the disk,
weights are never left half-written (issue 24 items 3 and 7)."""

from __future__ import annotations

import os
import stat

import keras
import numpy as np
import pytest

from tfzoo import rundir
from tfzoo.backup import EpochCheckpoint


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_have_the_mode_of_a_plain_write(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    rundir.atomic_write_text(tmp_path / "atomic.json", "{}\n")
    rundir.atomic_write_text(tmp_path / "durable.json", "{}\n", durable=True)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o666 & ~mask
    for name in ("atomic.json", "durable.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.json", "durable.json",
                                                          "plain.txt"]


def _fsynced(monkeypatch):
    kinds = []
    real = os.fsync

    def fsync(fd):
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return kinds


def test_durable_writes_fsync_the_file_then_its_directory(tmp_path, monkeypatch):
    kinds = _fsynced(monkeypatch)
    rundir.atomic_write_text(tmp_path / "metrics.json", "{}\n")
    assert kinds == []  # plain atomic writes stay cheap
    rundir.atomic_write_text(tmp_path / "run.json", "{}\n", durable=True)
    assert kinds == ["file", "dir"]


def _tiny_model():
    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(2, name="d")(inp))


def test_weights_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    model = _tiny_model()
    path = tmp_path / "epoch-0001.weights.h5"
    kinds = _fsynced(monkeypatch)
    rundir.save_weights(model, path)
    assert kinds == ["file", "dir"]
    before = path.read_bytes()

    def crash(filepath, **kwargs):  # half a file, then the process dies
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF half")
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save_weights", crash)
    with pytest.raises(KeyboardInterrupt):
        rundir.save_weights(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_epoch_checkpoints_and_latest_txt(tmp_path):
    model = _tiny_model()
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    model.fit(x, x[:, :2], epochs=3, batch_size=4, verbose=0,
              callbacks=[EpochCheckpoint(tmp_path / "checkpoints")])
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch-0001.weights.h5", "epoch-0002.weights.h5", "epoch-0003.weights.h5",
                     "latest.txt"]
    latest = (tmp_path / "checkpoints" / "latest.txt").read_text().strip()
    assert latest == "epoch-0003.weights.h5"
    other = _tiny_model()
    other.load_weights(tmp_path / "checkpoints" / latest)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
