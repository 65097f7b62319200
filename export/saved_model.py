"""SavedModel export for TensorFlow Serving (DESIGN.md, "Export contract").

`export_saved_model(model, info, export_dir)` writes `EXPORT_DIR/NAME/VERSION/`, the layout TF
Serving's file-system source polls, with:

  saved_model.pb, variables/     the graph and weights; loads with `tf.saved_model.load`
                                 in a process that never imports tfzoo
  assets.extra/tf_serving_warmup_requests
                                 PredictionLog records TF Serving replays at load time

Signature `serving_default` (method `tensorflow/serving/predict`):

  inputs   rgb   uint8   (B, T, H, W, 3)    raw RGB frames, T/H/W dynamic
           flow  float32 (B, T, H, W, 2L)   only for models with a flow input: a stack of L
                                            flow fields per frame in pixels at the resolution
                                            of `rgb`, channels u1, v1, ..., uL, vL, centred on
                                            RGB frame t (DESIGN.md "Tensor conventions")
  outputs  probabilities  float32 (B, C)    softmax of the model's logits
           top_k_indices  int32   (B, k)    classes by decreasing probability
           top_k_labels   string  (B, k)    RunInfo.class_names of those classes

Preprocessing in the graph is the uint8 -> float32 cast: every tfzoo model normalises its own
input (DESIGN.md), so the exported graph and the Keras model see the same values and agree to
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

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import keras
import tensorflow as tf

from tfzoo.tasks import get_task
from export.warmup import constant_tensor_proto, prediction_log_bytes, write_warmup_file

SERVING_DEFAULT = "serving_default"
SERVING_RGB_FLOW = "serving_rgb_flow"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TMP_PREFIX = ".tmp-export-"  # a dot name: TF Serving only treats all-digit names as versions


class ExportError(ValueError):
    """A bad export request (model, name, version or destination); the message says why."""


def input_layout(model) -> list[tuple[str, str, str, int]]:
    """[(signature input, model input, dtype, channels)] read from `model.inputs`."""
    specs = list(model.inputs)
    if len(specs) == 1:
        spec = specs[0]
        channels = spec.shape[-1]
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

    def __init__(self, model, class_names, *, top_k: int = 5, flow_fn: Callable | None = None):
        super().__init__(name="tfzoo_serving")
        # Only the Keras model's variables become SavedModel children. Tracking the model
        # object itself makes TF save Keras' own default signature too, which retraces the
        # model outside our control (and fails on tfzoo's eager input check).
        self._plain = _Untracked(model=model)
        self.model_variables = list(model.variables)
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
            self.flow_variables = list(flow_fn.variables)
        else:
            self.flow_fn = flow_fn  # a tf.Module or plain function: tracked as is
        self.has_flow_fn = flow_fn is not None
        if flow_fn is not None and len(self.layout) != 2:
            raise ExportError("flow_fn is only for models with both an 'rgb' and a 'flow' input")

        specs = {
            sig: tf.TensorSpec([None, None, None, None, ch], getattr(tf, dtype), name=sig)
            for sig, _, dtype, ch in self.layout
        }
        if flow_fn is None:
            self._plain.signature_specs = {SERVING_DEFAULT: list(specs.values())}
        else:
            self._plain.signature_specs = {SERVING_DEFAULT: [specs["rgb"]],
                                           SERVING_RGB_FLOW: list(specs.values())}
        self.serve = self._signature(self._plain.signature_specs[SERVING_DEFAULT],
                                     compute_flow=flow_fn is not None)
        if flow_fn is not None:
            self.serve_rgb_flow = self._signature(self._plain.signature_specs[SERVING_RGB_FLOW])

    def _signature(self, specs, compute_flow: bool = False):
        names = [s.name for s in specs]

        def serve(*tensors):
            return self.predict(dict(zip(names, tensors)), compute_flow=compute_flow)

        return tf.function(serve, input_signature=specs, autograph=False)

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
        # keras.Model.__call__ directly: tfzoo's VideoModel.__call__ adds an eager input check
        # that cannot read symbolic tensors (it calls np.asarray on them), and the signature's
        # TensorSpecs already fix rank, channels and dtype.
        outputs = keras.Model.__call__(self._plain.model, model_inputs, training=False)
        return self._plain.task.export_outputs(outputs, class_names=self._plain.class_names,
                                               top_k=self.top_k)

    def signatures(self) -> dict:
        out = {SERVING_DEFAULT: self.serve.get_concrete_function()}
        if self.has_flow_fn:
            out[SERVING_RGB_FLOW] = self.serve_rgb_flow.get_concrete_function()
        return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Untracked:
    """A plain attribute bag: tf.Module does not track what is inside it."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def existing_versions(model_base: str | os.PathLike) -> list[int]:
    """Integer version directories under EXPORT_DIR/NAME, sorted."""
    base = Path(model_base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


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

    The version is written under a temporary name in the same directory and renamed into place,
    so a reader (TF Serving polls the directory) sees either nothing or a complete version.
    Raises ExportError for an existing version, a bad name, or a model/RunInfo mismatch.
    """
    final = resolve_version_dir(export_dir, info.model if name is None else name, version)
    name, version, base = final.parent.name, int(final.name), final.parent

    if isinstance(flow_fn, str):
        flow_fn = in_graph_flow(flow_fn, model, info)
    module = ServingModule(model, info.class_names, top_k=top_k, flow_fn=flow_fn)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{version}-", dir=base))
    try:
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
    return final


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
    from tfzoo.flow import TwoStreamFrames

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
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version={version!r}; expected a positive integer")
    final = base / str(version)
    if final.exists():
        raise ExportError(
            f"{final} already exists; versions are never overwritten: choose another version "
            f"or omit it to use {(versions[-1] + 1) if versions else 1}"
        )
    return final


def warmup_records(module: ServingModule, name: str, info) -> list[bytes]:
    """One request per signature at the training clip geometry (mid-grey frames, zero flow)."""
    h, w = (int(s) for s in info.image_size)
    records = []
    for sig_name, specs in module._plain.signature_specs.items():
        inputs = {}
        # An RGB-only signature with in-graph flow needs at least one frame pair.
        t = int(info.num_frames) if len(specs) > 1 or not module.has_flow_fn else max(
            2, int(info.num_frames))
        for spec in specs:
            channels = int(spec.shape[-1])
            if spec.dtype == tf.uint8:
                inputs[spec.name] = constant_tensor_proto((1, t, h, w, channels), "uint8", 128)
            else:
                inputs[spec.name] = constant_tensor_proto((1, t, h, w, channels), "float32", 0.0)
        records.append(prediction_log_bytes(name, sig_name, inputs))
    return records
