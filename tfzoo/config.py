"""Training configs: one typed dataclass, recipes as plain Python files in configs/.

A config file defines `CONFIG = TrainConfig(...)`. Multi-stage recipes (T-ResNet: a spatial
stage, then a spatiotemporal stage) list `stages`: each stage is a dict of field overrides
applied on top of the base config; stage k > 0 starts from stage k-1's weights (copied by layer
name). Overrides from the command line (`--set key=value`, or the dedicated flags) apply to
the base config and so to every stage, unless a stage sets the same key.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.resources
import importlib.util
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tfzoo.errors import TfzooError
from tfzoo.protocols import PROTOCOLS
from tfzoo.utils import check_choice

# The recipes ship as the package tfzoo.configs (the repository's configs/ folder); they are
# read as files (`load_config_file`), and they import this module.
CONFIG_DIR = Path(str(importlib.resources.files("tfzoo.configs"))).resolve()


class ConfigError(TfzooError):
    pass


@dataclass(frozen=True)
class TrainConfig:
    # Model
    model: str = "tresnet_small"  # registry name
    model_overrides: dict = field(default_factory=dict)  # constructor arguments
    weights: str | None = None  # "imagenet", a keras.applications .h5 path or (VGG-M) a MatConvNet .mat
    # Data
    dataset: str = "synthetic"  # "synthetic" or "records" (a prepared directory, see --data)
    data_dir: str | None = None
    dataset_options: dict = field(default_factory=dict)  # e.g. SyntheticConfig fields
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str = "test"
    num_frames: int = 8
    stride_range: tuple = (2, 3)
    image_size: tuple = (48, 48)
    test_num_frames: int = 8
    test_short_side: int | None = None
    test_flip: bool = True
    # A named test protocol of tfzoo.protocols ("chunks25_flip", "dense20", "crop10", ...): which
    # chunks and crops are classified and averaged. None: test_num_frames equally spaced chunks,
    # full frame, + flip if test_flip (a named protocol fixes those two itself).
    test_protocol: str | None = None
    scale_jitter: float = 0.25
    border: float = 0.25
    flip: bool = True
    # D&T evaluation (thesis §8.5.3): the temporal strides tau at which the linked detections
    # are scored, each offline and online (`tfzoo.tasks.detection.evaluate_linked`); other
    # models ignore it
    link_strides: tuple = (1, 10)
    # Optimisation
    batch_size: int = 16
    epochs: int = 10
    steps_per_epoch: int | None = None  # None: one pass over the training videos
    optimizer: str = "sgd"  # "sgd" (momentum) or "adam"
    learning_rate: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str = "plateau"  # "plateau", "steps", "cosine" or "constant"
    lr_decay: float = 0.1
    lr_boundaries: tuple = ()  # epochs at which "steps" decays
    plateau_patience: int = 2
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    grad_accum_steps: int = 1  # reach the paper's batch when memory is short
    precision: str = "float32"  # "float32", "mixed_bfloat16", "mixed_float16"
    jit_compile: bool = False  # XLA made Conv3D training ~5x slower on this CPU (measured)
    seed: int = 0
    checkpoint_every_steps: int | None = None  # backup within an epoch (tfzoo/backup.py); None: per epoch
    train_streams: tuple | None = None  # two-stream models: train only these ("rgb", "flow")
    flow_rescale: bool = False  # scale stored flow by the crop-resize factor (not the paper's)
    # Multi-stage recipes
    stages: tuple = ()
    init_from: str | None = None  # a model_dir whose weights start this run

    def replace(self, **changes) -> "TrainConfig":
        return apply_overrides(self, changes)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in fields(TrainConfig)}
CHOICES = {
    "optimizer": ("sgd", "adam"),
    "lr_schedule": ("plateau", "steps", "cosine", "constant"),
    "precision": ("float32", "mixed_bfloat16", "mixed_float16"),
    "dataset": ("synthetic", "records", "conjunction", "detection", "detection_synthetic"),
}


def _unknown(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(FIELDS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(
        f"unknown config key {key!r}.{hint} Valid keys: {', '.join(sorted(FIELDS))}"
    )


def _coerce(key: str, value: Any) -> Any:
    default = getattr(TrainConfig(), key) if key not in ("model_overrides", "dataset_options") else {}
    if isinstance(value, str) and not isinstance(default, str) and key not in ("weights", "data_dir", "init_from", "val_split", "test_protocol"):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ConfigError(f"config key {key!r}: cannot parse {value!r} as a Python literal") from None
    if value == "None" and FIELDS[key].default is None:  # --set weights=None
        return None
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]  # --set optimizer='sgd' as well as --set optimizer=sgd
    if isinstance(value, list):
        value = tuple(value)
    if key in CHOICES:
        try:
            check_choice(f"config key {key!r} value", value, CHOICES[key])
        except TfzooError as e:
            raise ConfigError(str(e)) from None
    if isinstance(default, bool) and key != "jit_compile" and not isinstance(value, bool):
        raise ConfigError(f"config key {key!r}: got {value!r}; expected True or False")
    if isinstance(default, (int, float)) and not isinstance(default, bool) and value is not None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key {key!r}: got {value!r}; expected a number")
        value = type(default)(value) if isinstance(default, float) else value
    return _check_type(key, value)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_type(key: str, value: Any) -> Any:
    """Type and range of one value, so that a wrong `--set` fails here, in a second, rather
    than as a TypeError deep in tracing (and before anything is written)."""
    if value is None and "None" in FIELDS[key].type:
        return value
    if key == "test_protocol":
        try:
            return check_choice("config key 'test_protocol' value", value, PROTOCOLS)
        except TfzooError as e:
            raise ConfigError(str(e)) from None
    kind = FIELDS[key].type.split(" | ")[0]  # annotations are strings (PEP 563)
    hint = ""
    if key in PAIRS:
        if (isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) and v >= 1 for v in value)
                and (key != "stride_range" or value[0] <= value[1])):
            return value
        expected = PAIRS[key]
        hint = f" (quote it for the shell: --set '{key}={EXAMPLES[key]}')"
    elif kind == "int":
        if _is_int(value) and value >= MINIMUM.get(key, 0):
            return value
        expected = f"an integer >= {MINIMUM.get(key, 0)}"
    elif kind == "float":
        if value >= 0 and (value > 0 or key not in POSITIVE):
            return value
        expected = "a number > 0" if key in POSITIVE else "a number >= 0"
    elif kind == "str":
        if isinstance(value, str) and value:
            return value
        expected = "a string"
    elif kind == "dict":
        if isinstance(value, dict):
            return value
        expected = "a dict, e.g. {'width': 4}"
    elif key == "jit_compile":
        if isinstance(value, bool) or value == "auto":
            return value
        expected = "True, False or 'auto'"
    elif key == "train_streams":
        if isinstance(value, tuple) and value and all(v in ("rgb", "flow") for v in value):
            return value
        expected = "a tuple of 'rgb' and/or 'flow'"
    elif key == "link_strides":
        if isinstance(value, tuple) and value and all(_is_int(v) and v >= 1 for v in value):
            return value
        expected = "a non-empty tuple of temporal strides >= 1, e.g. (1, 10)"
        hint = " (quote it for the shell: --set 'link_strides=(1,4,10)')"
    elif key == "lr_boundaries":
        if isinstance(value, tuple) and all(_is_int(v) and v >= 0 for v in value):
            return value
        expected = "a tuple of epoch numbers"
    elif key == "stages":
        if isinstance(value, tuple) and all(isinstance(v, dict) for v in value):
            return value
        expected = "a tuple of dicts"
    else:
        return value
    raise ConfigError(f"config key {key!r}: got {value!r}; expected {expected}{hint}")


# Two positive integers; the pair is (height, width) or (min, max).
PAIRS = {"image_size": "(height, width), two integers >= 1",
         "stride_range": "(min, max) temporal strides, integers with 1 <= min <= max"}
EXAMPLES = {"image_size": "(64,64)", "stride_range": "(2,3)"}
# Integer keys with a lower bound above 0: a run with 0 epochs or frames does nothing useful
# and would still be recorded as finished.
MINIMUM = {"epochs": 1, "batch_size": 1, "num_frames": 1, "test_num_frames": 1,
           "steps_per_epoch": 1, "grad_accum_steps": 1, "checkpoint_every_steps": 1,
           "test_short_side": 1, "plateau_patience": 0, "warmup_epochs": 0, "seed": 0}
POSITIVE = {"learning_rate", "lr_decay"}


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Returns `config` with `overrides`, checking every key and value."""
    clean = {}
    for key, value in overrides.items():
        if key not in FIELDS:
            raise _unknown(key)
        clean[key] = _coerce(key, value)
    result = dataclasses.replace(config, **clean)
    fixed = [k for k in ("test_num_frames", "test_flip") if k in clean]
    if result.test_protocol is not None and fixed and "test_protocol" not in clean:
        raise ConfigError(
            f"{fixed[0]}={clean[fixed[0]]!r} would have no effect: test_protocol="
            f"{result.test_protocol!r} fixes the test chunks and flips; set test_protocol to "
            f"another protocol, or to None to test with test_num_frames / test_flip")
    for key in FIELDS:  # values written in a config file are checked too
        if key not in clean:
            _check_type(key, getattr(result, key))
    for stage in result.stages:
        for key in stage:
            if key not in FIELDS and key != "name":
                raise _unknown(key)
    return result


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """["lr=0.1", "image_size=(64,64)"] -> {"lr": "0.1", ...} (values parsed later)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def config_path(spec: str) -> Path:
    """The file `--config=spec` names: a shipped recipe `configs/NAME.py` for a bare NAME, a
    file for a PATH (one containing a `/` or ending in `.py`, relative to the current
    directory). A file in the current directory never shadows a shipped recipe's name."""
    shipped = sorted(q.stem for q in CONFIG_DIR.glob("*.py") if not q.stem.startswith("_"))
    if "/" in spec or os.sep in spec or spec.endswith(".py"):
        p = Path(spec).expanduser()
        if p.is_file():
            return p
        stem = Path(spec).stem
        hint = (f"; the shipped recipe of that name is --config={stem}" if stem in shipped
                else "; a bare NAME (no '/', no '.py') selects a shipped recipe")
        raise ConfigError(f"config file {spec!r} not found (from {os.getcwd()}){hint}")
    p = CONFIG_DIR / f"{spec}.py"
    if p.is_file() and not spec.startswith("_"):
        return p
    close = difflib.get_close_matches(spec, shipped, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"config {spec!r} is not a shipped recipe.{hint} configs/ has: "
                      f"{', '.join(shipped)}; a file of your own is --config=PATH "
                      f"(with a '/' or ending in .py)")


