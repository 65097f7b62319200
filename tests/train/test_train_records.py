"""`python -m tfzoo.train --data=PREPARED_DIR`: the paper's YUP++ recipe wiring on a prepared
fixture tree (cut from the real clip), trained for a few steps and evaluated with the protocol."""

import json
import subprocess
import sys

import pytest

from _data_fixtures import bikes_frames, make_yuppp
from tfzoo.data import prepare as prep
from tfzoo.rundir import read_run_info
from _paths import BIKES, REPO



@pytest.fixture(scope="module")
def prepared_yuppp(tmp_path_factory):

    root = tmp_path_factory.mktemp("yuppp")
    make_yuppp(root / "raw", bikes_frames(BIKES, short_side=32, num=40), per_camera=5)
    prep.prepare("yuppp", root / "raw", root / "prepared", short_side=32, videos_per_shard=8,
                 progress=False)
    return root / "prepared"


# The default suite runs the same recipe, prepared by the prepare CLI, through both stages with
# the same checks (stage models, stage 2 initialised from stage 1, class names, every test video
# once, the protocol): tests/train/test_recipes_e2e.py::test_config_runs_end_to_end_on_its_dataset_layout
# [tresnet50_yuppp].
@pytest.mark.slow
def test_train_and_evaluate_on_prepared_records(prepared_yuppp, tmp_path):
    # The paper's two-stage YUP++ config, shrunk: tiny ResNet/T-ResNet, 32 px, few frames.
    small = "{'blocks': (1, 1, 1, 1), 'width': 4}"
    stages = ("({'name': 'spatial', 'model': 'resnet50', 'model_overrides': " + small
              + ", 'num_frames': 1, 'stride_range': (1, 1), 'batch_size': 4},"
              " {'name': 'temporal', 'model': 'tresnet50', 'model_overrides': " + small
              + ", 'num_frames': 4, 'stride_range': (1, 2), 'batch_size': 2})")
    cmd = [sys.executable, "-m", "tfzoo.train", "--model=tresnet50",
           "--config=configs/tresnet50_yuppp.py", f"--data={prepared_yuppp}",
           f"--model_dir={tmp_path}", "--epochs=1", "--steps=2", "--verbose=2",
           f"--set=stages={stages}", "--set=image_size=(32, 32)",
           "--set=test_protocol=None", "--set=test_num_frames=4",
           "--set=test_short_side=32", "--set=weights=None"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "stages" / "1-spatial" / "model.keras").exists()
    assert (tmp_path / "stages" / "2-temporal" / "model.keras").exists()
    info = read_run_info(tmp_path)
    assert info.model == "tresnet50" and info.class_names == ["Beach", "Fountain"]
    assert "initialised" in out.stdout  # stage 2 started from stage 1's weights
    metrics = json.loads((tmp_path / "metrics.json").read_text())["test"]
    manifest = json.loads((prepared_yuppp / "manifest.json").read_text())
    assert metrics["num_videos"] == manifest["splits"]["test"] > 0  # every test video, once
    assert metrics["protocol"].startswith("4 equally spaced frames")
