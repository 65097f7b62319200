"""`prepare` as an Apache Beam pipeline: the same shards, written by Beam's workers.

    python -m tfzoo.data.prepare --dataset=ucf101 --root=DIR --out=DIR --flow=tvl1 \
        --beam_pipeline_options="runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"

The option string is `tfds build`'s: comma-separated `key=value` pairs, each handed to Beam as
`--key=value` (Beam's PipelineOptions: the runner and its options). Everything but the
scheduling is the local path's: the driver lists the dataset and writes plan.json, the pipeline
writes each unfinished shard with `tfzoo.data.prepare._write_shard` (atomic, one summary per
shard, a bad video skipped and reported, never raised), and the driver writes manifest.json
from the summaries. So a rerun after a kill does only the unfinished shards, whichever runner
ran the first attempt, and a runner that retries a bundle rewrites whole shards.

The work unit is a shard (`--videos_per_shard` videos): give a cluster at least a few shards per
worker. `--out` must be a path every worker can write and the driver can read (a shared file
system mounted at the same path: NFS, a Filestore/EFS volume, a GCS bucket through gcsfuse).
Needs the `beam` extra: `pip install 'tfzoo[beam]'`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfzoo.data.base import DataError

EXTRA_HINT = "pip install 'tfzoo[beam]'"


def _beam():
    try:
        import apache_beam  # deferred: optional Apache Beam (the beam extra)
    except ImportError as e:
        raise DataError(f"--beam_pipeline_options needs Apache Beam, which is not installed "
                        f"({e.name or e}); install the extra: {EXTRA_HINT}") from None
    return apache_beam


def pipeline_options(text: str):
    """"runner=DirectRunner,direct_num_workers=2" -> Beam PipelineOptions (checked now)."""
    pairs = [p.strip() for p in str(text).split(",") if p.strip()]
    bad = [p for p in pairs if "=" not in p or not p.split("=", 1)[0].strip()]
    if not pairs or bad:
        raise DataError(f"--beam_pipeline_options {text!r}: expected comma-separated key=value "
                        f"pairs such as 'runner=DirectRunner,direct_num_workers=2'"
                        + (f"; not key=value: {bad}" if bad else ""))
    beam = _beam()
    # deferred: optional Apache Beam (the beam extra)
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    flags = [f"--{p}" for p in pairs]
    options = PipelineOptions(flags)
    known = options.get_all_options(retain_unknown_options=False)
    unknown = [p.split("=", 1)[0] for p in pairs if p.split("=", 1)[0] not in known]
    if unknown:
        raise DataError(f"--beam_pipeline_options: unknown Beam option(s) {unknown}; the "
                        f"options of Beam {beam.__version__} are the flags of "
                        "apache_beam.options.pipeline_options (runner, direct_num_workers, "
                        "flink_master, project, ...)")
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = "DirectRunner"
    return options


def _write(element, out: str, count: int, params: dict, write_shard) -> dict:
    index, items = element
    return write_shard(out, index, count, items, params)


def run_shards(options, out: str, todo: list[int], count: int, shards: list, params: dict,
               write_shard):
    """Writes shards `todo` of the plan with Beam (`write_shard(out, index, count, items,
    params)` is prepare's shard writer, passed in: prepare imports this module, and Beam pickles
    the function by reference); yields their summaries when it is done."""
    beam = _beam()
    if todo:
        with beam.Pipeline(options=options) as p:
            _ = (p
                 | "Shards" >> beam.Create([(i, shards[i]) for i in todo])
                 # without a shuffle the runner fuses Create with the writes: one worker
                 | "Spread" >> beam.Reshuffle()
                 | "WriteShard" >> beam.Map(_write, out, count, params, write_shard))
    from tfzoo.data import records  # deferred: loads TensorFlow

    for i in todo:
        path = Path(out) / f"{records.shard_name(i, count)}.json"
        if not path.exists():
            raise DataError(f"the Beam pipeline finished without writing {path}; run the same "
                            "command again to redo the missing shards")
        yield json.loads(path.read_text())
