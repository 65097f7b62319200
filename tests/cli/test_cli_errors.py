"""Issue 11: every CLI answers a wrong argument with one clear line, never a traceback.

Each row is (arguments, the bad value the message must name). Every row must exit non-zero,
print no `Traceback`, and name the value. The rows are rejected before any model is built or
traced (or any server is contacted), so the table is cheap: argparse CLIs and the absl CLIs whose
modules import no TensorFlow run in this process (`main(argv)`, `absl_main`), the other absl CLIs
run their whole table in one subprocess each (tests/_cli_driver.py), and three rows also run as
real `python -m` processes.
"""

import importlib
import json
import os
import subprocess
import sys

import pytest

import tfzoo
from tfzoo.rundir import RunInfo, save_model, write_run_info
from _paths import BIKES, REPO



@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "a_file").write_text("x")
    (root / "other").mkdir()
    (root / "other" / "notes.md").write_text("x")
    (root / "videos" / "a").mkdir(parents=True)
    (root / "videos" / "a" / "v.mp4").write_bytes(b"")
    # A model directory whose model.keras is missing (training did not finish).
    write_run_info(root / "run", RunInfo(model="tresnet_small", model_config={},
                                         class_names=["static", "slow", "fast", "stop_and_go",
                                                      "accelerate", "decelerate"],
                                         num_frames=4, image_size=(32, 32),
                                         config={"dataset_options": {"size": 32}}))
    # A finished run of a tiny model, and a video cut short (its header only).
    model = tfzoo.create_model("tresnet_small", num_classes=2, blocks=(1, 1, 1, 1), width=8)
    (root / "model_run").mkdir()
    save_model(model, root / "model_run")
    write_run_info(root / "model_run", RunInfo(model="tresnet_small",
                                               model_config=model.get_config(),
                                               class_names=["a", "b"], num_frames=4,
                                               image_size=(32, 32)))
    (root / "corrupt.mp4").write_bytes(BIKES.read_bytes()[:20000])
    return root


def _check(rows, results):
    for (argv, named), res in zip(rows, results):
        code, err = res["code"], res["stderr"]
        assert code not in (0, None), (argv, err)
        assert "Traceback" not in err, (argv, err)
        assert named in err, (argv, named, err)


def _absl_table(module, prog, rows, cwd):
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "_cli_driver.py"), module, prog,
                           json.dumps([argv for argv, _ in rows])],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert "@@RESULTS@@" in proc.stdout, proc.stderr[-3000:]
    results = json.loads(proc.stdout.split("@@RESULTS@@")[1])
    _check(rows, results)
    return results


def _in_process(main, rows, capsys):
    results = []
    for argv, _ in rows:
        capsys.readouterr()
        printed = ""
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: usage line + "error: ...", exit 2
            code = e.code if isinstance(e.code, int) else 1
            if isinstance(e.code, str):  # sys.exit("message"): Python prints it on stderr
                printed = e.code + "\n"
        results.append({"code": code, "stderr": capsys.readouterr().err + printed})
    _check(rows, results)


def test_train_table(places, tmp_path):
    d = f"--model_dir={tmp_path / 'run'}"
    rows = [
        ([d, "--model=tresnet5O"], "tresnet5O"),
        ([d], "--model"),
        ([d, "--config=no_such_recipe"], "no_such_recipe"),
        ([d, "--model=tresnet_small", "--set=lerning_rate=0.1"], "lerning_rate"),
        ([d, "--model=tresnet_small", "--set=image_size=64"], "image_size"),
        ([d, "--model=tresnet_small", "--set=batch_size=1.5"], "1.5"),
        ([d, "--model=tresnet_small", "--epochs=0"], "epochs"),
        ([d, "--model=tresnet_small", "--set=optimizer=rmsprop"], "rmsprop"),
        ([d, "--model=tresnet_small", "--precision=float16"], "float16"),
        ([d, "--model=tresnet_small", "--set=model_overrides={'widht': 4}"], "widht"),
        ([d, "--model=tresnet_small", "--set=stride_range=(3,1)"], "stride_range"),
        ([d, "--model=tresnet_small", "--strategy=gpus"], "gpus"),
        ([d, "--model=tresnet_small", "--epochs=two"], "two"),
        ([d, "--model=tresnet_small", "--data=/no/such/prepared"], "/no/such/prepared"),
        ([d, "--model=tresnet_small", "--set=train_streams=('depth',)"], "depth"),
        ([d, "--model=tresnet_small", "--set=link_strides=(1,0)"], "link_strides"),
        ([d, "--model=stresnet50"], "stresnet_conjunction"),
        ([d, "--model=tresnet_small", "stray"], "stray"),
        ([d, "--model=tresnet_small", "--data_service=localhost"], "localhost"),
    ]
    _absl_table("tfzoo.train", "python -m tfzoo.train", rows, tmp_path)
    assert not (tmp_path / "run" / "config.json").exists()  # nothing recorded for a bad run


