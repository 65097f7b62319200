"""SavedModel export for TensorFlow Serving (docs/design.md, "Export contract").

`export_saved_model(model, info, export_dir)` writes `EXPORT_DIR/NAME/VERSION/`, the layout TF
Serving's file-system source polls, with:

  saved_model.pb, variables/     the graph and weights; loads with the TF1 session loader
                                 (TF Serving, `saved_model_cli run`) and with
                                 `tf.saved_model.load`, in a process that never imports tfzoo
  assets.extra/tf_serving_warmup_requests
                                 PredictionLog records TF Serving replays at load time

Signature `serving_default` (method `tensorflow/serving/predict`):

  inputs   rgb   uint8   (B, T, H, W, 3)    raw RGB frames, T/H/W dynamic
           flow  float32 (B, T, H, W, 2L)   only for models with a flow input: a stack of L
                                            flow fields per frame in pixels at the resolution
                                            of `rgb`, channels u1, v1, ..., uL, vL, centred on
                                            RGB frame t (docs/design.md, "Tensor conventions")
  outputs  probabilities  float32 (B, C)    softmax of the model's logits
           top_k_indices  int32   (B, k)    classes by decreasing probability
           top_k_labels   string  (B, k)    RunInfo.class_names of those classes

Signature `serving_encoded` (RGB-only models, and two-stream models with in-graph flow):

  inputs   frames  string  (B, T)           one JPEG or PNG encoded RGB frame per element,
                                            decoded and resized in the graph (`decode_frames`)
  outputs  as serving_default

Preprocessing in the graph is the uint8 -> float32 cast: every tfzoo model normalises its own
input (docs/design.md), so the exported graph and the Keras model see the same values and agree to
float rounding.

Which model inputs the signature has is read from `model.inputs`: one input with 3 channels is
`rgb`; one input with any other channel count is `flow`; two inputs must be named `rgb` and
`flow`. The outputs are built by the model's task (`tfzoo.tasks`, `Task.export_outputs`): a
classifier's test-time score (a two-stream model's "fused" logits) through softmax and top-k.

Flow from RGB in the graph: pass `flow_fn`, a callable, tf.Module or Keras layer mapping float32
RGB (B, N, H, W, 3) in [0, 255] either to flow (B, N, H, W, 2L) for those frames, or to a dict
{"rgb": (B, T, ...), "flow": (B, T, ..., 2L)} that also picks the model's frames; or pass
`flow_fn="tvl1"` for `tfzoo.flow.TwoStreamFrames` (T = RunInfo.num_frames equally spaced
frames of a dense clip, each with L = flow channels / 2 TV-L1 fields centred on it). Then
`serving_default` takes `rgb` only and a second signature `serving_rgb_flow` takes both `rgb`
and precomputed `flow`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging as absl_logging  # TF logs through absl and its own logger

from .warmup import constant_tensor_proto, prediction_log_bytes, write_warmup_file
from tfzoo.data.augment import resize_short_side
from tfzoo.errors import TfzooError
from tfzoo.flow import TwoStreamFrames
from tfzoo.tasks import get_task

SERVING_DEFAULT = "serving_default"
SERVING_RGB_FLOW = "serving_rgb_flow"
SERVING_ENCODED = "serving_encoded"
ENCODED_INPUT = "frames"
MAX_FRAME_SIDE = 4096  # serving_encoded refuses larger frames before decoding them (4K video fits)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TMP_PREFIX = ".tmp-export-"  # a dot name: TF Serving only treats all-digit names as versions
logger = logging.getLogger(__name__)


class ExportError(TfzooError):
    """A bad export request (model, name, version or destination); the message says why."""


def input_layout(model) -> list[tuple[str, str, str, int]]:
    """[(signature input, model input, dtype, channels)] read from `model.inputs`."""
    specs = list(model.inputs)
    if len(specs) == 1:
        spec = specs[0]
        channels = spec.shape[-1]
        if len(spec.shape) == 4 and channels == 3:  # a detector's frames (B, H, W, 3)
            return [("images", spec.name, "uint8", 3)]
        if len(spec.shape) != 5 or channels is None:
            raise ExportError(
                f"model input {spec.name!r} has shape {tuple(spec.shape)}; expected a video "
                "(batch, frames, height, width, channels) with a fixed channel count"
            )
        if channels == 3:
            return [("rgb", spec.name, "uint8", 3)]
        return [("flow", spec.name, "float32", int(channels))]
    names = sorted(s.name for s in specs)
    if names != ["flow", "rgb"]:
        raise ExportError(
            f"model inputs are named {names}; a multi-input model must have exactly the inputs "
            "'rgb' (B, T, H, W, 3) and 'flow' (B, T, H, W, 2L)"
        )
    layout = []
    for spec in sorted(specs, key=lambda s: s.name != "rgb"):  # rgb first
        channels = spec.shape[-1]
        if spec.name == "rgb" and channels != 3:
            raise ExportError(f"model input 'rgb' has {channels} channels; expected 3")
        if channels is None:
            raise ExportError(f"model input {spec.name!r} has no fixed channel count")
        dtype = "uint8" if spec.name == "rgb" else "float32"
        layout.append((spec.name, spec.name, dtype, int(channels)))
    return layout


class ServingModule(tf.Module):
    """The exported object: the Keras model plus in-graph pre- and post-processing."""

    def __init__(self, model, class_names, *, top_k: int = 5, flow_fn: Callable | None = None,
                 encoded_short_side: int = 0):
        super().__init__(name="tfzoo_serving")
        # Neither the Keras model nor its variables are tracked: tracking the model makes TF
        # save Keras' own default signature too (it retraces the model outside our control and
        # fails on tfzoo's eager input check), and a Keras variable is a wrapper that exports
        # as a second tf.Variable next to the one the graph reads, which the TF1 session loader
        # (TF Serving, saved_model_cli) then leaves uninitialised. The tf.Variables the traced
        # signatures capture are tracked instead, at the end of __init__, as Keras'
        # ExportArchive does.
        self._plain = _Untracked(model=model)
        self.layout = input_layout(model)
        self._plain.task = get_task(model)
        try:
            self._plain.task.check_export(model, class_names, top_k)
        except ValueError as e:
            raise ExportError(str(e)) from None
        self.top_k = top_k
        self._plain.class_names = list(class_names)
        if isinstance(flow_fn, keras.layers.Layer):  # models too; see self._plain above
            self._plain.flow_fn = flow_fn
        else:
            self.flow_fn = flow_fn  # a tf.Module or plain function: tracked as is
        self.has_flow_fn = flow_fn is not None
        if flow_fn is not None and len(self.layout) != 2:
            raise ExportError("flow_fn is only for models with both an 'rgb' and a 'flow' input")
        if isinstance(encoded_short_side, bool) or not isinstance(encoded_short_side, int) \
                or encoded_short_side < 0:
            raise ExportError(f"encoded_short_side={encoded_short_side!r}; expected a positive "
                              "integer, or 0 to keep the decoded frame size")
        self.encoded_short_side = encoded_short_side

        specs = {
            sig: tf.TensorSpec([None] * (rank - 1) + [ch], getattr(tf, dtype), name=sig)
            for (sig, _, dtype, ch), rank in zip(self.layout, self._input_ranks(model))
        }
        if flow_fn is None:
            self._plain.signature_specs = {SERVING_DEFAULT: list(specs.values())}
        else:
            self._plain.signature_specs = {SERVING_DEFAULT: [specs["rgb"]],
                                           SERVING_RGB_FLOW: list(specs.values())}
        # The signature functions are not tracked either: they are saved as signatures only
        # (tracked tf.functions would be traced again by tf.saved_model.save, doubling the
        # export time, to be callable as attributes that no server uses).
        functions = self._plain.functions = {}
        functions[SERVING_DEFAULT] = self._signature(
            self._plain.signature_specs[SERVING_DEFAULT], compute_flow=flow_fn is not None)
        if flow_fn is not None:
            functions[SERVING_RGB_FLOW] = self._signature(
                self._plain.signature_specs[SERVING_RGB_FLOW])
        # Encoded frames are RGB only: a model that also needs a flow input gets this signature
        # when the flow is computed in the graph (a client-side flow tensor, 20 float32 channels
        # per pixel, would dwarf the encoded frames it travels with).
        if [sig for sig, *_ in self.layout] == ["rgb"] or flow_fn is not None:
            frames = tf.TensorSpec([None, None], tf.string, name=ENCODED_INPUT)
            self._plain.signature_specs[SERVING_ENCODED] = [frames]
            functions[SERVING_ENCODED] = tf.function(self._serve_encoded,
                                                     input_signature=[frames], autograph=False)
        # Signatures of the task's own (a D&T detector's frame-pair `detect_track`).
        for name, (sig_specs, fn) in self._plain.task.extra_signatures(
                model, self._plain.class_names).items():
            if name in functions:
                raise ExportError(f"{type(self._plain.task).__name__}.extra_signatures returns "
                                  f"{name!r}, a signature export already makes")
            self._plain.signature_specs[name] = list(sig_specs)
            functions[name] = tf.function(fn, input_signature=list(sig_specs), autograph=False)
        self.captured_variables = _captured_variables(self.signatures().values())

    def _input_ranks(self, model) -> list[int]:
        by_name = {s.name: len(s.shape) for s in model.inputs}
        return [by_name[name] for _, name, *_ in self.layout]

    def _signature(self, specs, compute_flow: bool = False):
        names = [s.name for s in specs]

        def serve(*tensors):
            return self.predict(dict(zip(names, tensors)), compute_flow=compute_flow)

        return tf.function(serve, input_signature=specs, autograph=False)

    def _serve_encoded(self, frames):
        rgb = decode_frames(frames, self.encoded_short_side)
        return self.predict({"rgb": rgb}, compute_flow=self.has_flow_fn)

    def predict(self, inputs: dict, compute_flow: bool = False) -> dict:
        frames = {sig: tf.cast(inputs[sig], tf.float32) for sig in inputs}
        if compute_flow:
            flow_fn = getattr(self._plain, "flow_fn", None) or self.flow_fn
            computed = flow_fn(frames["rgb"])
            if isinstance(computed, dict):
                frames = {k: tf.cast(v, tf.float32) for k, v in computed.items()}
            else:
                frames["flow"] = tf.cast(computed, tf.float32)
        if len(self.layout) == 1:
            model_inputs = frames[self.layout[0][0]]
        else:
            model_inputs = {model_name: frames[sig] for sig, model_name, *_ in self.layout}
        # The task runs the model (a classifier's forward pass, a detector's detect()); the
        # signature's TensorSpecs already fix rank, channels and dtype.
        outputs = self._plain.task.serve(self._plain.model, model_inputs)
        # What the outputs become in the signature is the model's task's (tfzoo.tasks); the
        # rest of this module (inputs, encoded frames, in-graph flow, warmup, versions) is the
        # same for any video model.
        return self._plain.task.export_outputs(outputs, class_names=self._plain.class_names,
                                               top_k=self.top_k)

    def signatures(self) -> dict:
        return {name: fn.get_concrete_function() for name, fn in self._plain.functions.items()}


# --- Encoded frames ----------------------------------------------------------------------------


def decode_frames(encoded: tf.Tensor, short_side: int) -> tf.Tensor:
    """(B, T) JPEG/PNG-encoded RGB frames -> float32 (B, T, H, W, 3) in [0, 255], in the graph.

    Core TensorFlow ops only (stock TF Serving runs them). All frames of a request must have
    the same size; they are resized so the shorter side is `short_side` (the evaluation
    protocol's `tfzoo.data.augment.resize_short_side`: bilinear, aspect kept, not rounded back
    to integers), or kept as decoded when `short_side` is 0. Bad input fails the request with
    InvalidArgument naming the frame: an empty batch, a frame that is not JPEG or PNG, one larger
    than MAX_FRAME_SIDE on a side (read from its header before decoding), frames of different
    sizes.
    """
    shape = tf.shape(encoded, out_type=tf.int32)
    flat = tf.reshape(encoded, [-1])
    n = tf.size(flat)
    not_empty = tf.debugging.Assert(n > 0, [
        f"{SERVING_ENCODED}: '{ENCODED_INPUT}' has shape", shape,
        "; expected (B, T) encoded frames with B >= 1 and T >= 1"])
    with tf.control_dependencies([not_empty]):
        size = tf.shape(_decode_frame(flat, 0, shape))[:2]

    def decode(i):
        image = _decode_frame(flat, i, shape)
        same = tf.debugging.Assert(tf.reduce_all(tf.equal(tf.shape(image)[:2], size)), [
            f"{SERVING_ENCODED}: frames[b, t] for (b, t) =", i // shape[1], i % shape[1],
            "has height, width", tf.shape(image)[:2], "but frames[0, 0] has", size,
            "; all frames of a request must have the same size"], summarize=4)
        with tf.control_dependencies([same]):
            return tf.identity(image)

    images = tf.map_fn(decode, tf.range(n),
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    if short_side:
        images = resize_short_side(images, short_side)
    else:
        images = tf.cast(images, tf.float32)
    return tf.reshape(images, tf.concat([shape, tf.shape(images)[1:]], axis=0))


def _decode_frame(flat, i, shape):
    data = flat[i]
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")
    known = tf.logical_or(is_jpeg, tf.equal(tf.strings.substr(data, 0, 8), b"\x89PNG\r\n\x1a\n"))
    where = [f"{SERVING_ENCODED}: frames[b, t] for (b, t) =", i // shape[1], i % shape[1]]
    check = tf.debugging.Assert(known, where + [
        "is not a JPEG or PNG image (length in bytes:", tf.strings.length(data),
        "); expected each element to be one encoded RGB frame"])
    with tf.control_dependencies([check]):
        # The size from the header, before decoding: a small PNG of a huge blank frame would
        # otherwise allocate gigabytes.
        size = tf.cond(is_jpeg, lambda: tf.io.extract_jpeg_shape(data, tf.int64)[:2],
                       lambda: _png_size(data))
    small = tf.debugging.Assert(tf.reduce_max(size) <= MAX_FRAME_SIDE, where + [
        "is", size, f"pixels (height, width); frames may be at most {MAX_FRAME_SIDE} pixels "
        "on a side"])
    with tf.control_dependencies([small]):
        return tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)


def _png_size(data):
    """(height, width) from a PNG's IHDR chunk (big-endian width, height at bytes 16-23)."""
    header = tf.strings.substr(tf.strings.join([data, b"\0" * 24]), 16, 8)
    b = tf.cast(tf.io.decode_raw(header, tf.uint8), tf.int64)  # int32 would wrap at 2**31
    width = b[0] * 2**24 + b[1] * 2**16 + b[2] * 2**8 + b[3]
    height = b[4] * 2**24 + b[5] * 2**16 + b[6] * 2**8 + b[7]
    return tf.stack([height, width])


