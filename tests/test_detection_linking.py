"""link_tubes against a brute-force enumeration of every path (eq. 8.5-8.7)."""

import itertools
import math

import numpy as np
import pytest

from tfzoo.detection import link_tubes


def iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    area = lambda x: (x[2] - x[0] + 1) * (x[3] - x[1] + 1)  # noqa: E731
    return iw * ih / (area(a) + area(b) - iw * ih)


def brute_force(dets, tracks, alpha=0.5, thr=0.5):
    frames = len(dets)
    rescored = [np.array(d["scores"], float) for d in dets]
    tubes = []

    def edge(t, i, j):
        psi = any(iou(m[:4], dets[t]["boxes"][i]) > thr
                  and iou(m[4:], dets[t + 1]["boxes"][j]) > thr for m in tracks[t])
        return dets[t]["scores"][i] + dets[t + 1]["scores"][j] + float(psi)

    for c in sorted({int(c) for d in dets for c in d["classes"]}):
        alive = [{i for i, k in enumerate(d["classes"]) if k == c} for d in dets]
        while all(alive):
            best, best_path = -np.inf, None
            for path in itertools.product(*[sorted(a) for a in alive]):
                if frames == 1:
                    score = dets[0]["scores"][path[0]]
                else:
                    score = sum(edge(t, path[t], path[t + 1]) for t in range(frames - 1))
                if score > best:
                    best, best_path = score, path
            tubes.append({"class": c, "indices": list(best_path)})
            for t, i in enumerate(best_path):
                alive[t].discard(i)
            s = np.array([dets[t]["scores"][i] for t, i in enumerate(best_path)])
            bonus = np.sort(s)[::-1][:math.ceil(alpha * frames)].mean()
            for t, i in enumerate(best_path):
                rescored[t][i] = s[t] + bonus
    return rescored, tubes


def random_case(rng, frames, classes, max_boxes):
    objects = rng.uniform(0, 60, (6, 2))
    dets, tracks = [], []
    for t in range(frames):
        n = rng.integers(1, max_boxes * classes + 1)
        centre = objects[rng.integers(0, 6, n)] + rng.normal(0, 2, (n, 2)) + t * 2
        size = rng.uniform(10, 20, (n, 1))
        dets.append({"boxes": np.concatenate([centre - size, centre + size], 1),
                     "scores": rng.uniform(size=n), "classes": rng.integers(0, classes, n)})
    for t in range(frames - 1):
        b = dets[t]["boxes"]
        m = np.concatenate([b, b + rng.normal(2, 2, b.shape)], 1)
        tracks.append(m[rng.uniform(size=len(m)) < 0.7])
    return dets, tracks


@pytest.mark.parametrize("seed", range(6))
def test_offline_linking_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    frames = [1, 2, 3, 4, 4, 5][seed]
    dets, tracks = random_case(rng, frames, classes=2, max_boxes=3)
    alpha = [0.5, 0.3, 1.0, 0.5, 0.25, 0.5][seed]
    got, tubes = link_tubes(dets, tracks, alpha=alpha)
    want, want_tubes = brute_force(dets, tracks, alpha=alpha)
    assert tubes == want_tubes
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_online_linking_is_the_prefix_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    dets, tracks = random_case(rng, 4, classes=2, max_boxes=2)
    got, tubes = link_tubes(dets, tracks, online=True)
    for t in range(4):
        want, _ = brute_force(dets[:t + 1], tracks[:t])
        np.testing.assert_allclose(got[t], want[t], rtol=1e-12)
    # causal: changing the last frame leaves the earlier scores as they were
    changed = [dict(d) for d in dets]
    changed[-1] = {**dets[-1], "scores": dets[-1]["scores"][::-1].copy()}
    again, _ = link_tubes(changed, tracks, online=True)
    for t in range(3):
        np.testing.assert_array_equal(again[t], got[t])
    # the tubes are the offline ones
    assert tubes == link_tubes(dets, tracks)[1]
    # a one-frame history only adds each box's own score (its single-frame tube)
    own, _ = link_tubes(dets, tracks, online=True, history=1)
    for t in range(4):
        assert np.all(own[t] >= dets[t]["scores"])