def load_config_file(path: str | os.PathLike) -> TrainConfig:
    """Loads `CONFIG` from a config file: a shipped recipe's NAME, or a PATH (`config_path`).

    A config file is Python code and runs as such: load only files you trust.
    """
    p = config_path(os.fspath(path))
    spec = importlib.util.spec_from_file_location(f"tfzoo_config_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = getattr(module, "CONFIG", None)
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"{p} must define CONFIG = TrainConfig(...)")
    return apply_overrides(config, {})  # validates stages


def default_config(model: str) -> TrainConfig:
    """`--model=X` without `--config`: configs/X_synthetic.py if it exists (the embedded
    demo recipes), else the synthetic defaults with model X."""
    candidate = CONFIG_DIR / f"{model}_synthetic.py"
    if candidate.exists():
        return load_config_file(candidate.stem)
    return TrainConfig(model=model)


def stage_configs(config: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """(stage name, resolved config) for each stage; a single unnamed stage when none."""
    if not config.stages:
        return [("", config)]
    out = []
    for i, stage in enumerate(config.stages):
        stage = dict(stage)
        name = stage.pop("name", f"stage{i + 1}")
        out.append((f"{i + 1}-{name}", apply_overrides(dataclasses.replace(config, stages=()), stage)))
    return out


def apply_cli_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Command-line overrides: applied to the base config and to every stage that sets the
    key. Dict-valued keys (`model_overrides`, `dataset_options`) are merged into the existing
    dicts, so `--set model_overrides={'width':8}` shrinks every stage's model and keeps each
    stage's own options (e.g. `fusion='none'` in a streams stage)."""
    merged = dict(overrides)
    for key, value in overrides.items():
        if key in ("model_overrides", "dataset_options"):
            value = _coerce(key, value) if key in FIELDS else value
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key!r}: got {value!r}; expected a dict")
            merged[key] = {**getattr(config, key), **value}
    result = apply_overrides(config, merged)
    stages = []
    for stage in result.stages:
        stage = dict(stage)
        for key in overrides:
            if key not in stage:
                continue
            value = getattr(result, key)
            if key in ("model_overrides", "dataset_options"):
                value = {**stage[key], **_coerce(key, overrides[key])}
            stage[key] = value
        stages.append(stage)
    return dataclasses.replace(result, stages=tuple(stages))
