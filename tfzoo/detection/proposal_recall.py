"""The RPN's recall over its proposals at several test scales, a program:

    python -m tfzoo.detection.proposal_recall --model_dir=RUN [--data=DIR] [--split=val] \\
        --scales=192 [--scales=96,144,192,288,384 ...]

(`python -m tfzoo.detection.proposals` runs it too.) See docs/detection.md, "Proposal layer".
"""

from __future__ import annotations

from absl import app, flags

from tfzoo.detection.dataset import read_detection_dataset
from tfzoo.detection.proposals import multiscale_proposals, proposal_recall
from tfzoo.detection.source import DetectionSource
from tfzoo.errors import TfzooError, report
from tfzoo.rundir import load_model, read_run_info


def main(argv):
    """`python -m tfzoo.detection.proposals --model_dir=RUN [--data=DIR] [--split=val]
    --scales=192 [--scales=96,144,192,288,384 ...]`: the RPN's recall at IoU 0.5 with its 300
    proposals per frame, at each scale set given (a comma list is one multi-scale set)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    prog = "python -m tfzoo.detection.proposals"
    try:
        if not f.model_dir:
            raise TfzooError("--model_dir is required: a detector run (python -m tfzoo.train)")
        sets = []
        for spec in f.scales:
            try:
                sets.append(tuple(int(v) for v in spec.split(",")))
            except ValueError:
                raise TfzooError(f"--scales={spec}: expected shorter sides in pixels, e.g. "
                                 "--scales=192 or --scales=96,144,192,288,384") from None
        if not sets or any(v < 16 for s in sets for v in s):
            raise TfzooError(f"--scales={f.scales}: expected shorter sides >= 16 pixels")

        info = read_run_info(f.model_dir)
        data = f.data or info.config.get("data_dir")
        model, _ = load_model(f.model_dir)
        if data is None:  # the embedded set the run trained on

            options = info.config.get("dataset_options", {}).get("synthetic", {})
            videos = DetectionSource(synthetic=options).videos(f.split)
        else:
            videos = read_detection_dataset(data, f.split)
        videos = list(videos)
    except TfzooError as e:
        return report(e, prog)
    for scales in sets:
        found = total = 0
        for video in videos:
            for start in range(0, len(video.frames), 4):
                boxes, _, counts = multiscale_proposals(model, video.frames[start:start + 4],
                                                        scales)
                a, b = proposal_recall(boxes, counts, video.boxes[start:start + 4])
                found, total = found + a, total + b
        print(f"scales {','.join(map(str, scales))}: recall@300 (IoU 0.5) "
              f"{found / max(total, 1):.4f} ({found} of {total} boxes)")
    return 0


def define_flags():
    flags.DEFINE_string("model_dir", None, "A detector run directory.")
    flags.DEFINE_string("data", None, "Detection data (default: the run's; the embedded set).")
    flags.DEFINE_string("split", "val", "Split to measure.")
    flags.DEFINE_multi_string("scales", ["600"], "Shorter sides; a comma list is one "
                              "multi-scale set (repeat the flag to compare sets).")


if __name__ == "__main__":
    define_flags()
    app.run(main)
