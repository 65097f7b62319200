"""Small helpers shared across tfzoo."""

from __future__ import annotations

from typing import Any, Iterable


def check_choice(what: str, value: Any, choices: Iterable) -> Any:
    """Returns `value` if it is one of `choices`, else raises a ValueError naming both."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {choices}")
    return value
