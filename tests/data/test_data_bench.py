"""`python -m tfzoo.bench --data` (a table, JSON with --json: issue 24 item 15) and `--input`
(the training input pipeline next to its decode floor and the model: issue 22 section 3)."""

import json

import pytest

from _data_fixtures import bikes_frames, make_folder
from tfzoo.bench.cli import dispatch
from tfzoo.data import prepare as prep
from _paths import BIKES


def bench_main(args):
    """`python -m tfzoo.bench --data|--input ...` in this process."""
    return dispatch(args[0], args[1:])


def test_data_bench_prints_a_table_and_json_on_request(capsys):
    args = ["--data", "--copies=1", "--clips=2", "--no_model"]
    assert bench_main(args) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("Data throughput") and lines[1].startswith("| stage")
    assert lines[3].startswith("| prepare") and "frames/s" in lines[3]
    assert lines[4].startswith("| reader") and "clips/s" in lines[4]
    assert "{" not in out
    assert bench_main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["prepared_frames"] == 250 and res["reader_clips_per_s"] > 0  # bikes.mp4


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):

    root = tmp_path_factory.mktemp("inp")
    make_folder(root / "f", bikes_frames(BIKES, short_side=32, num=60), per_class=(3, 3))
    prep.prepare("folder", root / "f", root / "out", short_side=32, flow="opencv",
                 videos_per_shard=2, progress=False)
    return root / "out"


TINY = ["--set=image_size=(32, 32)", "--set=num_frames=2", "--set=stride_range=(1, 2)",
        "--set=model_overrides={'blocks': (2, 2, 2, 2), 'width': 4}"]


# make test-e2e leaves out the service (3 processes importing TensorFlow) and the model
# (FLOP counting of the training graph); `-m slow` runs the whole report.
@pytest.mark.parametrize("full", [pytest.param(False, marks=pytest.mark.e2e),
                                  pytest.param(True, marks=pytest.mark.slow)])
def test_input_bench_reports_pipeline_floor_and_model(prepared, capsys, full):
    from tfzoo.data.input_bench import MIN_SECONDS, format_report

    args = ["--input", "--config=stresnet50_ucf101", f"--data={prepared}", "--clips=4",
            "--batch=2", "--accelerator_tflops=50", "--set=train_split=train",
            "--set=weights=None", *TINY, *([] if full else ["--noservice", "--nomodel"])]
    assert bench_main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["clip"] == {"frames": 2, "size": [32, 32], "streams": ["rgb", "flow"],
                           "flow_stack": 10}
    for key in ("floor", "local") + (("service_1", "service_2") if full else ()):
        r = res[key]
        # at least --clips clips and MIN_SECONDS, whole batches: never a window too short to
        # see a clock tick (the floor once timed 0 on a loaded machine)
        assert r["clips"] >= 4 and r["clips"] % 2 == 0, key
        assert r["clips"] / r["clips_per_s"] >= MIN_SECONDS, key
        assert r["clips_per_s"] > 0 and r["cpu_ms_per_clip"] > 0, key
    assert res["local_to_floor_per_core"] == pytest.approx(
        res["floor"]["cpu_ms_per_clip"] / res["local"]["cpu_ms_per_clip"])
    # the model sees 2 chunks of 32 x 32 x (3 + 20) float32; the pipeline sends uint8 windows
    u = res["unpack"]
    assert u["float_bytes_per_clip"] == 2 * 32 * 32 * 23 * 4
    assert 0 < u["packed_bytes_per_clip"] < u["float_bytes_per_clip"] / 2
    assert u["cpu_ms_per_clip"] > 0
    if full:
        m = res["model"]
        assert m["accelerator_tflops"] == 50 and m["train_gflops_per_clip"] > 0
        assert m["accelerator_clips_per_s"] == pytest.approx(50e3 / m["train_gflops_per_clip"])
        assert m["cores_to_feed_accelerator"] == pytest.approx(
            m["accelerator_clips_per_s"] * res["local"]["cpu_ms_per_clip"] / 1e3)
    table = format_report(res)
    assert "| decode floor" in table and "| local" in table and "goal >= 0.7" in table
    assert "unpacking it in the train step costs" in table
    assert ("service, 2 workers" in table) == full and ("accelerator at 50" in table) == full
