"""Model registry: `create_model(name, **overrides)` and `list_models(pattern, task=...)`.

It imports none of the families (as timm's `_registry.py`): each family module registers its
presets with `register_model`, and `tfzoo.models` imports every family, so the registry is
full whenever it can be reached (`tfzoo.create_model`, `tfzoo.registry` and `tfzoo.models` all
go through that package). A registered entry is a factory returning a Keras model; its keyword arguments are the model's
constructor arguments, so `create_model("tresnet50", num_classes=20)` overrides the preset.
Every registered name is enrolled in the common model tests (tests/models/test_models_common.py).
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

from tfzoo.backbones.transplant import load_pretrained
from tfzoo.errors import TfzooError
from tfzoo.utils import check_arguments


class UnknownModelError(TfzooError, KeyError):
    """Raised for a model name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # A small variant that the common tests can build in seconds; None = use the entry itself.
    test_overrides: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    # Clip geometry for the common tests: {"frames": T, "size": H = W}.
    test_input: dict[str, int] | None = None
    # The task that owns the model's outputs (`tfzoo.tasks`); the builder's TASK by default.
    task: str = "classification"


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    builder: Callable[..., Any],
    *,
    description: str = "",
    test_overrides: dict[str, Any] | None = None,
    tags: tuple[str, ...] = (),
    test_input: dict[str, int] | None = None,
    task: str | None = None,
    **defaults: Any,
) -> None:
    """Registers `builder(**defaults)` under `name`.

    `test_overrides` (constructor arguments) and `test_input` ({"frames": T, "size": S}) make
    the small variant that tests/models/test_models_common.py builds for every registered model.
    `task` is the model's task (`tfzoo.tasks`); by default the builder class's `TASK`.
    """
    if name in _REGISTRY:
        raise TfzooError(f"model {name!r} is already registered")
    task = task or getattr(builder, "TASK", None)
    if not task:
        raise TfzooError(f"model {name!r}: no task; pass task=... or set {builder}.TASK")
    _REGISTRY[name] = ModelEntry(
        name, builder, dict(defaults), description, test_overrides, tags, test_input, task
    )


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} Registered models: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_models(pattern: str = "*", *, task: str | None = None) -> list[str]:
    """Registered model names matching a shell-style pattern (and `task`, if given), sorted."""
    return sorted(n for n, e in _REGISTRY.items()
                  if fnmatch.fnmatch(n, pattern) and (task is None or e.task == task))


def create_model(name: str, *, weights: Any = None, **overrides: Any):
    """Builds a registered model.

    Args:
      name: a registered name (see `list_models()`).
      weights: None (random init), "imagenet" (keras.applications weights from the Keras cache),
        a path to a keras.applications ResNet `.h5` file, or a keras.applications model object;
        for VGG-M-2048 towers the path of MatConvNet's `imagenet-vgg-m-2048.mat`
        (`tfzoo.backbones.matconvnet`). Spatial kernels are transplanted 1:1 (see `tfzoo.backbones.transplant`).
      **overrides: constructor arguments that replace the preset's.
    """
    entry = get_entry(name)
    check_arguments(f"create_model({name!r})", entry.builder, overrides)  # misspellings
    kwargs = {**entry.defaults, **overrides}
    model = entry.builder(**kwargs)
    if weights is not None:
        load_pretrained(model, weights)
    return model
