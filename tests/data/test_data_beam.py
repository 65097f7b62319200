"""Issue 22 section 1: `prepare` as an Apache Beam pipeline (DirectRunner, 2 worker processes)
gives the local path's examples; resumes; reports bad videos; a one-line error without Beam."""

import json
import sys

import cv2
import numpy as np
import pytest

from _data_fixtures import bikes_frames, make_folder, make_ucf101
from tfzoo.data import prepare as prep
from tfzoo.data import records
from _paths import BIKES

BEAM = "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"


@pytest.fixture(scope="module")
def base():

    return bikes_frames(BIKES, short_side=32, num=60)


def _by_id(out):
    recs = {}
    for f in sorted(out.glob("shard-*.tfrecord")):
        for r in records.read_examples(f):
            recs[r["video_id"]] = r
    return recs


def _planes(r, key):
    return np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)
                     for b in r[key]])


def test_without_beam_one_line_names_the_extra(tmp_path, base, monkeypatch, capsys):
    make_folder(tmp_path / "f", base, per_class=(1, 1))
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # import apache_beam -> ImportError
    rc = prep.main(["--dataset=folder", f"--root={tmp_path / 'f'}", f"--out={tmp_path / 'o'}",
                    f"--beam_pipeline_options={BEAM}", "--no_progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "pip install 'tfzoo[beam]'" in err and "Apache Beam" in err
    assert not (tmp_path / "o").exists()  # refused before anything is written


# OpenCV's TV-L1 by default (tfzoo's XLA TV-L1 compiles for ~30 s in each of the 3 processes).
@pytest.mark.parametrize("flow", [pytest.param("opencv", marks=pytest.mark.e2e),
                                  pytest.param("tvl1", marks=pytest.mark.slow)])
def test_beam_prepare_matches_local_resumes_and_reports(tmp_path, base, flow):
    pytest.importorskip("apache_beam")
    make_ucf101(tmp_path / "ucf", base)
    # an unreadable video and one over the pixel cap, listed in the official split files
    bad = tmp_path / "ucf" / "UCF-101" / "YoYo" / "v_YoYo_g04_c01.avi"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"x" * 500)
    from _data_fixtures import write_mjpeg

    write_mjpeg(tmp_path / "ucf" / "UCF-101" / "YoYo" / "v_YoYo_g05_c01.avi", 4096, 8)
    lists = tmp_path / "ucf" / "ucfTrainTestlist"
    with open(lists / "trainlist01.txt", "a") as f:
        f.write("YoYo/v_YoYo_g04_c01.avi 3\r\nYoYo/v_YoYo_g05_c01.avi 3\r\n")
    kw = dict(short_side=24, flow=flow, videos_per_shard=2, max_frame_pixels=24 * 1000,
              progress=False)
    local = prep.prepare("ucf101", tmp_path / "ucf", tmp_path / "local", **kw)

    # The Beam run resumes a run killed after two shards: those are kept, the rest is done.
    out = tmp_path / "beam"
    real, calls = prep._write_shard, []

    def dying(out_, index, count, items, params):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(index)
        return real(out_, index, count, items, params)

    prep._write_shard = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            prep.prepare("ucf101", tmp_path / "ucf", out, **kw)
    finally:
        prep._write_shard = real
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tfrecord")}
    assert len(kept) == 2
    beam = prep.prepare("ucf101", tmp_path / "ucf", out, beam_pipeline_options=BEAM, **kw)
    for name, t in kept.items():
        assert (out / name).stat().st_mtime_ns == t
    summaries = [json.loads(p.read_text()) for p in out.glob("shard-*.json")]
    workers = {s["worker"] for s in summaries} - {s["worker"] for s in summaries
                                                   if s["shard"] in kept}
    assert len(workers) == 2, workers  # Beam's two worker processes wrote the other shards
    assert not list(out.glob(".*tmp"))

    # Same manifest (but for timing), same examples as the local path.
    for m in (local, beam):
        m.pop("seconds_this_run")
        m.pop("shards")
    assert beam == local
    reasons = {s["video_id"]: s["reason"] for s in beam["skipped"]}
    assert set(reasons) == {"YoYo/v_YoYo_g04_c01", "YoYo/v_YoYo_g05_c01"}
    assert "max_frame_pixels" in reasons["YoYo/v_YoYo_g05_c01"]
    a, b = _by_id(tmp_path / "local"), _by_id(out)
    assert sorted(a) == sorted(b) and len(a) == 9
    for vid in a:
        ra, rb = a[vid], b[vid]
        for k in ("label", "splits", "num_frames", "height", "width", "attrs"):
            assert ra[k] == rb[k], (vid, k)
        np.testing.assert_array_equal(_planes(ra, "frames"), _planes(rb, "frames"))
        for k in ("flow_u", "flow_v"):
            diff = np.abs(_planes(ra, k).astype(int) - _planes(rb, k).astype(int))
            assert diff.max() <= 1, (vid, k, diff.max())


def test_beam_options_are_checked_before_any_work(tmp_path):
    pytest.importorskip("apache_beam")
    from tfzoo.data.base import DataError

    for text, named in (("runner=DirectRunner,direct_num_wrokers=2", "direct_num_wrokers"),
                        ("DirectRunner", "DirectRunner")):
        with pytest.raises(DataError, match=named):
            prep.prepare("folder", tmp_path / "nowhere", tmp_path / "o",
                         beam_pipeline_options=text)
    assert not (tmp_path / "o").exists()
