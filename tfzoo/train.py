"""Train a tfzoo model: `python -m tfzoo.train --model=tresnet [--config=...] [--model_dir=...]`.

Runs every stage of the recipe with Keras `fit` under a `tf.distribute` strategy, with a
progress bar, TensorBoard logs, per-epoch checkpoints and step-exact backups (a killed run
started again with the same command resumes at the step it had reached, tfzoo/backup.py), then saves `model.keras` + `run.json` and
evaluates the test split with the paper's protocol (`metrics.json`). See tfzoo/rundir.py for
the model directory layout and tfzoo/config.py for the config keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from absl import app, flags

import tfzoo
from tfzoo import config as cfglib
from tfzoo.errors import TfzooError, report
from tfzoo.evaluate import evaluate_model_dir
from tfzoo.protocols import protocol_of
from tfzoo.recipes import SPLIT_KEYS, dataset_splits
from tfzoo.rundir import (
    MODEL_FILE, RUN_FILE, RunInfo, atomic_write_text, load_model, read_run_info, replace_file,
    save_model, write_run_info
)
from tfzoo.utils import check_arguments

FLAGS = flags.FLAGS


def define_flags():
    """CLI flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_string("model", None, "Registry name (see tfzoo.list_models()); `tresnet` and "
                        "`resnet` select the embedded synthetic demo recipes.")
    flags.DEFINE_string("config", None, "A shipped recipe by NAME (configs/NAME.py), or a "
                        "config file of your own by PATH (with a '/' or ending in .py; "
                        "Python code, run as such).")
    flags.DEFINE_string("data", None, "A directory prepared by `python -m tfzoo.data.prepare` "
                        "(sets dataset=records), or a detection folder for a detection recipe.")
    flags.DEFINE_string("model_dir", None, "Output directory (default runs/<model>).")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                      "default: one device; mirrored: all local GPUs (or logical CPUs); "
                      "multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG.")
    flags.DEFINE_integer("epochs", None, "Override epochs.")
    flags.DEFINE_integer("steps", None, "Override steps per epoch.")
    flags.DEFINE_integer("batch_size", None, "Override the global batch size.")
    flags.DEFINE_string("precision", None, "float32, mixed_bfloat16 or mixed_float16.")
    flags.DEFINE_multi_string("set", [], "Override any config key: --set learning_rate=0.01.")
    flags.DEFINE_bool("evaluate", True, "Evaluate the test split after training.")
    flags.DEFINE_bool("restart", False, "--model_dir holds a run with other settings: delete "
                      "it and start over (without this flag such a directory is refused).")
    flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into N logical devices (tests of "
                         "--strategy=mirrored on machines without GPUs).")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras fit verbosity.")
    flags.DEFINE_string("data_service", None, "grpc://HOST:PORT of a tf.data service "
                        "dispatcher (`python -m tfzoo.data.service`): its workers run the "
                        "training input pipeline, this process only consumes batches.")


class TrainError(TfzooError):
    pass


def resolve_config():
    """The TrainConfig from --model/--config/--data and the override flags."""
    from tfzoo.registry import get_entry  # deferred: loads TensorFlow

    if FLAGS.config:
        config = cfglib.load_config_file(FLAGS.config)
        if FLAGS.model:
            final = cfglib.stage_configs(config)[-1][1].model
            if config.stages and FLAGS.model != final:
                raise TrainError(
                    f"--model={FLAGS.model} but config {FLAGS.config} trains {final!r} in its "
                    f"final stage; drop --model or pass --model={final}"
                )
            if not config.stages:
                config = config.replace(model=FLAGS.model)
    elif FLAGS.model:
        config = cfglib.default_config(FLAGS.model)
    else:
        raise TrainError("pass --model=NAME (e.g. --model=tresnet) and/or --config=FILE")
    overrides = cfglib.parse_assignments(FLAGS.set)
    for flag, key in (("epochs", "epochs"), ("steps", "steps_per_epoch"),
                      ("batch_size", "batch_size"), ("precision", "precision")):
        if getattr(FLAGS, flag) is not None:
            overrides[key] = getattr(FLAGS, flag)
    if FLAGS.data:
        from tfzoo.sources import folder_dataset  # deferred: loads TensorFlow

        FLAGS.data = os.path.expanduser(FLAGS.data)  # `--data=~/prepared/x`: bash leaves the ~

        # A detection recipe reads its folder directly (ImageNet VID or custom layout).
        kind = folder_dataset(config.dataset)
        if kind == "detection" != config.dataset:  # the generated set's options do not apply
            config = config.replace(dataset_options={})
        overrides.update(dataset=kind, data_dir=FLAGS.data)
        if kind == "records":
            overrides.update(official_splits(config, FLAGS.data, overrides))
    config = cfglib.apply_cli_overrides(config, overrides)
    for _, stage in cfglib.stage_configs(config):
        # Unknown model names and misspelt model_overrides fail before any work.
        check_arguments(f"model_overrides of {stage.model!r}", get_entry(stage.model).builder,
                        stage.model_overrides)
    return config


