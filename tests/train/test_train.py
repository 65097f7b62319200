"""Training CLI: outputs, resume after SIGKILL, tf.distribute strategies, user errors."""

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfzoo import train
from tfzoo.config import TrainConfig
from tfzoo.evaluate import evaluate_model_dir
from tfzoo.rundir import load_model, read_run_info
from _runs import TINY, cli, finish, free_port


def tiny_config(**changes) -> TrainConfig:
    base = TrainConfig(model="tresnet_small").replace(**TINY)
    return base.replace(**changes)


@pytest.mark.e2e
def test_run_writes_the_model_dir_and_metrics(tmp_path):
    metrics = train.run(tiny_config(epochs=2, steps_per_epoch=3), tmp_path,
                        tf.distribute.get_strategy(), verbose=0)
    for name in ("model.keras", "run.json", "metrics.json", "history.csv", "config.json"):
        assert (tmp_path / name).exists(), name
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-0001.weights.h5", "epoch-0002.weights.h5", "latest.txt"]
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    info = read_run_info(tmp_path)
    assert info.model == "tresnet_small" and len(info.class_names) == 6
    assert metrics["num_videos"] == 6 and 0.0 <= metrics["accuracy"] <= 1.0  # 1 test video a class
    assert json.loads((tmp_path / "metrics.json").read_text())["test"] == metrics
    # Evaluating again from the directory alone gives the same numbers.
    again = evaluate_model_dir(tmp_path)
    assert again["accuracy"] == metrics["accuracy"]
    assert again["confusion_matrix"] == metrics["confusion_matrix"]
    model, _ = load_model(tmp_path)
    assert model.count_params() > 0
    # Issue 11 item 5: evaluating the val split adds its entry; the test metrics stay.
    val = evaluate_model_dir(tmp_path, split="val")
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert sorted(stored) == ["test", "val"] and stored["val"] == val
    assert stored["test"] == again and val["split"] == "val" and val["num_videos"] == 6


def test_flip_averaging_maps_mirrored_classes():
    from tfzoo.tasks.classification import predict_scores
    from tfzoo.tasks import CLASSIFICATION

    class Echo(tf.keras.layers.Layer):  # a "model" whose score is the left-right asymmetry
        def call(self, x, training=False):
            left = tf.reduce_mean(x[:, :, :, :2], axis=[1, 2, 3, 4])
            right = tf.reduce_mean(x[:, :, :, -2:], axis=[1, 2, 3, 4])
            return tf.stack([left - right, right - left, tf.zeros_like(left)], axis=1)

    x = np.zeros((1, 2, 4, 4, 3), np.float32)
    x[..., :2, :] = 10.0
    ds = tf.data.Dataset.from_tensor_slices((x, [0])).batch(1)
    # Classes 0 and 1 are mirror images: the flipped view's scores are swapped back.
    scores, _ = predict_scores(Echo(), ds, flip=True, flip_label_map=[1, 0, 2],
                               task=CLASSIFICATION)
    np.testing.assert_allclose(scores[0], [10.0, -10.0, 0.0])
    scores, _ = predict_scores(Echo(), ds, flip=True, flip_label_map=None,
                               task=CLASSIFICATION)
    np.testing.assert_allclose(scores[0], [0.0, 0.0, 0.0])


def _metadata(model_dir):
    path = Path(model_dir) / "backup" / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.e2e