def test_evaluate_table(places, tmp_path):
    rows = [
        ([], "--model_dir"),
        ([f"--model_dir={places / 'nowhere'}"], "nowhere"),
        ([f"--model_dir={places / 'run'}", "--split=tset"], "tset"),
        ([f"--model_dir={places / 'run'}"], "model.keras"),
        ([f"--model_dir={places / 'run'}", "--flip=maybe"], "maybe"),
        ([f"--model_dir={places / 'run'}", f"--data={places / 'other'}"], "other"),
        ([f"--model_dir={places / 'run'}", "--splits=1,two"], "two"),
        ([f"--model_dir={places / 'run'}", "--splits=1,2"], "{split}"),
        ([f"--model_dir={places / 'run'}", "--link_strides=1,0"], "'0' is not a temporal stride"),
        ([f"--model_dir={places / 'model_run'}", "--link_strides=1,4"], "not a D&T model"),
    ]
    _absl_table("tfzoo.evaluate", "python -m tfzoo.evaluate", rows, tmp_path)


def test_detection_synthetic_table(places, tmp_path):
    rows = [
        ([], "--out"),
        ([f"--out={places / 'other'}"], "exists"),
        (["--out=x", "--variant=blurry"], "--variant=blurry"),
        (["--out=x", "--frames=0"], "--frames=0"),
        (["--out=x", "--val=-1"], "--val=-1"),
        (["--out=x", "--seed=one"], "one"),
    ]
    _absl_table("tfzoo.detection.synthetic", "python -m tfzoo.detection.synthetic", rows,
                tmp_path)
    assert not (tmp_path / "x").exists()


def test_export_table(places, tmp_path):
    out = f"--export_dir={tmp_path / 'models'}"
    rows = [
        ([out], "model_dir"),
        ([f"--model_dir={places / 'nowhere'}", out], "nowhere"),
        ([f"--model_dir={places / 'a_file'}", out], "a_file"),
        ([f"--model_dir={places / 'run'}", out], "model.keras"),
        ([f"--model_dir={places / 'run'}", out, "--in_graph_flow=farneback"], "farneback"),
        ([f"--model_dir={places / 'run'}", out, "--version=one"], "one"),
    ]
    _absl_table("export.__main__", "python -m export", rows, tmp_path)
    assert not (tmp_path / "models").exists()


def test_prepare_table(places, tmp_path, capsys):
    from tfzoo.data.prepare import main

    root = ["--root", str(places / "videos")]
    rows = [
        (["--dataset", "ucf11", *root, "--out", str(tmp_path / "o")], "ucf11"),
        (["--dataset", "folder", "--root", str(places / "nowhere"), "--out", str(tmp_path / "o")],
         "nowhere"),
        (["--dataset", "folder", *root, "--out", str(places / "a_file")], "a_file"),
        (["--dataset", "folder", *root, "--out", str(places / "other")], "other"),
        (["--dataset", "folder", *root, "--out", str(tmp_path / "o"), "--workers", "0"], "0"),
        (["--dataset", "folder", *root, "--out", str(tmp_path / "o"), "--flow", "farneback"],
         "farneback"),
        (["--dataset", "folder", *root, "--out", str(tmp_path / "o"), "--jpeg_quality", "101"],
         "101"),
        (["--dataset", "folder", *root, "--out", str(tmp_path / "o"), "--jpeg-quality", "0"],
         "0"),
        (["--dataset", "folder", *root], "--out"),
        (["--dataset", "folder", *root, "--out", str(tmp_path / "o"), "--videos_per_shard=x"],
         "x"),
        (["--dataset", "folder", *root, "--out", str(tmp_path / "o"),
          "--beam_pipeline_options=runner"], "runner"),
        (["--dataset", "ucf101", *root, "--out", str(tmp_path / "o")], "classInd.txt"),
    ]
    _in_process(main, rows, capsys)