def official_splits(config, data_dir, overrides) -> dict:
    """Split keys for a prepared dataset with official splits when the recipe's are not in it
    (tfzoo.recipes.dataset_splits: UCF101 / HMDB51 train1 / test1, ...); says what it chose."""
    from tfzoo.data.readers import load_manifest  # deferred: loads TensorFlow

    manifest = load_manifest(data_dir)
    final = cfglib.stage_configs(config)[-1][1]
    current = {k: overrides.get(k, getattr(final, k)) for k in SPLIT_KEYS}
    changes = dataset_splits(manifest["dataset"], manifest["splits"], current, explicit=overrides)
    if changes:
        chosen = {**current, **changes}
        val = f"validating on {chosen['val_split']}" if chosen["val_split"] else "no validation"
        print(f"[tfzoo] {data_dir} is {manifest['dataset']} with splits "
              f"{sorted(manifest['splits'])}: training on {chosen['train_split']}, {val}, "
              f"testing on {chosen['test_split']} (the recipes' split; --set train_split=... "
              f"--set test_split=... for another)", flush=True)
    return changes


def make_strategy(name: str):
    import tensorflow as tf  # deferred: loads TensorFlow

    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        if strategy.num_replicas_in_sync == 1:
            print("[tfzoo] warning: --strategy=mirrored found no GPU and no logical CPUs: "
                  "training runs on one CPU replica, like --strategy=default (--logical_cpus=N "
                  "splits the CPU to exercise data parallelism)", file=sys.stderr, flush=True)
        return strategy
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise TrainError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def worker_dir(model_dir: Path, strategy) -> Path:
    """Chief writes into model_dir; other workers into a private scratch directory (all
    workers must run the save ops of a synchronous strategy)."""
    if is_chief(strategy):
        return model_dir
    r = strategy.cluster_resolver
    return model_dir / "workers" / f"{r.task_type}-{r.task_id}"


def learning_rate_callbacks(config, keras, *, validated: bool | None = None):
    """The recipe's schedule; the plateau monitors val_loss when a validation pass runs
    (`validated`; default: the config names a validation split), else the training loss."""
    lr = config.learning_rate
    if config.lr_schedule == "plateau":
        validated = bool(config.val_split) if validated is None else validated
        monitor = "val_loss" if validated else "loss"
        return [keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=config.lr_decay, patience=config.plateau_patience,
            min_lr=lr * 1e-3, verbose=1)]

    def schedule(epoch, _current):
        warm = config.warmup_epochs
        if epoch < warm:
            return lr * (epoch + 1) / (warm + 1)
        if config.lr_schedule == "steps":
            return lr * config.lr_decay ** sum(epoch >= b for b in config.lr_boundaries)
        if config.lr_schedule == "cosine":
            span = max(config.epochs - warm, 1)
            return 0.5 * lr * (1 + math.cos(math.pi * (epoch - warm) / span))
        return lr

    return [keras.callbacks.LearningRateScheduler(schedule)]


def make_optimizer(config, keras):
    kwargs = dict(learning_rate=config.learning_rate,
                  gradient_accumulation_steps=config.grad_accum_steps if config.grad_accum_steps > 1 else None)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=config.momentum, weight_decay=config.weight_decay or None,
                                    **kwargs)
    return keras.optimizers.AdamW(weight_decay=config.weight_decay, **kwargs)


def compile_model(model, config, keras):
    """Compiles `model` with its task's losses and metrics and the recipe's optimizer."""
    from tfzoo.tasks import get_task  # deferred: loads TensorFlow

    get_task(model).compile(model, optimizer=make_optimizer(config, keras),
                            label_smoothing=config.label_smoothing, jit_compile=config.jit_compile)