def test_sigkill_mid_epoch_then_same_command_resumes_at_the_saved_step(tmp_path):
    """Issue 11 item 6: the resumed run says what it restored and continues the interrupted
    epoch at the saved step: every epoch is logged once and the optimizer makes exactly
    epochs x steps updates, as an uninterrupted run does (Keras' BackupAndRestore would redo
    the epoch from step 0: 4 x 6 + the steps done before the kill)."""
    args = [f"--model=tresnet_small", f"--model_dir={tmp_path}", "--epochs=3", "--steps=6",
            "--set=checkpoint_every_steps=2", "--noevaluate"]
    proc = cli(*args)
    deadline = time.time() + 240
    while time.time() < deadline:
        meta = _metadata(tmp_path)
        if meta and meta["epoch"] >= 1 and meta["step"] >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be killed:\n{proc.stdout.read()}")
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("no mid-epoch backup appeared")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = _metadata(tmp_path)
    assert not (tmp_path / "model.keras").exists() and killed["step"] in (2, 4)

    code, out = finish(cli(*args))
    assert code == 0, out
    assert (f"after epoch {killed['epoch']} + {killed['step']}/6 steps "
            f"(optimizer step {6 * killed['epoch'] + killed['step']})") in out, out
    epochs = [int(line.split(",")[0]) for line in (tmp_path / "history.csv").read_text().splitlines()
              if line and line[0].isdigit()]
    assert epochs == [0, 1, 2], epochs
    model, _ = load_model(tmp_path)
    assert int(model.optimizer.iterations) == 3 * 6
    assert not (tmp_path / "backup").exists()  # finished: nothing left to resume


@pytest.mark.e2e
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    code, out = finish(cli("--model=tresnet_small", f"--model_dir={tmp_path}", "--epochs=1",
                           "--steps=2", "--strategy=mirrored", "--logical_cpus=2", "--noevaluate"))
    assert code == 0, out
    assert read_run_info(tmp_path).config["num_replicas_in_sync"] == 2


@pytest.mark.e2e
def test_multi_worker_two_local_workers(tmp_path):
    hosts = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        procs.append(cli("--model=tresnet_small", f"--model_dir={tmp_path}", "--epochs=1",
                         "--steps=2", "--strategy=multi_worker", "--noevaluate",
                         env={"TF_CONFIG": json.dumps(tf_config)}))
    results = [finish(p, timeout=900) for p in procs]  # 300 s ran out at load 9
    for code, out in results:
        assert code == 0, out
    info = read_run_info(tmp_path)
    assert info.config["num_replicas_in_sync"] == 2
    assert (tmp_path / "model.keras").exists()  # written by the chief (worker 0) only
    assert (tmp_path / "workers" / "worker-1").is_dir()


@pytest.mark.parametrize("args,message", [
    (["--model=tresnet_small", "--set=lerning_rate=0.1"], "unknown config key 'lerning_rate'"),
    (["--model=tresnet5O"], "Did you mean"),
    (["--config=no_such_config"], "is not a shipped recipe. configs/ has"),
])
def test_user_errors_are_one_clear_line(tmp_path, args, message, absl_main, capsys):
    # The program's main in this process (tests/cli/test_cli_errors.py runs the CLI table in a
    # fresh process, and real `python -m` processes).
    code = absl_main(train, [*args, f"--model_dir={tmp_path}"], "python -m tfzoo.train")
    out = "".join(capsys.readouterr())
    assert code == 2, out
    assert message in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out


def test_finished_dir_with_other_settings_is_refused_not_skipped(tmp_path, capsys, absl_main):
    """Issue 11 item 2: a finished run is not "skipped" for a config it never ran with, and
    config.json keeps describing the run that happened; --restart starts over."""
    strategy = tf.distribute.get_strategy()
    first = tiny_config(epochs=1, steps_per_epoch=1)
    train.run(first, tmp_path, strategy, evaluate=False, verbose=0)
    written = (tmp_path / "config.json").read_text()
    with pytest.raises(train.TrainError, match=r"epochs: 1 there, 2 now.*--restart.*init_from"):
        train.run(first.replace(epochs=2), tmp_path, strategy, evaluate=False, verbose=0)
    # Another model into the directory, from the command line: one line naming both.
    capsys.readouterr()
    code = absl_main(train, ["--model=resnet_small", f"--model_dir={tmp_path}"],
                     "python -m tfzoo.train")
    out = "".join(capsys.readouterr())
    assert code == 2 and "holds a finished run ('tresnet_small')" in out, out
    assert "(model: 'tresnet_small' there, 'resnet_small' now, " in out
    assert (tmp_path / "config.json").read_text() == written
    # The same config again is the same run: finished, nothing retrained.
    mtime = (tmp_path / "model.keras").stat().st_mtime_ns
    train.run(first, tmp_path, strategy, evaluate=False, verbose=0)
    assert (tmp_path / "model.keras").stat().st_mtime_ns == mtime
    # --restart deletes the old run and trains the new settings.
    train.run(first.replace(epochs=2), tmp_path, strategy, evaluate=False, verbose=0,
              restart=True)
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 2
    assert read_run_info(tmp_path).config["epochs"] == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-0001.weights.h5", "epoch-0002.weights.h5", "latest.txt"]