def _captured_variables(concrete_fns) -> list[tf.Variable]:
    """The tf.Variables the traced functions read, each once, in first-use order."""
    seen, out = set(), []
    for fn in concrete_fns:
        for v in fn.variables:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


@contextlib.contextmanager
def _quiet_tensorflow_info():
    """TF's saver logs INFO lines that are none of the user's business (variable renames,
    sharding timings, the temporary directory's paths); warnings still show."""
    tf_logger = logging.getLogger("tensorflow")
    tf_level, absl_level = tf_logger.level, absl_logging.get_verbosity()
    tf_logger.setLevel(max(tf_level, logging.WARNING))
    absl_logging.set_verbosity(min(absl_level, absl_logging.WARNING))  # absl: higher = more
    try:
        yield
    finally:
        tf_logger.setLevel(tf_level)
        absl_logging.set_verbosity(absl_level)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Untracked:
    """A plain attribute bag: tf.Module does not track what is inside it."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


# TF Serving reads version directory names as int64 and ignores larger ones.
MAX_VERSION = 2**63 - 1


def existing_versions(model_base: str | os.PathLike) -> list[int]:
    """Integer version directories under EXPORT_DIR/NAME, sorted."""
    base = Path(model_base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir()
                  if p.is_dir() and p.name.isascii() and p.name.isdigit()
                  and int(p.name) <= MAX_VERSION)


def export_saved_model(
    model,
    info,
    export_dir: str | os.PathLike,
    name: str | None = None,
    version: int | None = None,
    top_k: int = 5,
    *,
    warmup: bool = True,
    flow_fn: Callable | str | None = None,
    encoded_short_side: int | None = None,
) -> Path:
    """Exports `model` to EXPORT_DIR/NAME/VERSION and returns that path.

    Args:
      model: a Keras model returning logits (or a dict of logits per stream).
      info: its `tfzoo.rundir.RunInfo` (class names; clip geometry for the warmup request).
      export_dir: the TF Serving model base directory's parent.
      name: model name in TF Serving; defaults to `info.model`.
      version: a positive integer not yet used; defaults to one more than the highest existing.
      top_k: number of classes in `top_k_*` (clipped to the class count).
      warmup: write `assets.extra/tf_serving_warmup_requests`.
      flow_fn: in-graph flow from RGB for two-stream models: "tvl1", or a callable (see the
        module docstring).
      encoded_short_side: `serving_encoded` resizes decoded frames so their shorter side is
        this (0: keep the decoded size); defaults to `default_encoded_short_side(info)`.

    The version is written under a temporary name in the same directory and renamed into place,
    so a reader (TF Serving polls the directory) sees either nothing or a complete version.
    Temporary directories that killed exports left behind are removed first
    (`remove_stale_temporaries`).
    Raises ExportError for an existing version, a bad name, or a model/RunInfo mismatch.
    """
    final = resolve_version_dir(export_dir, info.model if name is None else name, version)
    name, version, base = final.parent.name, int(final.name), final.parent

    if isinstance(flow_fn, str):
        flow_fn = in_graph_flow(flow_fn, model, info)
    if encoded_short_side is None:
        encoded_short_side = default_encoded_short_side(info)
    module = ServingModule(model, info.class_names, top_k=top_k, flow_fn=flow_fn,
                           encoded_short_side=encoded_short_side)
    base.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(base)
    tmp, lock = _reserve_temporary(base, version)
    try:
        with _quiet_tensorflow_info():
            tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        if warmup:
            write_warmup_file(tmp, warmup_records(module, name, info))
        if final.exists():  # another exporter took this version while we were writing
            raise ExportError(f"{final} appeared during the export; versions are never overwritten")
        # mkdtemp makes the directory owner-only; a version must be readable like any export.
        os.chmod(tmp, 0o777 & ~_umask())
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _release(lock)
    return final


def default_encoded_short_side(info) -> int:
    """The evaluation protocol's frame size: the run's `test_short_side`, else min(image_size)."""
    configured = (info.config or {}).get("test_short_side")
    return int(configured) if configured else int(min(info.image_size))


# A temporary version directory `.tmp-export-VERSION-RANDOM` has a lock file next to it,
# `.tmp-export-VERSION-RANDOM.lock`, locked (POSIX record lock, which NFS honours too) by the
# exporting process for as long as it writes. The kernel drops the lock when that process ends,
# however it ends, so whoever can take the lock knows nobody writes that directory: no guess
# from host names or pids, which another container can share.
_LOCK_SUFFIX = ".lock"
STALE_AFTER_SECONDS = 3600  # temporaries without a lock file (older tfzoo): by age


def _reserve_temporary(base: Path, version: int):
    """Creates and locks the lock file, then the directory: a directory whose lock file is
    unlocked (or gone, once it existed) is never being written."""
    import fcntl  # deferred: POSIX only (the lock)

    while True:
        name = f"{_TMP_PREFIX}{version}-{os.urandom(6).hex()}"
        try:
            fd = os.open(base / (name + _LOCK_SUFFIX), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except FileExistsError:
            continue
        fcntl.lockf(fd, fcntl.LOCK_EX)
        (base / name).mkdir(mode=0o700)
        return base / name, (fd, base / (name + _LOCK_SUFFIX))


def _release(lock) -> None:
    fd, path = lock
    path.unlink(missing_ok=True)  # before the unlock: nobody can take a lock of a finished export
    os.close(fd)


def _try_lock(path: Path):
    """An fd holding the lock of `path`, or None when a live process holds it (or it is gone)."""
    import fcntl  # deferred: POSIX only (the lock)

    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale_temporaries(model_base: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Removes `.tmp-export-*` directories of exports that were killed; returns them.

    An export holds a lock on its temporary directory's lock file while it writes; a directory
    whose lock can be taken belongs to an export that ended without renaming it (killed), and
    is removed, with its lock file. A directory without a lock file (written by a tfzoo that
    did not lock) is removed when it has not been modified for STALE_AFTER_SECONDS.
    """
    base = Path(model_base)
    if not base.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for path in sorted(base.iterdir()):
        if not path.name.startswith(_TMP_PREFIX) or path.name.endswith(_LOCK_SUFFIX):
            continue
        lock_path = path.with_name(path.name + _LOCK_SUFFIX)
        if lock_path.exists():
            fd = _try_lock(lock_path)
            if fd is None:
                continue  # a live export (or one that just finished)
            try:
                if path.exists():
                    logger.warning("removing %s, left by an export that did not finish", path)
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
                lock_path.unlink(missing_ok=True)
            finally:
                os.close(fd)
            continue
        try:
            stale = path.is_dir() and now - path.stat().st_mtime > STALE_AFTER_SECONDS
        except FileNotFoundError:  # removed by another exporter meanwhile
            continue
        if stale:
            logger.warning("removing %s, left by an export that did not finish", path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    for lock_path in base.glob(f"{_TMP_PREFIX}*{_LOCK_SUFFIX}"):  # a lock whose directory is gone
        if not lock_path.with_name(lock_path.name[:-len(_LOCK_SUFFIX)]).exists():
            fd = _try_lock(lock_path)
            if fd is not None:
                lock_path.unlink(missing_ok=True)
                os.close(fd)
    return removed


def in_graph_flow(kind: str, model, info):
    """`flow_fn` for `kind` ("tvl1"): TV-L1 flow stacks from a dense RGB clip.

    T is the run's test clip length (`info.num_frames`) and L half the model's flow channels.
    """
    if kind != "tvl1":
        raise ExportError(f"flow_fn={kind!r}: expected 'tvl1' or a callable")
    layout = {sig: ch for sig, _, _, ch in input_layout(model)}
    if set(layout) != {"rgb", "flow"}:
        raise ExportError(f"flow_fn='tvl1' is for two-stream models with 'rgb' and 'flow' "
                          f"inputs; this model's inputs are {sorted(layout)}")
    if layout["flow"] % 2:
        raise ExportError(f"the model's flow input has {layout['flow']} channels; expected 2L "
                          "(u, v per field)")

    return TwoStreamFrames(num_chunks=int(info.num_frames), flow_stack=layout["flow"] // 2)


def resolve_version_dir(export_dir: str | os.PathLike, name: str, version: int | None) -> Path:
    """EXPORT_DIR/NAME/VERSION for a new export; raises ExportError if it cannot be used."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ExportError(
            f"model name {name!r} is not usable as a TF Serving model name and directory; "
            "expected letters, digits, '_', '-', '.' (not starting with '.', '-' or '_')"
        )
    base = Path(export_dir) / name
    versions = existing_versions(base)
    if version is None:
        version = (versions[-1] + 1) if versions else 1
        if version > MAX_VERSION:
            raise ExportError(f"{base} has version {versions[-1]}: there is no version after "
                              f"{MAX_VERSION} (TF Serving reads versions as int64); export "
                              "under another --name")
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version={version!r}; expected a positive integer")
    elif version > MAX_VERSION:
        raise ExportError(f"version={version}; expected at most 2^63 - 1 = {MAX_VERSION} (TF "
                          "Serving reads versions as int64 and ignores larger directory names)")
    final = base / str(version)
    if final.exists():
        raise ExportError(
            f"{final} already exists; versions are never overwritten: choose another version "
            f"or omit it to use {(versions[-1] + 1) if versions else 1}"
        )
    return final


def warmup_records(module: ServingModule, name: str, info) -> list[bytes]:
    """One request per signature at the training clip geometry (mid-grey frames, zero flow).

    `serving_encoded` gets the same mid-grey frames as PNGs.
    """
    h, w = (int(s) for s in info.image_size)
    records = []
    for sig_name, specs in module._plain.signature_specs.items():
        if not specs:  # a constant (D&T's class_names): nothing to warm up
            continue
        inputs = {}
        # An RGB-only signature with in-graph flow needs at least one frame pair.
        t = int(info.num_frames) if len(specs) > 1 or not module.has_flow_fn else max(
            2, int(info.num_frames))
        for spec in specs:
            if spec.dtype == tf.string:
                png = tf.io.encode_png(tf.fill([h, w, 3], tf.constant(128, tf.uint8))).numpy()
                inputs[spec.name] = tf.make_tensor_proto(np.full((1, t), png, dtype=object))
                continue
            channels = int(spec.shape[-1])
            # A fixed second axis (D&T's frame pairs) is taken as it is.
            frames_axis = t if spec.shape.rank < 2 or spec.shape[1] is None else int(spec.shape[1])
            shape = (1, frames_axis, h, w, channels) if spec.shape.rank == 5 else (1, h, w, channels)
            if spec.dtype == tf.uint8:
                inputs[spec.name] = constant_tensor_proto(shape, "uint8", 128)
            else:
                inputs[spec.name] = constant_tensor_proto(shape, "float32", 0.0)
        records.append(prediction_log_bytes(name, sig_name, inputs))
    return records