def test_data_service_table(capsys):
    from tfzoo.data.service import main

    rows = [
        ([], "dispatcher"),
        (["dispatch"], "dispatch"),
        (["worker"], "--dispatcher"),
        (["worker", "--dispatcher=nohost"], "nohost"),
        (["dispatcher", "--port=70000"], "70000"),
        (["dispatcher", "--dispatcher=localhost:1"], "--dispatcher"),
        (["worker", "--dispatcher=localhost:1", "--work_dir=/tmp"], "--work_dir"),
    ]
    _in_process(main, rows, capsys)


def test_flow_table(places, tmp_path, capsys, bikes_path, absl_main):
    import tfzoo.flow.__main__ as cli

    def main(argv):
        return absl_main(cli, argv, "python -m tfzoo.flow")

    out = ["--out", str(tmp_path / "f.npz")]
    rows = [
        (["--video", str(places / "nowhere.mp4"), *out], "nowhere.mp4"),
        (["--video", str(places / "videos" / "a" / "v.mp4"), *out], "v.mp4"),
        (["--video", str(bikes_path), *out, "--resize", "32"], "32"),
        (["--video", str(bikes_path), *out, "--chunk", "0"], "--chunk"),
        (["--video", str(bikes_path), *out, "--format", "avi"], "avi"),
        (["--video", str(bikes_path), "--out", str(places / "a_file" / "f.npz")], "a_file"),
        (["--video", str(bikes_path), *out, "--iterations", "many"], "many"),
    ]
    _in_process(main, rows, capsys)
    assert not list(tmp_path.iterdir())


def test_bench_table(capsys, absl_main):
    from tfzoo.bench import cli

    def main(argv):
        if argv[0] in cli.DISPATCH:
            return cli.dispatch(argv[0], argv[1:])
        return absl_main(cli, argv, "python -m tfzoo.bench")

    rows = [
        (["--model=resnet5O"], "resnet5O"),
        (["--model=resnet_small", "--precision=float16"], "float16"),
        (["--model=resnet_small", "--override=widht=8"], "widht"),
        (["--model=resnet_small", "--frames=0"], "--frames"),
        (["--model=rfcn", "--size=600by1000"], "600by1000"),
        (["--model=rfcn", "--size=0x1000"], "--size"),
        (["--model=resnet_small", "--jit=maybe"], "maybe"),
        (["--model=resnet_small", "--compare_depth=34"], "34"),
        (["--flow", "--model=resnet50"], "--flow"),
    ]
    from absl import flags

    before = set(flags.FLAGS)
    try:
        _in_process(main, rows, capsys)
    finally:  # the --flow row defined the flow bench's flags
        flags.FLAGS.unparse_flags()
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)


