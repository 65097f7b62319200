"""`python -m tfzoo.visualize`: galleries of what units of a trained model want to see.

    python -m tfzoo.visualize --model_dir=runs/tresnet --list_layers
    python -m tfzoo.visualize --model_dir=runs/tresnet --layer=conv4_block1_out --units=0:8 \\
        --regularizer=2d1d --chi=0,1,5,10 --out=gallery/

Columns of the gallery are the regularisation strengths (chi for 2d1d; kappa = chi for 3d)
times `--variants` (the paper's method and the options beyond it), rows the units.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags
from tqdm import tqdm

import tfzoo
from tfzoo import config as cfglib
from tfzoo.errors import TfzooError
from tfzoo.rundir import load_model

VARIANTS = {
    "paper": {},
    "fourier": {"parametrization": "fourier"},
    "fourier+transforms": {"parametrization": "fourier", "transforms": True},
    "diversity": {"diversity": 1.0},
    "no_a_hat": {"a_hat": None},
}


def define_flags():
    f = flags
    f.DEFINE_string("model_dir", None, "A tfzoo model directory (run.json + model.keras).")
    f.DEFINE_string("model", None, "Or a registry name (random weights; for trying things out).")
    f.DEFINE_string("layer", None, "Endpoint or layer name (see --list_layers).")
    f.DEFINE_string("units", "0:8", "Channels: 'a:b', 'a:b:step' or 'i,j,k'.")
    f.DEFINE_enum("regularizer", "2d1d", ["2d", "3d", "2d1d"], "R_TV of the motion input.")
    f.DEFINE_string("chi", "0,1,5,10", "Comma-separated strengths: chi for 2d1d, kappa = chi "
                    "for 3d (ignored by 2d).")
    f.DEFINE_integer("steps", 256, "Optimiser steps per setting.")
    f.DEFINE_integer("seed", 0, "Random seed (results are deterministic for a seed).")
    f.DEFINE_string("clip_shape", None, "T,H,W of the clip (default: the run's frames and size).")
    f.DEFINE_float("learning_rate", None, "Adam step size (default per parametrisation).")
    f.DEFINE_float("objective_scale", None, "Multiplies the objective (default rho^2).")
    f.DEFINE_enum("unit_location", "sum", ["sum", "center"], "Sum over locations or the centre.")
    f.DEFINE_enum("a_hat", "validation", ["validation", "none"],
                  "Normalise by each unit's maximum activation on the run's validation split "
                  "(cached in OUT/../a_hat_LAYER.json next to the gallery) or not.")
    f.DEFINE_integer("a_hat_batches", 8, "Validation batches for a_hat.")
    f.DEFINE_list("variants", ["paper"], f"Columns to compare: {sorted(VARIANTS)}.")
    f.DEFINE_integer("copies", 1, "Optimise each unit this many times in the batch (with "
                     "the 'diversity' variant: several facets).")
    f.DEFINE_list("formats", ["png", "gif"], "png, gif, mp4.")
    f.DEFINE_list("motion_modes", ["uvm", "wheel"], "uvm, wheel, u, v.")
    f.DEFINE_string("out", "gallery", "Output directory.")
    f.DEFINE_boolean("list_layers", False, "Print the endpoints / conv-like layers with their "
                     "stride and receptive field, then exit.")


def parse_units(spec: str) -> list[int] | slice:
    try:
        if ":" in spec:
            parts = [int(p) if p else None for p in spec.split(":")]
            return slice(*parts)
        return [int(u) for u in spec.split(",")]
    except ValueError:
        raise TfzooError(f"--units={spec!r}; expected 'a:b', 'a:b:step' or 'i,j,k'") from None


def _load(model_dir, model_name):
    if bool(model_dir) == bool(model_name):
        raise TfzooError("pass exactly one of --model_dir=DIR or --model=NAME")
    if model_dir:
        return load_model(model_dir)

    return tfzoo.create_model(model_name), None


def _validation_data(model_dir, info):
    from tfzoo.data import clip_spec  # deferred: loads TensorFlow
    from tfzoo.sources import make_source  # deferred: loads TensorFlow

    known = {k: v for k, v in info.config.items() if k in cfglib.FIELDS}
    config = cfglib.TrainConfig().replace(**known)
    source = make_source(config)
    splits = list(source.info.num_videos)
    split = next((s for s in ("val", "validation", "test") if s in splits), None)
    if split is None:
        raise TfzooError(f"{model_dir}: the data has splits {splits} and none of 'val', "
                         f"'validation', 'test' for a_hat; pass --a_hat=none")
    ds = source.dataset(split, training=False, spec=clip_spec(config), seed=config.seed)
    return ds.batch(config.batch_size), split


def run_stats(normalized, units, activation, a_hat) -> dict:
    """What a setting changed, on the normalised inputs (RGB - 127.5, flow code units):
    squared spatial / temporal forward differences per value, the activation relative to
    a_hat, and the mean correlation between copies of the same unit (for --copies > 1)."""
    from tfzoo.visualize.regularizers import total_variation  # deferred: loads TensorFlow

    z = {k: np.asarray(v, np.float64) for k, v in normalized.items()}
    size = sum(v[0].size for v in z.values())
    spatial = sum(total_variation(v, "2d").numpy() for v in z.values()) / size
    temporal = sum(total_variation(v, "2d1d", chi=1.0).numpy()
                   - total_variation(v, "2d").numpy() for v in z.values()) / size
    act = np.asarray(activation, np.float64)
    rel = act / (np.asarray(a_hat, np.float64)[units] if a_hat is not None else 1.0)
    flat = np.concatenate([v.reshape(len(units), -1) for v in z.values()], axis=1)
    pairs = [np.corrcoef(flat[i], flat[j])[0, 1] for i in range(len(units))
             for j in range(i + 1, len(units)) if units[i] == units[j]]
    return {"activation_over_a_hat": float(rel.mean()),
            "spatial_tv_per_px": float(spatial.mean()),
            "temporal_energy_per_px": float(temporal.mean()),
            "copy_correlation": round(float(np.mean(pairs)), 3) if pairs else None}


def print_layers(model, frames) -> None:
    from tfzoo.visualize.geometry import list_layers  # deferred: loads TensorFlow

    geos = list_layers(model, frames=frames)
    print(f"{'name':40s} {'layer':34s} {'stride':>6s} {'receptive field':>16s} {'frames':>6s} "
          f"{'ch':>5s} stream (source)")
    for g in geos:
        rf = "-" if g.receptive_field is None else \
            (">=" if g.clipped else "") + f"{g.receptive_field[0]}x{g.receptive_field[1]}"
        frames_rf = "-" if g.temporal_receptive_field is None else \
            (">=" if g.temporal_clipped else "") + str(g.temporal_receptive_field)
        print(f"{g.name:40s} {g.layer:34s} {g.stride if g.stride else '-':>6} {rf:>16s} "
              f"{frames_rf:>6} {g.channels:5d} {g.stream} ({g.source})")
    if any(g.clipped or g.temporal_clipped for g in geos):
        print(">=: the receptive field reaches the border of the probe (for a model with a fixed "
              "input size: that size), so the unit may see more than shown")


def main(argv):
    del argv
    F = flags.FLAGS

    import tfzoo.visualize as vis  # deferred: loads TensorFlow
    from tfzoo.visualize.render import write_gallery  # deferred: loads TensorFlow

    model, info = _load(F.model_dir, F.model)
    if F.clip_shape:
        clip = tuple(int(v) for v in F.clip_shape.split(","))
    elif info is not None:
        clip = (info.num_frames, *info.image_size)
    else:
        clip = (5, 112, 112)
    if F.list_layers:
        print_layers(model, clip[0])
        return 0
    if not F.layer:
        raise TfzooError("--layer is required (see --list_layers)")
    for v in F.variants:
        if v not in VARIANTS:
            raise TfzooError(f"unknown variant {v!r}; expected one of {sorted(VARIANTS)}")
    geo = vis.layer_geometry(model, F.layer, frames=clip[0])
    units = parse_units(F.units)
    units = list(range(*units.indices(geo.channels))) if isinstance(units, slice) else units
    batch_units = [u for u in units for _ in range(F.copies)]
    strengths = [0.0] if F.regularizer == "2d" else [float(v) for v in F.chi.split(",")]
    a_hat, a_hat_split = None, None
    if F.a_hat == "validation":
        if info is None:
            raise TfzooError("--a_hat=validation needs --model_dir (a trained run); "
                             "pass --a_hat=none")

        ds, a_hat_split = _validation_data(F.model_dir, info)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in F.layer)
        cache = Path(F.model_dir) / "visualize" / f"a_hat_{safe}.json"
        a_hat = vis.max_activations(model, F.layer, ds, cache=cache,
                                    max_batches=F.a_hat_batches)
    settings = [(v, s) for v in F.variants for s in strengths]
    bar = tqdm(total=len(settings) * F.steps, unit="step", file=sys.stderr,
               desc=f"{F.layer} x{len(batch_units)} units")
    cells, runs = [], []
    for variant, s in settings:
        opts = dict(VARIANTS[variant])
        kw = dict(steps=F.steps, regularizer=F.regularizer, seed=F.seed, clip_shape=clip,
                  learning_rate=F.learning_rate, unit_location=F.unit_location,
                  objective_scale=F.objective_scale, a_hat=opts.pop("a_hat", a_hat), **opts)
        if F.regularizer == "3d":
            kw.update(kappa=s, chi=s)
        else:
            kw.update(chi=s, kappa=1.0)
        done = [0]

        def progress(n, loss, done=done):
            bar.update(n - done[0])
            bar.set_postfix(loss=f"{loss:.4g}")
            done[0] = n

        t0 = time.time()
        out, inf = vis.maximize(model, F.layer, batch_units, progress=progress,
                                return_info=True, **kw)
        bar.update(F.steps - done[0])
        label = (f"{variant} " if len(F.variants) > 1 else "") + (
            F.regularizer if F.regularizer == "2d" else
            f"{'kappa' if F.regularizer == '3d' else 'chi'}={s:g}")
        stats = run_stats(inf.pop("normalized"), batch_units, inf["activation"], a_hat)
        runs.append({"setting": label, "variant": variant, "seconds": time.time() - t0,
                     "stats": stats, **inf})
        for i, u in enumerate(batch_units):
            cells.append({"unit": u,
                          "setting": label + (f" #{i % F.copies}" if F.copies > 1 else ""),
                          "inputs": {n: x[i] for n, x in out.items()},
                          "kinds": inf["settings"]["streams"],
                          "activation": inf["activation"][i]})
    bar.close()
    meta = {"model": info.model if info else F.model, "model_dir": F.model_dir,
            "layer": F.layer, "geometry": runs[0]["geometry"], "units": units,
            "regularizer": F.regularizer, "strengths": strengths, "variants": F.variants,
            "steps": F.steps, "seed": F.seed, "clip_shape": list(clip),
            "a_hat": None if a_hat is None else a_hat[units].tolist(), "a_hat_split": a_hat_split,
            "command": " ".join(sys.argv), "runs": runs,
            "settings": runs[0]["settings"]}
    if info is not None and geo.stride is None and geo.channels == len(info.class_names):
        meta["unit_names"] = {u: info.class_names[u] for u in units}  # a classifier's logits
    page = write_gallery(F.out, cells, meta, formats=tuple(F.formats),
                         modes=tuple(F.motion_modes))
    print("| setting | activation / a_hat | spatial TV / px | temporal energy / px | "
          "copy correlation |")
    print("|---|---|---|---|---|")
    for r in runs:
        st = r["stats"]
        print(f"| {r['setting']} | {st['activation_over_a_hat']:.3g} | {st['spatial_tv_per_px']:.3g}"
              f" | {st['temporal_energy_per_px']:.3g} | {st['copy_correlation']} |")
    print(f"wrote {page}")
    return 0


def run():
    define_flags()
    flags.mark_flags_as_mutual_exclusive(["model_dir", "model"])
    app.run(lambda argv: sys.exit(_safe(main, argv)))


def _safe(fn, argv):
    try:
        return fn(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    run()
