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
    """Every path of every class enumerated: over the frames with a box of the class (the
    others are left out, index -1), links scored p_i + p_j + psi, psi only between adjacent
    frames."""
    frames = len(dets)
    rescored = [np.array(d["scores"], float) for d in dets]
    tubes = []

    def edge(t, u, i, j):
        psi = u == t + 1 and any(iou(m[:4], dets[t]["boxes"][i]) > thr
                                 and iou(m[4:], dets[u]["boxes"][j]) > thr for m in tracks[t])
        return dets[t]["scores"][i] + dets[u]["scores"][j] + float(psi)

    for c in sorted({int(c) for d in dets for c in d["classes"]}):
        alive = [{i for i, k in enumerate(d["classes"]) if k == c} for d in dets]
        present = [t for t in range(frames) if alive[t]]
        while all(alive[t] for t in present):
            best, best_path = -np.inf, None
            for path in itertools.product(*[sorted(alive[t]) for t in present]):
                if len(present) == 1:
                    score = dets[present[0]]["scores"][path[0]]
                else:
                    score = sum(edge(present[q], present[q + 1], path[q], path[q + 1])
                                for q in range(len(present) - 1))
                if score > best:
                    best, best_path = score, path
            indices = [-1] * frames
            for t, i in zip(present, best_path):
                indices[t] = i
                alive[t].discard(i)
            tubes.append({"class": c, "indices": indices})
            s = np.array([dets[t]["scores"][i] for t, i in zip(present, best_path)])
            bonus = np.sort(s)[::-1][:math.ceil(alpha * len(s))].mean()
            for t, i in zip(present, best_path):
                rescored[t][i] = dets[t]["scores"][i] + bonus
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
    for a, b in zip(full[:4], windows):
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


# --------------------------------------------------------------------- frames without a box
# (issue 20, section 1): a frame where a class has no box is left out of that class's linking

A, B, FAR = [0, 0, 9, 9], [50, 50, 59, 59], [100, 0, 109, 9]


def _frame(boxes, scores, classes):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "scores": np.array(scores, float),
            "classes": np.array(classes, int)}


def _gap_video():
    """Class 1 at A and B in frames 0, 1, 3, 4, none in frame 2 (a class-2 box there);
    tracklets A -> A on (0, 1) and (3, 4), and on (1, 2) one from A to where A is at frame 3,
    which must not link frame 1 to frame 3 (no tracklet spans a gap)."""
    dets = [_frame([A, B], [0.9, 0.1], [1, 1]), _frame([A, B], [0.6, 0.5], [1, 1]),
            _frame([FAR], [0.3], [2]), _frame([B, A], [0.7, 0.2], [1, 1]),
            _frame([A, B], [0.3, 0.4], [1, 1])]
    tracks = [np.array([A + A], float), np.array([A + A], float), np.zeros((0, 8)),
              np.array([A + A], float)]
    return dets, tracks


