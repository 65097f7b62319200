"""The training input pipeline's throughput, next to its decode floor and the model it feeds.

    python -m tfzoo.bench --input --config=stresnet50_ucf101 --data=DIR [--clips=64]
        [--set KEY=VALUE ...] [--noservice] [--nomodel] [--nopin_workers]
        [--accelerator_tflops=100] [--json]

One run reports, in clips/s and CPU ms per clip (all threads of the processes doing the work),
each timed over at least `--clips` clips and at least MIN_SECONDS:
- `local`: the recipe's training pipeline (`RecordSource.dataset`: read, temporal sampling,
  crop and flip draws, decoding the crop's window of each frame and distinct flow field, the
  crop box; padded batches of packed uint8 clips) in this process;
- `unpack`: what the pipeline no longer does, the train step's first op
  (`tfzoo.data.packed.unpack`: bilinear resize, flow codes to pixels, flow stacks), timed on
  this CPU over the same batches, with the bytes per clip before and after it;
- `floor`: decoding the JPEGs the pipeline decodes for the same clips (the drawn frames and
  distinct flow fields; whole frames), read, parallelised and batched the same way, nothing
  else;
- `service 1 worker`, `service 2 workers`: the same pipeline on a local tf.data service
  (`python -m tfzoo.data.service` workers as processes, CPU summed over them; each worker
  pinned to a core of its own unless `--nopin_workers`), this process only consuming (its
  cores busy, with the in-process dispatcher's, are shown apart);
- the model's training step on this machine (clips/s), its training FLOPs per clip, and the
  cores of this pipeline needed to feed an accelerator that trains at
  `--accelerator_tflops` (sustained, training FLOPs = the counted graph's).
Goals (issue 22): local >= 0.7 of the floor per core (floor CPU ms / local CPU ms); 2 service
workers >= 1.6x one worker's clips/s. On a machine whose cores are shared, CPU ms per clip is
the figure to compare; clips/s depends on what else runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from tfzoo import config as cfglib
from tfzoo.bench.cli import _markdown
from tfzoo.bench.models import bench_model
from tfzoo.errors import TfzooError, report

PROG = "python -m tfzoo.bench --input"
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids) -> float:
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return total


MIN_SECONDS = 1.0  # each timing runs at least this long (and at least `clips` clips)


def _time(ds, clips: int, batch: int, pids=None, warmup: int = 2) -> dict:
    """clips/s and CPU ms per clip of pulling batches of `batch` clips: at least `clips` clips
    and at least MIN_SECONDS of wall time, so that a fast pipeline (the floor on tiny frames)
    is timed over enough work for the clocks to resolve, never over a window too short to
    see a CPU tick. CPU is this process's (`time.process_time`, ns) or, with `pids`, the
    sum over those processes (/proc, clock ticks)."""
    it = iter(ds)
    for _ in range(warmup):  # tracing, first shard reads, autotuning
        next(it)

    def cpu():
        return _cpu_seconds(pids) if pids else time.process_time()

    min_steps = max(1, -(-clips // batch))
    per_pid0 = [_cpu_seconds([p]) for p in pids or ()]
    cpu0, own0, t0 = cpu(), time.process_time(), time.perf_counter()
    steps = 0
    while steps < min_steps or time.perf_counter() - t0 < MIN_SECONDS or cpu() == cpu0:
        next(it)
        steps += 1
    wall, used = time.perf_counter() - t0, cpu() - cpu0
    n = steps * batch
    res = {"clips": n, "clips_per_s": n / wall, "cpu_ms_per_clip": 1e3 * used / n,
           "cores_busy": used / wall}
    if pids:  # where the cores went: each worker, and this process (consumer, dispatcher)
        res["worker_cores_busy"] = [(_cpu_seconds([p]) - c) / wall
                                    for p, c in zip(pids, per_pid0)]
        res["consumer_cores_busy"] = (time.process_time() - own0) / wall
    return res


def _unpack_cost(ds, batch: int) -> dict:
    """Bytes per clip the pipeline emits (packed) and the model sees (float), and the CPU ms
    per clip of `tfzoo.data.packed.unpack` (the train step's first op) on this machine's CPU,
    timed alone over the same batches for at least MIN_SECONDS."""
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.data.packed import unpack  # deferred: loads TensorFlow

    batches = [x for x, _ in ds.take(2)]
    fn = tf.function(unpack)
    floats = [fn(x) for x in batches]  # traces

    def nbytes(x):
        return sum(v.shape.num_elements() * v.dtype.size for v in tf.nest.flatten(x)) / batch

    cpu0, t0, n = time.process_time(), time.perf_counter(), 0
    while n < 2 or time.perf_counter() - t0 < MIN_SECONDS:
        tf.nest.map_structure(lambda v: v.numpy(), fn(batches[n % len(batches)]))
        n += 1
    return {"packed_bytes_per_clip": sum(map(nbytes, batches)) / len(batches),
            "float_bytes_per_clip": sum(map(nbytes, floats)) / len(floats),
            "cpu_ms_per_clip": 1e3 * (time.process_time() - cpu0) / (n * batch)}


def _decode_only(source):
    """The floor's per-clip function: the draws of the recipe's pipeline for this clip, then
    decoding exactly the JPEGs it decodes (the clip's frames; its distinct flow fields, u and
    v), whole, and nothing else (a sum keeps every decode live)."""
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.data import records  # deferred: loads TensorFlow

    with_flow = "flow" in source.streams

    def decode(jpegs, channels):
        images = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=channels), jpegs,
                           fn_output_signature=tf.uint8)
        return tf.reduce_sum(tf.cast(images[:, 0, 0, 0], tf.int32))

    def sample(serialized, seed, spec, training):
        ex = records.parse_example(serialized, with_flow=with_flow)
        d = source._draw(ex, seed, spec, training)
        total = tf.constant(0, tf.int32)
        if "rgb" in source.streams:
            total += decode(tf.gather(ex["frames"], d["idx"]), 3)
        if with_flow:
            fields = tf.unique(tf.reshape(d["flow_idx"], [-1]))[0]
            total += decode(tf.gather(ex["flow_u"], fields), 1)
            total += decode(tf.gather(ex["flow_v"], fields), 1)
        return total

    return sample


def _start_service(workers: int, pin: bool):
    """A dispatcher in this process and `workers` worker processes; with `pin`, worker i runs
    on core i only (of the cores this process may use), standing in for a machine of its own:
    one tf.data worker is multi-threaded and alone keeps every core of a small host busy, so
    on one host a second unpinned worker adds processes, not cores."""
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.data.service import check_workers  # deferred: loads TensorFlow

    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.removeprefix("grpc://")
    cores = sorted(os.sched_getaffinity(0))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                          os.environ.get("PYTHONPATH", "")])}
    procs = []
    for i in range(workers):
        core = {cores[i % len(cores)]}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tfzoo.data.service", "worker", f"--dispatcher={address}",
             "--worker_address=localhost", "--port=0"], stdout=subprocess.DEVNULL, env=env,
            # before exec, so TensorFlow sizes its thread pools for the one core
            preexec_fn=(lambda c=core: os.sched_setaffinity(0, c)) if pin else None))
    check_workers(dispatcher.target, timeout=120)
    return dispatcher, procs


def run(config, *, clips: int, batch: int | None, service: bool, model: bool,
        accelerator_tflops: float, pin_workers: bool = True, log=lambda s: None) -> dict:
    from tfzoo.data import clip_spec  # deferred: loads TensorFlow
    from tfzoo.sources import make_source  # deferred: loads TensorFlow
    from tfzoo.data.service import distribute  # deferred: loads TensorFlow

    source = make_source(config)
    spec = clip_spec(config)
    batch = batch or config.batch_size
    split = config.train_split

    def pipeline():
        ds = source.dataset(split, training=True, spec=spec, seed=config.seed)
        return ds.padded_batch(batch, drop_remainder=True)  # as Task.batch: packed clips

    res = {"config": config.model, "split": split, "batch": batch,
           "clip": {"frames": spec.num_frames, "size": list(spec.image_size),
                    "streams": list(source.info.streams), "flow_stack": spec.flow_stack},
           "cores": len(os.sched_getaffinity(0)), "load_avg_1min": os.getloadavg()[0]}
    log("floor: decoding the same frames and flow planes alone")
    floor = source.clips(split, _decode_only(source), training=True, spec=spec,
                         seed=config.seed).batch(batch, drop_remainder=True)
    res["floor"] = _time(floor, clips, batch)
    log("local: the recipe's training pipeline")
    res["local"] = _time(pipeline(), clips, batch)
    res["local_to_floor_per_core"] = (res["floor"]["cpu_ms_per_clip"]
                                      / res["local"]["cpu_ms_per_clip"])
    log("unpack: the train step's first op, here on this CPU")
    res["unpack"] = _unpack_cost(pipeline(), batch)
    if service:
        res["service_workers_pinned"] = pin_workers
        for n in (1, 2):
            log(f"service: {n} worker process(es)")
            dispatcher, procs = _start_service(n, pin_workers)
            try:
                ds = distribute(pipeline(), dispatcher.target)
                res[f"service_{n}"] = _time(ds, clips, batch, pids=[p.pid for p in procs])
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
                dispatcher._stop()
        res["service_2_to_1"] = (res["service_2"]["clips_per_s"]
                                 / res["service_1"]["clips_per_s"])
    if model:
        # deferred: loads TensorFlow
        import tfzoo.registry  # noqa: F401 - bench_model reads tfzoo.registry as an attribute

        log(f"model: {config.model} training step")
        row = bench_model(config.model, frames=spec.num_frames, size=tuple(spec.image_size),
                          batch=1, runs=2, warmup=1, overrides=dict(config.model_overrides),
                          log=log)
        train_flops = row["train_gflops_per_step"] * 1e9  # batch 1: per clip
        res["model"] = {"train_clips_per_s": 1e3 / row["train_step_ms"],
                        "train_gflops_per_clip": train_flops / 1e9,
                        "accelerator_tflops": accelerator_tflops}
        accel = accelerator_tflops * 1e12 / train_flops
        res["model"]["accelerator_clips_per_s"] = accel
        res["model"]["cores_to_feed_accelerator"] = (
            accel * res["local"]["cpu_ms_per_clip"] / 1e3)
        res["model"]["cores_to_feed_this_cpu"] = (
            res["model"]["train_clips_per_s"] * res["local"]["cpu_ms_per_clip"] / 1e3)
    return res


def format_report(res: dict) -> str:
    lines = [("pipeline", "clips", "clips/s", "CPU ms/clip", "cores busy")]
    for key, name in (("floor", "decode floor"), ("local", "local"),
                      ("service_1", "service, 1 worker"), ("service_2", "service, 2 workers")):
        if key in res:
            r = res[key]
            busy = f"{r['cores_busy']:.2f}"
            if "worker_cores_busy" in r:
                busy += (f" (workers {' + '.join(f'{b:.2f}' for b in r['worker_cores_busy'])}"
                         f"; consumer {r['consumer_cores_busy']:.2f})")
            lines.append((name, str(r["clips"]), f"{r['clips_per_s']:.2f}",
                          f"{r['cpu_ms_per_clip']:.1f}", busy))
    c = res["clip"]
    text = (f"Input pipeline of {res['config']} ({res['split']}, batch {res['batch']}, "
            f"{c['frames']} x {c['size'][0]}x{c['size'][1]} {'+'.join(c['streams'])}"
            f"{', L=' + str(c['flow_stack']) if 'flow' in c['streams'] else ''}; "
            f"{res['cores']} cores, load {res['load_avg_1min']:.1f}):\n" + _markdown(lines))
    text += (f"\nlocal / floor per core: {res['local_to_floor_per_core']:.2f} (goal >= 0.7)")
    u = res["unpack"]
    text += (f"\nper clip the pipeline emits {u['packed_bytes_per_clip'] / 1e6:.1f} MB (the model "
             f"sees {u['float_bytes_per_clip'] / 1e6:.1f} MB of float32); unpacking it in the "
             f"train step costs {u['cpu_ms_per_clip']:.1f} CPU ms per clip on this CPU")
    if "service_2_to_1" in res:
        text += (f"; 2 workers / 1 worker: {res['service_2_to_1']:.2f}x (goal >= 1.6"
                 f"{', one core per worker' if res.get('service_workers_pinned') else ''})")
    if "model" in res:
        m = res["model"]
        text += (f"\nmodel: {m['train_clips_per_s']:.2f} clips/s training on this CPU "
                 f"({m['train_gflops_per_clip']:.1f} GFLOPs per training clip); an "
                 f"accelerator at {m['accelerator_tflops']:.0f} TFLOP/s sustained trains "
                 f"{m['accelerator_clips_per_s']:.0f} clips/s and needs "
                 f"{m['cores_to_feed_accelerator']:.1f} cores of this input pipeline")
    return text


def main(argv: list[str]) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_string("config", None, "A recipe (configs/NAME.py or a path).", flag_values=fv)
    flags.DEFINE_string("data", None, "A directory prepared by tfzoo.data.prepare.",
                        flag_values=fv)
    flags.DEFINE_multi_string("set", [], "Override a config key (as in tfzoo.train).",
                              flag_values=fv)
    flags.DEFINE_integer("clips", 64, "Clips timed per pipeline.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("batch", None, "Batch size (default: the recipe's).", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_bool("service", True, "Time the local tf.data service (1 and 2 workers).",
                      flag_values=fv)
    flags.DEFINE_bool("pin_workers", True, "Run service worker i on core i alone (a machine "
                      "of one core per worker), so 2 workers have twice 1 worker's cores.",
                      flag_values=fv)
    flags.DEFINE_bool("model", True, "Time the model's training step.", flag_values=fv)
    flags.DEFINE_float("accelerator_tflops", 100.0, "Assumed sustained training throughput "
                       "of one accelerator, TFLOP/s.", lower_bound=0.001, flag_values=fv)
    flags.DEFINE_bool("json", False, "Print one JSON document.", flag_values=fv)
    if any(a in ("-h", "--help", "--helpfull") for a in argv):
        print(__doc__ + "\n" + fv.get_help(include_special_flags=False))
        return 0
    try:
        try:
            rest = fv([PROG, *argv])
        except flags.Error as e:
            raise TfzooError(f"{e} (--help lists the flags)") from None
        if len(rest) > 1:
            raise TfzooError(f"unexpected arguments {rest[1:]}")
        if not fv.config or not fv.data:
            raise TfzooError("--input needs --config=NAME (a recipe) and --data=DIR (its "
                             "prepared dataset)")
        config = cfglib.load_config_file(fv.config)
        overrides = cfglib.parse_assignments(fv.set)
        overrides.update(dataset="records", data_dir=fv.data)
        config = cfglib.apply_cli_overrides(config, overrides)
        config = cfglib.stage_configs(config)[-1][1]  # the final stage's input
        res = run(config, clips=fv.clips, batch=fv.batch, service=fv.service, model=fv.model,
                  pin_workers=fv.pin_workers,
                  accelerator_tflops=fv.accelerator_tflops,
                  log=lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))
    except TfzooError as e:
        return report(e, PROG)
    print(json.dumps(res, indent=1) if fv.json else format_report(res))
    return 0