def init_from(model, source_dir: str) -> int:
    """Copies weights by layer name from the model in `source_dir` (a previous stage).

    A (1, kh, kw, ...) kernel feeding a (k, kh, kw, ...) temporal conv is spread as w / k on
    every tap (thesis eq. 4.5), so a stream trained on single frames starts ST-ResNet. Layers
    whose weights do not convert keep their initialisation.
    """
    from tfzoo.backbones.transplant import copy_weights  # deferred: loads TensorFlow

    src, _ = load_model(source_dir)
    copied = copy_weights(src, model, temporal_init="avg", strict=False, skip_mismatched=True)
    if not copied:
        raise TrainError(f"init_from={source_dir}: no layer of {src.name} matches {model.name}")
    return len(copied)


def build_datasets(source, config, strategy, model, *, data_service: str | None = None,
                   job_name: str | None = None):
    """(train, val) datasets. With `data_service` (a dispatcher's grpc:// address) the whole
    training pipeline, batching included, runs on the service's workers
    (tfzoo.data.service.distribute); validation stays local."""
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.data import clip_spec  # deferred: loads TensorFlow
    from tfzoo.tasks import get_task  # deferred: loads TensorFlow

    spec = clip_spec(config)
    label_fn = get_task(model).targets(model, source.info.num_classes,
                                       label_smoothing=config.label_smoothing)
    train = source.dataset(config.train_split, training=True, spec=spec, seed=config.seed)
    train = get_task(model).batch(train.map(label_fn), config.batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    if data_service:
        from tfzoo.data.service import distribute  # deferred: loads TensorFlow

        train = distribute(train, data_service, job_name=job_name)
        # the trainers of one job share its stream: no second split by file or element
        train_options = tf.data.Options()
        train_options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF)
        train = train.with_options(train_options)
    else:
        train = train.with_options(options)
    train = train.prefetch(tf.data.AUTOTUNE)
    val = None
    if config.val_split and source.info.num_videos.get(config.val_split):
        size = tuple(config.image_size)
        val = source.dataset(config.val_split, training=False, spec=spec, seed=config.seed)
        # fit() needs fixed-size batches: full test frames resized to the training size.
        val = val.map(lambda x, y: (_resize_inputs(x, size), y)).map(label_fn)
        val = val.batch(config.batch_size).with_options(options).prefetch(tf.data.AUTOTUNE)
    return train, val


def _resize_inputs(x, size):
    import tensorflow as tf  # deferred: loads TensorFlow

    if isinstance(x, dict):
        return {k: _resize_inputs(v, size) for k, v in x.items()}
    return tf.image.resize(x, size)