def test_interrupted_run_resumed_with_another_architecture_is_one_line(tmp_path, monkeypatch,
                                                                       absl_main, capsys):
    """Issue 11 item 9: an interrupted run restarted with another architecture: refused by
    name (config.json), and a backup of another architecture is named as such instead of
    Keras' 45 KB "objects could not be loaded" dump."""
    from tfzoo import backup

    def killed(self, epoch, step, real=backup.StepBackup.save):
        real(self, epoch, step)
        raise KeyboardInterrupt  # the kill arrives right after the first backup

    monkeypatch.setattr(backup.StepBackup, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        train.run(tiny_config(epochs=1, steps_per_epoch=2, checkpoint_every_steps=1), tmp_path,
                  tf.distribute.get_strategy(), evaluate=False, verbose=0)
    monkeypatch.undo()
    assert _metadata(tmp_path)["step"] == 1 and not (tmp_path / "run.json").exists()
    capsys.readouterr()
    code = absl_main(train, ["--model=resnet_small", f"--model_dir={tmp_path}", "--epochs=1",
                             "--steps=2", "--set=checkpoint_every_steps=1", "--noevaluate"],
                     "python -m tfzoo.train")
    out = "".join(capsys.readouterr())
    assert code == 2 and "holds an unfinished run ('tresnet_small')" in out, out
    assert "Traceback" not in out and len(out) < 2000
    # Without config.json (a directory from an older tfzoo) the backup itself is checked.
    (tmp_path / "config.json").unlink()
    with pytest.raises(train.TrainError, match="belongs to another architecture"):
        train.run(tiny_config(epochs=1, steps_per_epoch=2, model="resnet_small",
                              checkpoint_every_steps=1), tmp_path,
                  tf.distribute.get_strategy(), evaluate=False, verbose=0)


def test_mirrored_without_gpus_says_it_runs_one_replica(capsys):
    """Issue 11 item 13: --strategy=mirrored on a CPU-only machine is one replica: say so."""
    assert not tf.config.list_physical_devices("GPU")
    strategy = train.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 1
    assert "found no GPU" in capsys.readouterr().err


def test_init_from_spreads_a_frame_kernel_over_temporal_taps(tmp_path):
    import keras

    from tfzoo.rundir import RunInfo, save_model, write_run_info

    def net(kt):
        x = keras.Input((None, 8, 8, 3))
        y = keras.layers.Conv3D(4, (kt, 1, 1), padding="same", name="c")(x)
        return keras.Model(x, keras.layers.Dense(2, name="head")(y))

    frame, temporal = net(1), net(3)
    save_model(frame, tmp_path)
    write_run_info(tmp_path, RunInfo(model="x", model_config={}, class_names=["a", "b"],
                                     num_frames=1, image_size=(8, 8)))
    assert train.init_from(temporal, str(tmp_path)) == 2
    w = frame.get_layer("c").kernel.numpy()
    np.testing.assert_allclose(temporal.get_layer("c").kernel.numpy(), np.repeat(w / 3, 3, axis=0))
    # On a temporally constant clip the spread kernel equals the frame kernel (eq. 4.5).
    clip = np.random.default_rng(0).normal(size=(1, 5, 8, 8, 3)).astype("float32")
    clip[:] = clip[:, :1]
    np.testing.assert_allclose(temporal(clip)[:, 2], frame(clip)[:, 2], atol=1e-5)
