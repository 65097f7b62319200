"""Issue 22 section 2: the training input on the tf.data service, on loopback: a dispatcher and
two workers as processes (ports picked at run time), a tiny run trained through them."""

import csv
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from _data_fixtures import write_prepared
from _runs import TINY, cli, finish
from tfzoo.data import packed, service
from tfzoo.data.base import ClipSpec
from tfzoo.data.readers import RecordSource
from tfzoo.data.synthetic import SyntheticSource
from tfzoo.rundir import read_run_info
from _paths import REPO

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}


def _start(*args):
    proc = subprocess.Popen([sys.executable, "-m", "tfzoo.data.service", *args], cwd=REPO,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    line = proc.stdout.readline()  # "tf.data service dispatcher at grpc://localhost:PORT"
    assert " at " in line, line + proc.stdout.read() if proc.poll() is not None else line
    return proc, line.split(" at ")[1].split()[0]


@pytest.fixture(scope="module")
def dispatcher():
    procs = []
    try:
        proc, target = _start("dispatcher", "--port=0")
        procs.append(proc)
        for _ in range(2):
            procs.append(_start("worker", f"--dispatcher={target.removeprefix('grpc://')}",
                                "--worker_address=localhost")[0])
        yield target
    finally:
        for p in procs:  # only the processes this fixture started
            p.kill()
            p.wait()


def _fingerprints(ds):
    return Counter((int(y), float(np.asarray(x, np.float64).sum())) for x, y in ds)


@pytest.mark.e2e
def test_two_workers_give_each_example_once_per_pass(dispatcher):
    """distributed_epoch: the dispatcher splits one pass between the workers; every example
    arrives once (in parallel_epochs mode each worker would send all of them: twice)."""
    src = SyntheticSource(size=32, video_frames=12, videos_per_class=(3, 2, 2))
    spec = ClipSpec(num_frames=4, image_size=(32, 32), test_num_frames=4, test_short_side=None)
    local = src.dataset("test", training=False, spec=spec, seed=0)
    remote = service.distribute(local, dispatcher)
    want, got = _fingerprints(local), _fingerprints(remote)
    assert sum(want.values()) == src.info.num_videos["test"] > 4
    assert got == want


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Prepared records of 6 videos, each one flat colour (its id survives any crop)."""
    videos = [(np.full((10, 40, 48, 3), 20 * i + 10, np.uint8), None, i % 2) for i in range(6)]
    return write_prepared(tmp_path_factory.mktemp("records"), videos, flow=False)


def test_packed_training_clips_cross_the_service_once_per_pass(dispatcher, records):
    """Training clips travel packed (uint8 windows, a quarter of float's bytes and less) and
    each video's clip arrives once per pass: one pass of training draws, in stored order."""
    spec = ClipSpec(num_frames=3, stride_range=(1, 2), image_size=(24, 24))
    src = RecordSource(records, shuffle_buffer=1)

    def train_draws(x, seed, spec, training):
        return src._sample(x, seed, spec, True)

    local = src.clips("train", train_draws, training=False, spec=spec, seed=0).padded_batch(2)
    remote = service.distribute(local, dispatcher)
    assert remote.element_spec[0][packed.PACKED]["rgb"].dtype.name == "uint8"

    def videos(ds):
        out = Counter()
        for x, y in ds:
            clips = packed.unpack(x).numpy()
            for clip, label in zip(clips, y.numpy()):
                assert clip.min() == clip.max()  # one flat video per clip
                out[(int(label), int(round(clip.min())))] += 1
        return out

    want, got = videos(local), videos(remote)
    assert sum(want.values()) == 6 and set(want.values()) == {1}
    assert got == want


@pytest.mark.parametrize("strategy", [pytest.param("default", marks=pytest.mark.e2e),
                                      pytest.param("mirrored", marks=pytest.mark.slow)])
def test_training_through_the_service(dispatcher, records, tmp_path, strategy):
    # prepared records: packed clips cross the service and are unpacked in the train step
    extra = ["--logical_cpus=2"] if strategy == "mirrored" else []
    code, out = finish(cli("--model=tresnet_small", f"--model_dir={tmp_path}", "--epochs=2",
                           "--steps=3", f"--strategy={strategy}", *extra, "--noevaluate",
                           f"--data={records}", "--set=dataset_options={}",
                           f"--data_service={dispatcher}"))
    assert code == 0, out
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    info = read_run_info(tmp_path)
    assert info.config["num_replicas_in_sync"] == (2 if strategy == "mirrored" else 1)
    # 3 steps of the global batch per epoch, through the service
    batch = int(TINY["batch_size"])
    assert "3/3" in out and info.config["batch_size"] == batch


def test_unreachable_dispatcher_is_one_line(tmp_path, capsys, monkeypatch, absl_main):
    from tfzoo import train

    # The probe retries for PROBE_SECONDS (a dispatcher may be starting); nobody starts here.
    monkeypatch.setattr(service, "PROBE_SECONDS", 0.5)
    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = absl_main(train, ["--model=tresnet_small", f"--model_dir={tmp_path}",
                             f"--data_service=grpc://127.0.0.1:{port}"], "python -m tfzoo.train")
    captured = capsys.readouterr()
    out = captured.out + captured.err
    lines = [line for line in out.splitlines() if "error" in line]
    assert code == 2 and "Traceback" not in out, out
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "not reachable" in lines[0]
    assert not (tmp_path / "config.json").exists()
    # the worker program: the same line, before it serves anything
    rc = service.main(["worker", f"--dispatcher=127.0.0.1:{port}", "--port=0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and f"127.0.0.1:{port}" in err
    assert service.main(["dispatch"]) == 2 and "'dispatch'" in capsys.readouterr().err


@pytest.mark.slow
def test_multi_worker_training_through_the_service(dispatcher, tmp_path):
    """Two trainer processes (MultiWorkerMirroredStrategy) consume one service job."""
    import json

    from _runs import free_port

    hosts = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        procs.append(cli("--model=tresnet_small", f"--model_dir={tmp_path}", "--epochs=1",
                         "--steps=2", "--strategy=multi_worker", "--noevaluate",
                         f"--data_service={dispatcher}",
                         env={"TF_CONFIG": json.dumps(tf_config)}))
    for code, out in [finish(p) for p in procs]:
        assert code == 0, out
    assert read_run_info(tmp_path).config["num_replicas_in_sync"] == 2
