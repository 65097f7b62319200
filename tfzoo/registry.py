"""`tfzoo.registry`: the model registry's public path (it lives in tfzoo/models/_registry.py,
next to the families that fill it; importing this module imports them all)."""

from tfzoo.models._registry import (  # noqa: F401
    ModelEntry,
    UnknownModelError,
    create_model,
    get_entry,
    list_models,
    register_model,
)
