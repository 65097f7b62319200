"""evaluate_vid on cases whose APs are worked out by hand below."""

import math

import pytest

from tfzoo.detection import evaluate_vid


def test_vid_map_hand_computed():
    ann = {
        1: [(0, 0, 0, 9, 9), (1, 50, 50, 149, 149)],  # A (10x10), D (100x100)
        2: [(0, 0, 0, 9, 9), (0, 20, 20, 29, 29)],  # B, C (10x10)
    }
    dets = [
        (1, 0, 0.9, 0, 0, 9, 9),  # A, IoU 1 -> TP
        (1, 0, 0.8, 0, 0, 9, 9),  # A already found -> FP
        (2, 0, 0.7, 3, 0, 12, 9),  # B: 70 / 130 = 0.54 -> TP
        (2, 0, 0.6, 25, 20, 34, 29),  # C: 50 / 150 = 0.33 >= 0.25, the 10x10 threshold -> TP
        (1, 1, 0.99, 50, 50, 98, 149),  # D: 4900 / 10000 = 0.49 < 0.5 (large object) -> FP
        (1, 1, 0.95, 50, 50, 129, 149),  # D: 0.8 -> TP
        (2, 1, 0.5, 50, 50, 149, 149),  # no class-1 object in frame 2 -> FP
        (7, 1, 0.4, 0, 0, 9, 9),  # a frame without annotations: dropped
    ]
    # class 0: TP FP TP TP of 3 -> recall 1/3 1/3 2/3 1, precision 1 1/2 2/3 3/4; envelope
    #   1, 3/4, 3/4 on the recall steps -> AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6
    # class 1: FP TP FP of 1 -> recall 0 1 1, precision 0 1/2 1/3 -> AP = 1 * 1/2
    r = evaluate_vid(dets, ann)
    assert r["AP"][0] == pytest.approx(5 / 6)
    assert r["AP"][1] == pytest.approx(0.5)
    assert r["mAP"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert r["num_gt"] == {0: 3, 1: 1} and r["ignored_detections"] == 1
    assert r["recall"] == {0: 1.0, 1: 1.0}
    assert "mAP_slow" not in r  # no track ids


def test_vid_map_by_motion_speed_hand_computed():
    ann = {
        ("v", 1): [(0, 0, 0, 9, 9, 1), (0, 20, 20, 29, 29, 2), (0, 40, 40, 139, 139, 3)],
        ("v", 2): [(0, 0, 0, 9, 9, 1), (0, 23, 20, 32, 29, 2), (0, 50, 40, 149, 139, 3)],
    }
    # motion IoU: track 1 IoU 1 -> slow; track 2 70/130 = 0.54 -> fast;
    # track 3 9000/11000 = 0.82 -> medium
    dets = [
        (("v", 2), 0, 0.95, 200, 200, 209, 209),  # FP
        (("v", 1), 0, 0.9, 0, 0, 9, 9),  # track 1
        (("v", 1), 0, 0.8, 20, 20, 29, 29),  # track 2
        (("v", 2), 0, 0.7, 0, 0, 9, 9),  # track 1
        (("v", 2), 0, 0.6, 50, 40, 149, 139),  # track 3
    ]
    r = evaluate_vid(dets, ann)
    # all: FP TP TP TP TP of 6 -> precision envelope 4/5 up to recall 4/6 -> AP = 8/15
    assert r["mAP"] == pytest.approx(8 / 15)
    # slow (track 1, 2 boxes): FP TP (ign) TP (ign) -> recall 0 1/2 1, precision 0 1/2 2/3
    #   -> AP = 1 * 2/3
    assert r["mAP_slow"] == pytest.approx(2 / 3)
    # medium (track 3): FP (ign ign ign) TP -> recall 1/2 at precision 1/2 -> AP = 1/4
    assert r["mAP_medium"] == pytest.approx(0.25)
    # fast (track 2): FP (ign) TP -> AP = 1/2 * 1/2
    assert r["mAP_fast"] == pytest.approx(0.25)
    assert r["num_gt_slow"] == {0: 2} and r["num_gt_fast"] == {0: 2}


def test_vid_eval_bad_input():
    with pytest.raises(ValueError, match="expected \\(frame_id, class_index, score"):
        evaluate_vid([(0, 0, 0.5, 1, 2)], {0: []})
    with pytest.raises(ValueError, match="expected \\(class_index, x1"):
        evaluate_vid([], {0: [(0, 1, 2)]})
    with pytest.raises(ValueError, match="frame id 'a'"):
        evaluate_vid([], {"a": [(0, 1, 2, 3, 4, 7)]})


def test_vid_map_on_a_subset_ignores_the_other_objects():
    """`subsets` (e.g. the occluded objects) scores only the listed objects: detections that
    find the others are neither true nor false positives, as for the motion speeds."""
    ann = {0: [(0, 0, 0, 9, 9), (0, 40, 40, 59, 59)], 1: [(0, 0, 0, 9, 9)]}
    occluded = {(0, 1), (1, 0)}  # the second object of frame 0, the object of frame 1
    dets = [(0, 0, 0.9, 0, 0, 9, 9),  # finds an unlisted object: ignored
            (0, 0, 0.8, 70, 70, 89, 89),  # nothing: FP
            (0, 0, 0.7, 40, 40, 59, 59),  # TP
            (1, 0, 0.6, 0, 0, 9, 9)]  # TP
    # FP TP TP of 2 -> recall 0 1/2 1, precision 0 1/2 2/3 -> AP = 1/2 * 2/3 + 1/2 * 2/3
    r = evaluate_vid(dets, ann, subsets={"occluded": occluded})
    assert r["AP_occluded"][0] == pytest.approx(2 / 3)
    assert r["num_gt_occluded"] == {0: 2}
    # all three objects: TP FP TP TP of 3 -> 5/6 (as in the hand-computed case above)
    assert r["mAP"] == pytest.approx(5 / 6)
    assert math.isnan(evaluate_vid(dets, ann, subsets={"none": set()})["mAP_none"])
    with pytest.raises(ValueError, match="'fast' is taken"):
        evaluate_vid(dets, ann, subsets={"fast": set()})


def test_track_consistency_hand_computed():
    from tfzoo.detection import track_consistency

    v = "vid"
    ann = {(v, 0): [(0, 0, 0, 9, 9, 1), (1, 50, 0, 69, 19, 2), (0, 80, 0, 89, 9, 3)],
           (v, 1): [(0, 2, 0, 11, 9, 1), (1, 52, 0, 71, 19, 2), (0, 80, 0, 89, 9, 3)],
           (v, 2): [(0, 4, 0, 13, 9, 1), (1, 54, 0, 73, 19, 2)],
           ("w", 0): [(0, 0, 0, 9, 9, 1), (0, 30, 0, 39, 9, -1)]}
    dets = [
        # track 1: tube 5 throughout; a lower-scoring tube-6 box on it in frame 1 does not count,
        # nor does the higher-scoring box of the wrong class
        ((v, 0), 0, 0.9, 0, 0, 9, 9, 5), ((v, 1), 0, 0.8, 2, 0, 11, 9, 5),
        ((v, 1), 0, 0.3, 2, 0, 11, 9, 6), ((v, 1), 1, 0.95, 2, 0, 11, 9, 7),
        ((v, 2), 0, 0.7, 5, 0, 14, 9, 5),
        # track 2: tube 8, then the best match in frame 2 is tube 9: switched
        ((v, 0), 1, 0.9, 50, 0, 69, 19, 8), ((v, 1), 1, 0.9, 52, 0, 71, 19, 8),
        ((v, 2), 1, 0.5, 54, 0, 73, 19, 8), ((v, 2), 1, 0.6, 55, 1, 74, 20, 9),
        # track 3: frame 1's box overlaps too little (IoU 4/16 < 0.5): lost
        ((v, 0), 0, 0.9, 80, 0, 89, 9, 10), ((v, 1), 0, 0.9, 86, 0, 95, 9, 10),
        # video w, track 1 (another track than vid's track 1) has one scored frame: counted
        # apart, not as consistent or lost; the object without a track id (-1) is not a track
        (("w", 0), 0, 0.9, 0, 0, 9, 9, -1), (("w", 0), 0, 0.9, 30, 0, 39, 9, 4),
    ]
    got = track_consistency(dets, ann)
    assert got == {"track_consistency": 1 / 3, "num_tracks": 3, "num_consistent": 1,
                   "num_switched": 1, "num_lost": 1, "num_single_frame": 1}
    # only the frames given count (a temporal stride): frames 0 and 1 -> track 2 is consistent
    first = {k: a for k, a in ann.items() if k[0] == v and k[1] < 2}
    assert track_consistency(dets, first)["num_consistent"] == 2
    assert track_consistency([], {})["track_consistency"] is None
    with pytest.raises(ValueError, match="tube_id"):
        track_consistency([d[:7] for d in dets], ann)


def test_motion_speed_of_a_strided_evaluation_comes_from_every_frame():
    """Scoring every tau-th frame (D&T at tau = 10), an object's speed is still that of its
    track in the frames around it: `motion_annotations` holds every frame."""
    every = {("v", t): [(0, 3 * t, 0, 3 * t + 9, 9, 1)] for t in range(3)}  # 3 px / frame
    scored = {("v", 0): every[("v", 0)], ("v", 2): every[("v", 2)]}
    dets = [(("v", 0), 0, 0.9, 0, 0, 9, 9), (("v", 2), 0, 0.8, 6, 0, 15, 9)]
    # frame 2's neighbours: IoU 4*10/(200-40) = 0.25 with frame 0 alone, (0.25 + 0.54) / 2
    # with frame 1 too; frame 0 is 0.54 and 0.25: fast either way
    alone = evaluate_vid(dets, scored, motion_window=2)
    whole = evaluate_vid(dets, scored, motion_window=2, motion_annotations=every)
    assert alone["num_gt_fast"] == whole["num_gt_fast"] == {0: 2}
    # a 1-frame window: alone, no neighbour is scored (no speed); with every frame, both fast
    assert math.isnan(evaluate_vid(dets, scored, motion_window=1)["mAP_fast"])
    got = evaluate_vid(dets, scored, motion_window=1, motion_annotations=every)
    assert got["num_gt_fast"] == {0: 2} and got["mAP_fast"] == 1.0