def test_gap_in_the_middle_hand_computed():
    # paths over frames 0, 1, 3, 4 score s0 + 2 s1 + 2 s3 + s4 + psi(0,1) + psi(3,4):
    # A A (B) (B) = 0.9 + 1.2 + 1.4 + 0.4 + 1 = 4.9 beats A A A A = 4.8 (it would win with the
    # (1, 2) tracklet counted across the gap: 5.8); the rest, B B A A, is the second tube
    dets, tracks = _gap_video()
    rescored, tubes = link_tubes(dets, tracks)
    assert tubes == [{"class": 1, "indices": [0, 0, -1, 0, 1]},
                     {"class": 1, "indices": [1, 1, -1, 1, 0]},
                     {"class": 2, "indices": [-1, -1, 0, -1, -1]}]
    # + mean of the top ceil(0.5 * 4) = 2 of each tube's 4 boxes: (0.9 + 0.7) / 2, (0.5 + 0.3) / 2
    want = [[1.7, 0.5], [1.4, 0.9], [0.6], [1.5, 0.6], [0.7, 1.2]]
    for g, w in zip(rescored, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    # online: frame t rescored from the tubes of frames [0, t]; the last frame equals offline
    online, _ = link_tubes(dets, tracks, online=True)
    # t=3: A A B = 0.9 + 1.2 + 0.7 + 1 beats A A A; B3 + (0.9 + 0.7) / 2, A3 + (0.5 + 0.2) / 2
    want = [[1.8, 0.2], [1.5, 1.0], [0.6], [1.5, 0.55], [0.7, 1.2]]
    for g, w in zip(online, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    # history 2: frame 3's window [2, 3] has class 1 in frame 3 only (tubes by score); frame
    # 4's window [3, 4]: A A (0.2 + 0.3 + 1) beats B B (0.7 + 0.4)
    bounded, _ = link_tubes(dets, tracks, online=True, history=2)
    want = [[1.8, 0.2], [1.5, 1.0], [0.6], [1.4, 0.4], [0.6, 1.1]]
    for g, w in zip(bounded, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_class_entering_late_and_leaving_early():
    # class 0 in all 8 frames, class 1 only in frames 2..5 (one box each): class 1's tube
    # covers those frames, rescored by the mean of its top 2 of 4 scores
    s1 = {2: 0.2, 3: 0.8, 4: 0.6, 5: 0.4}
    dets = [_frame([A] + ([B] if t in s1 else []), [0.5] + ([s1[t]] if t in s1 else []),
                   [0] + ([1] if t in s1 else [])) for t in range(8)]
    tracks = [np.array([A + A, B + B], float) for _ in range(7)]
    rescored, tubes = link_tubes(dets, tracks)
    assert tubes == [{"class": 0, "indices": [0] * 8},
                     {"class": 1, "indices": [-1, -1, 1, 1, 1, 1, -1, -1]}]
    for t in range(8):
        want = [1.0] + ([s1[t] + 0.7] if t in s1 else [])
        np.testing.assert_allclose(rescored[t], want, rtol=1e-12)
    # online: frame t's class-1 score from its frames 2..t
    online, _ = link_tubes(dets, tracks, online=True)
    for t, bonus in ((2, 0.2), (3, 0.8), (4, 0.7), (5, 0.7)):
        np.testing.assert_allclose(online[t][1], s1[t] + bonus, rtol=1e-12)
    # the video's tube ids: class 1's tube only in its frames, interpolated only between them
    from tfzoo.detection.inference import link_video

    frames = link_video(dets, tracks, stride=2)
    has_1 = [f for f, d in enumerate(frames) if 1 in d["classes"].tolist()]
    assert has_1 == list(range(4, 11))
    assert {int(i) for d in frames for i in d["track_ids"][d["classes"] == 1]} == {1}


def test_two_objects_of_one_class_where_one_leaves():
    # class 3: objects A and B in frames 0..2, only A in frames 3, 4. As the authors'
    # make_tubes, extraction stops when a frame that had boxes of the class has none left: the
    # first tube takes the best path through every frame, and the other object gets no tube:
    # its boxes keep their score
    dets = [_frame([A, B], [0.3, 0.8], [3, 3]) for _ in range(3)] + \
           [_frame([A], [0.3], [3]) for _ in range(2)]
    tracks = [np.array([A + A], float)] * 4
    rescored, tubes = link_tubes(dets, tracks)
    # A A A A A: 0.3 * 8 + 4 = 6.4; B B B A A: 0.8 + 1.6 + 1.6 + 0.6 + 0.3 + 1 = 5.9
    assert tubes == [{"class": 3, "indices": [0, 0, 0, 0, 0]}]
    for t in range(5):
        want = [0.6] + ([0.8] if t < 3 else [])  # 0.3 + 0.3; B untouched
        np.testing.assert_allclose(rescored[t], want, rtol=1e-12)
    # without the tracklets B B B A A wins, and A's boxes of frames 0..2 keep their score
    rescored, tubes = link_tubes(dets, [np.zeros((0, 8))] * 4)
    assert tubes == [{"class": 3, "indices": [1, 1, 1, 0, 0]}]
    np.testing.assert_allclose(rescored[0], [0.3, 0.8 + 0.8], rtol=1e-12)
    np.testing.assert_allclose(rescored[4], [0.3 + 0.8], rtol=1e-12)


def _gappy_video(frames, classes, boxes, seed):
    """A ragged random video where classes vanish for runs of frames, enter late, leave early,
    and some frames have no box at all."""
    dets, tracks = _ragged_video(frames, classes, boxes, seed)
    rng = np.random.default_rng(seed + 1000)
    present = np.ones((frames, classes), bool)
    for c in range(classes):
        for _ in range(2):
            a = rng.integers(0, frames)
            present[a:a + rng.integers(1, 5), c] = False
    present[:rng.integers(0, 4), 0] = False  # class 0 enters late
    present[frames - rng.integers(1, 4):, 1 % classes] = False  # class 1 leaves early
    present[frames // 2] = False  # a frame with no box at all
    for t, d in enumerate(dets):
        keep = present[t, d["classes"]]
        d.update({k: v[keep] for k, v in d.items()})
    return dets, tracks


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("online,history,ring", [(False, None, 64), (True, None, 64),
                                                 (True, None, 3), (True, 4, 64), (True, 1, 64)])
def test_kernels_equal_the_numpy_reference_with_gaps(monkeypatch, seed, online, history, ring):
    from tfzoo.detection import _linking_numpy, linking

    monkeypatch.setattr(linking, "_RING", ring)
    dets, tracks = _gappy_video(24, 4, 6, seed)
    assert any(-1 in t["indices"] for t in _linking_numpy.link_tubes(dets, tracks)[1])
    got, tubes = link_tubes(dets, tracks, online=online, history=history)
    want, want_tubes = _linking_numpy.link_tubes(dets, tracks, online=online, history=history)
    assert tubes == want_tubes and len(tubes) > 4
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    if online and history is None:  # the last frame of the full history is the offline one
        offline, _ = link_tubes(dets, tracks)
        np.testing.assert_allclose(got[-1], offline[-1], rtol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_window_kernel_with_ties_and_several_tracked_predecessors(seed):
    # The extraction keeps only the Viterbi values and recomputes the path's predecessors when
    # backtracking, and a box with several tracked predecessors takes a separate pass: against
    # the numpy reference (dense Viterbi, stored argmax) where those choices are ties. Scores
    # are multiples of 1/4 and boxes repeated within a frame, so equal path values are common
    # and every sum is exact in both implementations; tracklets of a repeated box link it to
    # every copy at t+1, and classes vanish for runs of frames (gaps)
    from tfzoo.detection import _linking_numpy, linking

    dets, tracks = _gappy_video(16, 3, 5, seed)
    rng = np.random.default_rng(seed)
    for t, d in enumerate(dets):
        copies = rng.integers(0, len(d["scores"]), len(d["scores"]) // 3)
        d.update({k: np.concatenate([v, v[copies]]) for k, v in d.items()})
        d["scores"] = rng.integers(1, 4, len(d["scores"])) / 4
    for t in range(len(tracks)):  # a tracklet from every box at t (its copies included)
        b = dets[t]["boxes"]
        tracks[t] = np.concatenate([b, b + rng.normal(1, 0.5, b.shape)], 1)
    video = linking._Video(*linking._check(dets, tracks), 0.5)
    assert video.more[-1] > 10  # boxes with several tracked predecessors
    for kw in ({}, {"online": True, "history": 6}, {"online": True, "history": 2}):
        got, tubes = link_tubes(dets, tracks, **kw)
        want, want_tubes = _linking_numpy.link_tubes(dets, tracks, **kw)
        assert tubes == want_tubes and len(tubes) > 4
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_linking_refuses_bad_detections():
    from tfzoo.detection.linking import LinkingError
    from tfzoo.errors import TfzooError

    good = _frame([A, B], [0.5, 0.4], [0, 1])
    cases = [
        ({**good, "scores": np.array([0.5, np.nan])}, "detections\\[1\\]\\['scores'\\]\\[1\\] is nan"),
        ({**good, "scores": np.array([np.inf, 0.4])}, "detections\\[1\\]\\['scores'\\]\\[0\\] is inf"),
        ({**good, "boxes": np.array([A, [5, 0, 4, 9]], float)},
         "detections\\[1\\]\\['boxes'\\]\\[1\\] is \\[5.0, 0.0, 4.0, 9.0\\].*x2 >= x1"),
        ({**good, "boxes": np.array([[0, 9, 9, 0], B], float)}, "\\['boxes'\\]\\[0\\].*y2 >= y1"),
        ({**good, "classes": np.array([0, 2])},
         "detections\\[1\\]\\['classes'\\]\\[1\\] is 2: expected class ids in 0..1"),
        ({**good, "classes": np.array([-1, 0])}, "\\['classes'\\]\\[0\\] is -1"),
        ({**good, "classes": np.array([0.5, 0.0])}, "\\['classes'\\]\\[0\\] is 0.5"),
    ]
    for bad, match in cases:
        with pytest.raises(LinkingError, match=match):
            link_tubes([good, bad], [np.zeros((0, 8))], num_classes=2)
    with pytest.raises(TfzooError, match="tracks\\[0\\] has shape \\(1, 7\\)"):
        link_tubes([good, good], [np.zeros((1, 7))])
    with pytest.raises(TfzooError, match="tracks\\[1\\]\\[0\\] is \\[nan"):
        link_tubes([good] * 3, [np.zeros((0, 8)), np.full((1, 8), np.nan)])
    # no detection at all: no tube, scores unchanged (empty), online too
    empty = _frame([], [], [])
    for kw in ({}, {"online": True}, {"online": True, "history": 2}):
        rescored, tubes = link_tubes([empty] * 3, [np.zeros((0, 8))] * 2, **kw)
        assert tubes == [] and [len(s) for s in rescored] == [0, 0, 0]


def test_link_video_over_a_gap():
    # offline: tube ids skip the gap; with a stride, nothing is interpolated across the gap
    # (the tube has no box at processed frame 2, video frame 6); online: a box after the gap
    # continues the id of its window tube's box before it
    from tfzoo.detection.inference import link_video

    dets, tracks = _gap_video()
    frames = link_video(dets, tracks, stride=3)
    ids = [d["track_ids"][d["classes"] == 1].tolist() for d in frames]
    assert ids[0] == [0, 1] and ids[3] == [0, 1] and ids[9] == [0, 1] and ids[12] == [1, 0]
    assert ids[1] == ids[2] == [0, 1] and ids[10] == ids[11] == [0, 1]  # interpolated
    assert all(ids[f] == [] for f in range(4, 9))  # frames 4..8: across the gap
    np.testing.assert_allclose(frames[1]["boxes"][0], A)
    online = link_video(dets, tracks, online=True)
    ids = [d["track_ids"].tolist() for d in online]
    # t=3: the window tube A A B continues A's id; B B A continues B's
    assert ids[3] == [ids[1][0], ids[1][1]] and ids[2][0] not in ids[1] + ids[3]
    bounded = link_video(dets, tracks, online=True, history=2)
    ids = [d["track_ids"].tolist() for d in bounded]
    # frame 3's window [2, 3] holds no earlier box of class 1: new ids; frame 4 continues them
    assert not set(ids[3]) & set(ids[1]) and ids[4] == [ids[3][1], ids[3][0]]


@pytest.mark.parametrize("history", [None, 6])
def test_link_video_online_scores_are_link_tubes_without_the_offline_tubes(history):
    # link_video's online path skips the offline tubes (its ids follow the windows' links):
    # the same rescored frames as link_tubes, and the same ids as a run that computes them
    from tfzoo.detection import linking
    from tfzoo.detection.inference import _ids_online, link_video

    dets, tracks = _gappy_video(20, 3, 5, seed=4)
    want, _ = link_tubes(dets, tracks, online=True, history=history)
    out = link_video(dets, tracks, online=True, history=history)
    for f, s in zip(out, want):
        np.testing.assert_array_equal(f["scores"], s)
    rescored, tubes, links = linking._link(dets, tracks, 0.5, 0.5, True, history)
    assert tubes  # the default still returns them
    ids = _ids_online(links, [len(s) for s in rescored], history)
    for f, i in zip(out, ids):
        np.testing.assert_array_equal(f["track_ids"], i)