def test_detect_and_detection_bench_tables(places, tmp_path, capsys):
    from tfzoo.detect import main as detect
    from tfzoo.detection.bench import main as bench

    out = f"--out={tmp_path / 'o.mp4'}"
    video = f"--video={places / 'videos' / 'a' / 'v.mp4'}"
    rows = [
        ([video, out], "--model_dir"),
        ([f"--model_dir={places / 'run'}", f"--saved_model={places}", video, out], "not both"),
        ([f"--saved_model={places}", out], "--video"),
        ([f"--saved_model={places}", video, out, "--stride=0"], "--stride=0"),
        ([f"--saved_model={places}", video, out, "--stride=two"], "two"),
        ([f"--saved_model={places}", video, out, "--batch_size=0"], "--batch_size=0"),
        ([f"--saved_model={places}", video, out, "--history=4"], "--history=4"),
        ([f"--saved_model={places}", video, out, "--online", "--history=x"], "--history=x"),
        ([f"--saved_model={places}", video, out, "--min_scor=0.2"], "min_scor"),
        ([f"--saved_model={places}", video, out, "stray"], "stray"),
    ]
    _in_process(detect, rows, capsys)
    rows = [(["--what=linkin"], "linkin"), (["--repeats=0"], "--repeats=0"),
            (["--repeats=x"], "x"), (["--wat=linking"], "wat")]
    _in_process(bench, rows, capsys)


def test_serving_client_table(places, tmp_path, capsys, bikes_path):
    from serving.client import main

    common = ["--url", "http://127.0.0.1:9", "--model", "m", "--retries", "0"]
    rows = [
        ([*common, "--video", str(places / "nowhere.mp4")], "nowhere.mp4"),
        ([*common, "--video", str(places / "videos" / "a" / "v.mp4")], "v.mp4"),
        ([*common, "--video", str(bikes_path), "--frames", "png"], "png"),
        ([*common, "--video", str(bikes_path), "--timeout", "0"], "--timeout=0"),
        ([*common, "--video", str(bikes_path), "--num_frames", "many"], "many"),
        ([*common, "--video", str(bikes_path), "--grpc", "localhost:8500"], "--grpc"),
        ([*common, "--video", str(bikes_path), "--num_frames", "2", "--short_side", "16",
          "--flow", str(places / "no_flow.npy")], "no_flow.npy"),
    ]
    _in_process(main, rows, capsys)


@pytest.mark.parametrize("cmd,named", [
    (["-m", "tfzoo.flow", "--video", "/no/such/clip.mp4", "--out", "x.npz"], "clip.mp4"),
    (["-m", "tfzoo.train", "--model=tresnet_small", "--set=image_size=64"],
     "--set 'image_size=(64,64)'"),  # the hint is safe to paste into bash
    # A real model and a corrupt video: TensorFlow is imported and its devices initialised
    # before the error, which is when its C++ start-up lines (oneDNN, CUDA probing) appear.
    (["-m", "tfzoo.predict", "--noprogress", "--model_dir={model_run}",
      "--video={places}/corrupt.mp4"], "corrupt.mp4"),
])
@pytest.mark.e2e
def test_real_processes(cmd, named, places, tmp_path):
    cmd = [c.format(places=places, model_run=places / "model_run") for c in cmd]
    # TF_CPP_MIN_LOG_LEVEL unset, as in a user's shell (conftest sets it for this process).
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, *cmd], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**env, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr and "Traceback" not in proc.stderr
    # Exactly one line: ours, without TensorFlow's C++ start-up log before it.
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "error: " in lines[0] and named in lines[0], proc.stderr
    # Issue 11 item 7: a bad value leaves nothing behind (no runs/NAME/config.json, no output).
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("module,flag", [
    ("tfzoo.flow", "--max_frames"),
    ("tfzoo.flow.train", "--max_scales"),
    ("tfzoo.flow.tvl1_bench", "--accuracy_size"),
    ("tfzoo.experiments.conjunction", "--verbose"),
])
def test_programs_answer_help_alike(module, flag, tmp_path):
    """Every program is an absl program: `--help` prints the module's description and its own
    flags, spelled with underscores, on stdout and exits (absl's status 1) before any work."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    program = importlib.import_module(module if module != "tfzoo.flow" else "tfzoo.flow.__main__")
    for help_flag in ("--help", "--helpfull"):
        proc = subprocess.run([sys.executable, "-m", module, help_flag], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert flag + ":" in proc.stdout or flag + "=" in proc.stdout, proc.stdout
        assert flag.replace("_", "-") + ":" not in proc.stdout or "_" not in flag
        assert program.__doc__.strip().splitlines()[0] in proc.stdout
    assert not list(tmp_path.iterdir())