def test_linking_bad_input():
    d = {"boxes": np.zeros((1, 4)), "scores": np.ones(1), "classes": np.zeros(1)}
    with pytest.raises(ValueError, match="tracks has 3 entries for 2 frames"):
        link_tubes([d, d], [np.zeros((0, 8))] * 3)
    with pytest.raises(ValueError, match="expected \\(M, 8\\)"):
        link_tubes([d, d], [np.zeros((2, 4))])
    with pytest.raises(ValueError, match="1 boxes, 2 scores"):
        link_tubes([{**d, "scores": np.ones(2)}], [])
    with pytest.raises(ValueError, match="alpha must be in"):
        link_tubes([d], [], alpha=0)


@pytest.mark.parametrize("threshold,spread", [(0.5, 40), (0.7, 40), (0.3, 40), (0.5, 1e5)])
def test_tracklet_overlap_candidates_are_exact(threshold, spread):
    # the centre-in-extent grid must find every pair above the threshold (also when a few far
    # away boxes stretch the grid to its 256-cell cap)
    from tfzoo.detection.linking import _overlapping

    rng = np.random.default_rng(7)
    base = rng.uniform(0, 40, (300, 2)).round()
    base[:5] *= spread / 40
    base[5:10] -= spread  # boxes off the tracks' grid on the low side
    wh = rng.integers(1, 12, (300, 2))
    boxes = np.concatenate([base, base + wh - 1], 1)
    tracks = boxes[rng.permutation(300)] + rng.integers(-3, 4, (300, 4))
    tracks[:, 2:] = np.maximum(tracks[:, 2:], tracks[:, :2])
    alive = rng.uniform(size=300) < 0.9
    got = set(zip(*[a.tolist() for a in _overlapping(boxes, alive, tracks, threshold)]))
    want = {(i, m) for i in range(300) if alive[i] for m in range(300)
            if iou(boxes[i], tracks[m]) > threshold}
    assert got == want and len(want) > 20


@pytest.mark.parametrize("online,history", [(False, None), (True, None), (True, 3), (True, 1)])
def test_linking_matches_the_previous_numpy_implementation(online, history):
    # cases too large to enumerate: the compiled kernels against the previous numpy version
    # (dense Viterbi over every box pair), which the brute force checked the same way
    from tfzoo.detection import _linking_numpy
    from tfzoo.detection.dt_blocks_bench import random_video

    dets, tracks = random_video(12, 5, 9, seed=3)
    rng = np.random.default_rng(3)
    for d in dets:  # ragged: drop some boxes, so classes have different counts per frame
        keep = rng.uniform(size=len(d["scores"])) < 0.8
        d.update({k: v[keep] for k, v in d.items()})
    tracks = [m[rng.uniform(size=len(m)) < 0.8] for m in tracks]
    got, tubes = link_tubes(dets, tracks, online=online, history=history)
    want, want_tubes = _linking_numpy.link_tubes(dets, tracks, online=online, history=history)
    assert tubes == want_tubes and len(tubes) > 5
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def _ragged_video(frames, classes, boxes, seed):
    from tfzoo.detection.dt_blocks_bench import random_video

    dets, tracks = random_video(frames, classes, boxes, seed=seed)
    rng = np.random.default_rng(seed)
    for d in dets:  # some classes lose boxes, so the number of tubes changes over time
        keep = rng.uniform(size=len(d["scores"])) < 0.85
        d.update({k: v[keep] for k, v in d.items()})
    return dets, [m[rng.uniform(size=len(m)) < 0.8] for m in tracks]


@pytest.mark.parametrize("ring", [3, 64])
def test_online_full_history_reuse_is_exact(monkeypatch, ring):
    # Full-history online linking continues window [0, t-1]'s extraction into [0, t] (and
    # recomputes a round from frame 0 when a change is older than the `ring` frames it keeps;
    # 3 forces that often): it must give what linking every window from scratch gives (the
    # numpy reference, and the finite-history kernel with a history as long as the video)
    from tfzoo.detection import _linking_numpy, linking

    monkeypatch.setattr(linking, "_RING", ring)
    dets, tracks = _ragged_video(20, 3, 7, seed=5)
    got, tubes = link_tubes(dets, tracks, online=True)
    want, want_tubes = _linking_numpy.link_tubes(dets, tracks, online=True)
    assert tubes == want_tubes and len(tubes) > 5
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    video = linking._Video(*linking._check(dets, tracks), 0.5)
    arrays = (video.scores, video.alive, video.first, video.more, video.idx)
    full = linking._online_full(*arrays, 0.5, ring)
    windows = linking._online_window(*arrays, 20, 0.5)
    for a, b in zip(full[:3], windows):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_linking_matches_the_numpy_implementation_at_bench_size():
    # the bench's video (30 classes x 25 boxes, 100 frames): same tubes and scores
    from tfzoo.detection import _linking_numpy
    from tfzoo.detection.dt_blocks_bench import random_video

    dets, tracks = random_video(100, 30, 25, seed=1)
    for kw in ({}, {"online": True, "history": 8}, {"online": True}):
        got, tubes = link_tubes(dets, tracks, **kw)
        want, want_tubes = _linking_numpy.link_tubes(dets, tracks, **kw)
        assert tubes == want_tubes and len(tubes) == 750
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12)


