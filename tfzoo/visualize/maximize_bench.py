"""`python -m tfzoo.visualize.maximize_bench`: visualiser speed, units per minute, 1 unit vs a batch.

    python -m tfzoo.visualize.maximize_bench --model=stresnet50 --layer=rgb_conv5_block3_out \\
        --clip_shape=5,112,112 --batch=1,8 --steps=4

Times `--steps` optimisation steps (after one untimed step that traces the tf.function) for
each batch size in the same process and reports seconds per step and units per minute for a
`--per_unit_steps`-step visualisation (random weights: speed does not depend on them).
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

import tfzoo
from tfzoo.utils import markdown_table


def define_flags():
    flags.DEFINE_string("model", "stresnet50", "Registry name (random weights).")
    flags.DEFINE_string("layer", "rgb_conv5_block3_out", "Endpoint or layer name.")
    flags.DEFINE_string("clip_shape", "5,112,112", "T,H,W.")
    flags.DEFINE_list("batch", ["1", "8"], "Units per batch to compare.")
    flags.DEFINE_integer("steps", 4, "Timed steps per batch size.")
    flags.DEFINE_integer("per_unit_steps", 256, "Steps of one visualisation (for units/min).")


def bench(model, layer, clip, batches, steps, per_unit_steps):
    import tfzoo.visualize as vis  # deferred: loads TensorFlow
    from tfzoo.visualize import geometry  # deferred: loads TensorFlow

    # The receptive-field probe is not what is measured: keep it small.
    geometry.MAX_PROBE = 128
    vis.layer_geometry(model, layer, frames=clip[0])
    rows = []
    for b in batches:
        units = list(range(b))
        vis.maximize(model, layer, units, steps=1, clip_shape=clip)  # trace
        t0 = time.perf_counter()
        vis.maximize(model, layer, units, steps=steps, clip_shape=clip)
        dt = (time.perf_counter() - t0) / steps
        rows.append({"batch": b, "s_per_step": dt,
                     "units_per_min": 60.0 * b / (dt * per_unit_steps)})
    return rows


def main(argv):
    del argv
    F = flags.FLAGS

    model = tfzoo.create_model(F.model)
    clip = tuple(int(v) for v in F.clip_shape.split(","))
    rows = bench(model, F.layer, clip, [int(b) for b in F.batch], F.steps, F.per_unit_steps)
    base = rows[0]["units_per_min"]
    print(f"{F.model} {F.layer} clip {clip}, {F.per_unit_steps} steps per visualisation, "
          f"load average {os.getloadavg()[0]:.1f}")
    lines = [("units per batch", "s / step", "units / min", f"vs batch {rows[0]['batch']}")]
    lines += [(str(r["batch"]), f"{r['s_per_step']:.2f}", f"{r['units_per_min']:.3f}",
               f"{r['units_per_min'] / base:.2f}x") for r in rows]
    print(markdown_table(lines))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