def train_stage(config, stage_dir: Path, source, strategy, *, previous: Path | None, verbose,
                data_service: str | None = None):
    import keras  # deferred: loads Keras (TensorFlow)

    # deferred: loads Keras (TensorFlow)
    from tfzoo.backup import EpochCheckpoint, RunProgress, StepBackup

    wdir = worker_dir(stage_dir, strategy)
    wdir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    info = source.info
    with strategy.scope():
        model = tfzoo.create_model(config.model, weights=config.weights,
                                   num_classes=info.num_classes, **config.model_overrides)
        start = config.init_from or (str(previous) if previous else None)
        if start:
            n = init_from(model, start)
            print(f"[tfzoo] initialised {n} layers from {start}")
        if config.train_streams:
            from tfzoo.models.base import set_trainable_streams  # deferred: loads TensorFlow

            try:
                n = set_trainable_streams(model, config.train_streams)
            except ValueError as e:
                raise TrainError(f"stage {config.model}: {e}") from None
            print(f"[tfzoo] training streams {list(config.train_streams)}; froze {n} layers")
        from tfzoo.tasks import get_task  # deferred: loads TensorFlow

        prepared = get_task(model).prepare_model(model, source, config)
        if prepared:
            print(f"[tfzoo] set from the data before training: {prepared}")
        compile_model(model, config, keras)

    # one tf.data service job per stage of a run, shared by a multi-worker trainer's workers
    # (a digest, not hash(): the same in every process)
    job = "tfzoo-" + hashlib.sha1(f"{stage_dir.resolve()}|{config.model}|{config.seed}"
                                  .encode()).hexdigest()[:16]
    train, val = build_datasets(source, config, strategy, model, data_service=data_service,
                                job_name=job if data_service else None)
    steps = config.steps_per_epoch or max(info.num_videos[config.train_split] // config.batch_size, 1)
    start_epoch, start_step = _restore_backup(model, wdir / "backup", config, steps, strategy)
    callbacks = [
        EpochCheckpoint(wdir / "checkpoints"),
        keras.callbacks.TensorBoard(str(wdir / "logs"), update_freq="epoch"),
        keras.callbacks.CSVLogger(str(wdir / "history.csv"), append=True),
        *learning_rate_callbacks(config, keras, validated=val is not None),
        RunProgress(config.epochs),
    ]
    backup = StepBackup(wdir / "backup", model_name=config.model,
                        every_steps=config.checkpoint_every_steps, start=(start_epoch, start_step))
    (wdir / "checkpoints").mkdir(exist_ok=True)
    t0 = time.time()
    if start_step:  # the rest of the interrupted epoch, then the remaining epochs
        model.fit(train, validation_data=val, initial_epoch=start_epoch, epochs=start_epoch + 1,
                  steps_per_epoch=steps - start_step, callbacks=[backup, *callbacks],
                  verbose=verbose, shuffle=False)
        start_epoch += 1
    if start_epoch < config.epochs:
        model.fit(train, validation_data=val, initial_epoch=start_epoch, epochs=config.epochs,
                  steps_per_epoch=steps, callbacks=[backup, *callbacks], verbose=verbose,
                  shuffle=False)  # the tf.data pipeline shuffles (seeded); fit cannot
    elapsed = time.time() - t0
    run = RunInfo(
        model=config.model, model_config=model.get_config(), class_names=list(info.class_names),
        # chunks of one test prediction (the window predict and export classify)
        num_frames=protocol_of(config).frames or config.num_frames, image_size=tuple(config.image_size),
        config={**config.to_json(), "train_seconds": elapsed,
                "num_replicas_in_sync": strategy.num_replicas_in_sync},
    )
    if is_chief(strategy):
        save_model(model, stage_dir)
        write_run_info(stage_dir, run)
    shutil.rmtree(wdir / "backup", ignore_errors=True)  # finished: nothing to resume
    keras.mixed_precision.set_global_policy("float32")
    return model


def _restore_backup(model, backup_dir: Path, config, steps: int, strategy) -> tuple[int, int]:
    """Loads the backup of a killed run, if any; returns (epoch, step) to resume at."""
    # deferred: loads Keras (TensorFlow)
    from tfzoo.backup import architecture_fingerprint, read_state

    state = read_state(backup_dir)
    if state is None:
        return 0, 0
    if (state.get("model"), state.get("architecture")) != (config.model,
                                                           architecture_fingerprint(model)):
        raise TrainError(
            f"the backup in {backup_dir} belongs to another architecture ({state.get('model')!r}, "
            f"not this run's {config.model!r} with these model_overrides); pass another "
            f"--model_dir, or --restart to delete the interrupted run and start over")
    with strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # its variables are in the file
        model.load_weights(backup_dir / state["weights"])
    epoch, step = state["epoch"], state["step"]
    if step >= steps:  # steps_per_epoch shrank since: the epoch counts as done
        epoch, step = epoch + 1, 0
    print(f"[tfzoo] resuming from {backup_dir}: weights and optimizer state after epoch "
          f"{epoch} + {step}/{steps} steps (optimizer step {int(model.optimizer.iterations)}); "
          f"continuing at epoch {epoch + 1}/{config.epochs}, step {step + 1}", flush=True)
    return epoch, step


def run(config, model_dir: Path, strategy, *, evaluate: bool = True, verbose="auto",
        restart: bool = False, data_service: str | None = None) -> dict | None:
    """Trains every stage of `config` into `model_dir`; returns the test metrics.

    A `model_dir` that holds a run with the same config resumes it (finished stages are kept);
    one with another config is refused, unless `restart` deletes that run first.
    `data_service`: grpc://HOST:PORT of a tf.data service dispatcher that runs the training
    input (tfzoo.data.service); checked to answer, with a worker, before anything is built."""
    from tfzoo.sources import make_source  # deferred: loads TensorFlow

    if data_service:
        from tfzoo.data import service  # deferred: loads TensorFlow

        data_service = service.check_reachable(data_service, what="dispatcher")
        service.check_workers(data_service)
    _check_model_dir(model_dir, config, restart=restart)
    source = make_source(config)
    stages = cfglib.stage_configs(config)
    for _, stage in stages:
        _check_streams(stage, source.info.streams)
    atomic_write_text(model_dir / "config.json",
                      json.dumps(config.to_json(), indent=2, default=str) + "\n")
    previous = None
    for name, stage in stages:
        stage_dir = model_dir / "stages" / name if name else model_dir
        if (stage_dir / MODEL_FILE).exists() and (stage_dir / RUN_FILE).exists():
            print(f"[tfzoo] stage {name or 'main'} already finished in {stage_dir}; skipping")
        else:
            print(f"[tfzoo] training {stage.model} ({name or 'single stage'}) on split "
                  f"{stage.train_split!r} (test split {stage.test_split!r}) -> {stage_dir}")
            train_stage(stage, stage_dir, source, strategy, previous=previous, verbose=verbose,
                        data_service=data_service)
        previous = stage_dir
    if not is_chief(strategy):
        return None
    if previous != model_dir:  # multi-stage: the final stage is the run's model
        for f in (MODEL_FILE, RUN_FILE):
            tmp = model_dir / f".{f}.tmp"
            shutil.copyfile(previous / f, tmp)
            replace_file(tmp, model_dir / f, durable=True)
    if not evaluate:
        return None

    return evaluate_model_dir(model_dir, split=stages[-1][1].test_split, source=source)


def _check_streams(config, streams) -> None:
    """A two-stream model needs a dataset with flow: refuse an RGB-only recipe up front (it
    would otherwise trace and fail on the missing 'flow' input)."""
    from tfzoo.registry import get_entry  # deferred: loads TensorFlow

    if "two_stream" not in get_entry(config.model).tags or "flow" in streams:
        return
    fits = []
    for path in sorted(cfglib.CONFIG_DIR.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        recipe = cfglib.load_config_file(str(path))
        if any(s.model == config.model for _, s in cfglib.stage_configs(recipe)):
            # Recipes on embedded data first: they run without downloading anything.
            fits.append((recipe.dataset == "records", path.stem))
    fits = [name for _, name in sorted(fits)]
    raise TrainError(
        f"{config.model!r} is a two-stream model (rgb + flow inputs) but dataset "
        f"{config.dataset!r} gives only {list(streams)}; use a recipe with flow: "
        f"{', '.join(fits) or 'a dataset prepared with --flow'}, e.g. "
        f"--config={fits[0] if fits else 'FILE'}")


# What train writes into a model directory; --restart deletes exactly these.
RUN_OUTPUTS = ("config.json", "run.json", "model.keras", "metrics.json", "history.csv",
               "backup", "checkpoints", "logs", "stages", "workers")


def _check_model_dir(model_dir: Path, config, *, restart: bool = False) -> None:
    """A model_dir holding a run with other settings is refused (naming the differing keys),
    never silently resumed, skipped or overwritten; `restart` deletes that run first."""
    wanted = json.loads(json.dumps(config.to_json(), default=str))
    old = None
    if (model_dir / "config.json").exists():
        try:
            old = json.loads((model_dir / "config.json").read_text())
        except ValueError:
            old = {}
    elif (model_dir / "run.json").exists():  # written before config.json existed
        final = cfglib.stage_configs(config)[-1][1].model
        trained = read_run_info(model_dir).model
        old = wanted if trained == final else {**wanted, "model": trained}
    if old is None or old == wanted:
        model_dir.mkdir(parents=True, exist_ok=True)
        return
    if restart:
        print(f"[tfzoo] --restart: deleting the previous run in {model_dir}", flush=True)
        for name in RUN_OUTPUTS:
            path = model_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        return
    keys = sorted((k for k in set(old) | set(wanted) if old.get(k) != wanted.get(k)),
                  key=lambda k: (k != "model", k))  # the model first: the likeliest mix-up
    shown = ", ".join(f"{k}: {old.get(k)!r} there, {wanted.get(k)!r} now" for k in keys[:4])
    state = "a finished" if (model_dir / "run.json").exists() else "an unfinished"
    what = f" ({old.get('model')!r})" if "model" in keys else ""
    raise TrainError(
        f"{model_dir} holds {state} run{what} with other settings ({shown}"
        f"{', ...' if len(keys) > 4 else ''}); pass another --model_dir, --restart to delete "
        f"that run and start over, or continue from its weights with --set "
        f"init_from={model_dir} and a new --model_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = resolve_config()
        if FLAGS.logical_cpus:
            import tensorflow as tf  # deferred: loads TensorFlow

            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.logical_cpus)
        strategy = make_strategy(FLAGS.strategy)
        model_dir = Path(FLAGS.model_dir or f"runs/{FLAGS.model or Path(FLAGS.config).stem}")
        verbose = FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)
        metrics = run(config, model_dir, strategy, evaluate=FLAGS.evaluate, verbose=verbose,
                      restart=FLAGS.restart, data_service=FLAGS.data_service)
    except TfzooError as e:
        return report(e, "python -m tfzoo.train")
    if metrics:
        from tfzoo.registry import get_entry  # deferred: loads TensorFlow
        from tfzoo.tasks import get_task  # deferred: loads TensorFlow

        lines = get_task(get_entry(metrics["model"]).task).describe(metrics)
        print(f"[tfzoo] test {lines[0]}; wrote {model_dir / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