@pytest.mark.slow
def test_online_history_cost_on_the_noisy_oracle():
    # What bounding the online history costs in frame mAP (docs/detection.md, Speed): the noisy
    # ground-truth oracle (a test oracle, not a model; tests/_detection_oracle.py) on 10
    # synthetic videos of 64 frames. `pytest -s -m slow -k history_cost` prints the table.
    from _detection_oracle import NoisyOracleDetector

    from tfzoo.detection import evaluate_vid
    from tfzoo.detection.inference import evaluation_rows, link_video
    from tfzoo.detection.synthetic import CLASSES, SyntheticDetectionConfig, render_video

    cfg = SyntheticDetectionConfig(height=128, width=192, frames=64, objects=(2, 3),
                                   speed=(0.3, 1.5))
    rng = np.random.default_rng(11)
    videos = [render_video(rng, cfg)[1] for _ in range(10)]
    truth = {(v, f): [(c, *box, track) for c, track, box, *_ in ann[f]]
             for v, ann in enumerate(videos) for f in range(len(ann))}

    def frame_map(**kw):
        rows = []
        for v, ann in enumerate(videos):
            oracle = NoisyOracleDetector(ann, CLASSES, seed=v, size=(cfg.height, cfg.width))
            dets = [oracle.detections(f)[0] for f in range(len(ann))]
            if kw:
                tracks = [oracle.tracks(f, f + 1) for f in range(len(ann) - 1)]
                out = link_video(dets, tracks, **kw)
            else:
                out = [{**d, "processed": True} for d in dets]
            rows += evaluation_rows(out, [(v, f) for f in range(len(ann))])
        return evaluate_vid(rows, truth)["mAP"]

    got = {"unlinked": frame_map(), "offline": frame_map(online=False)}
    for history in (None, 1, 4, 6, 8, 16):
        got[f"online, history {history or 'all'}"] = frame_map(online=True, history=history)
    print("\n".join(f"{k}: {v:.4f}" for k, v in got.items()))
    # a one-frame window only doubles each score: the ranking, hence the mAP, is unlinked's
    assert got["online, history 1"] == pytest.approx(got["unlinked"], abs=1e-12)
    assert got["online, history all"] > got["unlinked"] + 0.1
    assert abs(got["online, history 8"] - got["online, history all"]) < 0.005


def test_detect_cli_online_history(monkeypatch, capsys):
    # `tfzoo.detect --online` links the last ONLINE_HISTORY processed frames unless told a
    # number or 'all' (the full history); a bad value is one clear error before any work
    import tfzoo.detect as cli
    import tfzoo.detection.detector

    seen = []

    def fake_detect_video(detector, video, **kw):
        seen.append(kw["history"])
        raise ValueError("stop here")

    monkeypatch.setattr(tfzoo.detection.detector, "Detector", lambda path: object())
    monkeypatch.setattr(cli, "detect_video", fake_detect_video)
    base = ["--saved_model", "m", "--video", "v.mp4", "--out", "o.mp4"]
    for extra, want in (([], None), (["--online"], cli.ONLINE_HISTORY),
                        (["--online", "--history", "12"], 12),
                        (["--online", "--history", "all"], None)):
        assert cli.main(base + extra) == 2
        assert seen.pop() == want
    for bad in (["--online", "--history", "0"], ["--online", "--history", "x"],
                ["--history", "all"]):
        assert cli.main(base + bad) == 2 and not seen
        assert f"--history={bad[-1]}" in capsys.readouterr().err
